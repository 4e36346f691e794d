"""Binds the kvyard application from an ``AppConfig``: engine pools, then the frontend over them.

Deployment classes stay plain; Ray Serve options and ``.bind()`` live here. ``build_app`` is the
import path ``serve deploy`` configs and the Helm chart name (``kvyard.deployments.builder:build_app``)
with the app config as its ``args``.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.deployment import Application

from kvyard.config import AppConfig, PoolConfig
from kvyard.deployments.engine import EngineServer
from kvyard.deployments.frontend import Frontend, app
from kvyard.router.serve_router import HintedPowerOfTwoRequestRouter, KVAwareRequestRouter, RoundRobinRequestRouter


def _actor_options(pool: PoolConfig) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": pool.num_cpus, "num_gpus": pool.num_gpus}
    if pool.resources:
        options["resources"] = dict(pool.resources)
    return options


ROUTERS = {"kv_aware": KVAwareRequestRouter, "round_robin": RoundRobinRequestRouter, "serve_default": HintedPowerOfTwoRequestRouter}
"""Serve request router per ``router.policy``; each also publishes its replicas and honours
per-replica hints (``RouteTo``), which the frontend's metrics and KV-event calls use."""


def _engine(name: str, pool: PoolConfig, max_ongoing: int, policy: str):
    router = {"request_router_config": {"request_router_class": ROUTERS[policy]}}
    return serve.deployment(
        EngineServer,
        name=name,
        num_replicas=pool.replicas,
        ray_actor_options=_actor_options(pool),
        max_ongoing_requests=max_ongoing,
        health_check_period_s=10,
        health_check_timeout_s=60,
        graceful_shutdown_timeout_s=10,
        **router,
    )


def build_app(args: dict[str, Any] | AppConfig | None = None) -> Application:
    """The Serve application for a config (a dict as ``serve deploy`` passes it, or an AppConfig)."""
    cfg = args if isinstance(args, AppConfig) else AppConfig.model_validate(args or {})
    data = cfg.model_dump()
    max_ongoing = cfg.engine.max_num_seqs * 2
    frontend = serve.deployment(
        serve.ingress(app)(Frontend),
        name="Frontend",
        num_replicas=cfg.frontend.replicas,
        ray_actor_options={"num_cpus": cfg.frontend.num_cpus},
        max_ongoing_requests=1024,
        request_router_config={"request_router_class": HintedPowerOfTwoRequestRouter},
    )
    if cfg.mode == "aggregated":
        decode = _engine("Engine", cfg.decode, max_ongoing, cfg.router.policy).bind(data, "aggregated")
        return frontend.bind(data, decode)
    prefill = _engine("Prefill", cfg.prefill, max_ongoing, cfg.router.policy).bind(data, "prefill")
    decode = _engine("Decode", cfg.decode, max_ongoing, cfg.router.policy).bind(data, "decode")
    return frontend.bind(data, decode, prefill)
