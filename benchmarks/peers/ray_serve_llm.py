"""Ray Serve LLM as a benchmark peer: ``build_openai_app`` with the ``PrefixCacheAffinityRouter``.

What it deploys (Ray 2.60, vLLM's CPU build), as one Serve app under ``ROUTE``:

* ``OpenAiIngress`` (Ray Serve LLM's FastAPI ingress: ``/v1/models``, ``/v1/chat/completions``, ...),
* ``engines`` replicas of ``LLMServer``, each one vLLM ``AsyncLLM`` on CPU, serving the local
  ``model_path`` as ``tiny``; the ingress picks a replica with
  ``ray.serve.llm.request_router.PrefixCacheAffinityRouter`` (a prefix tree of the prompt text
  per replica, Ray's defaults: prefix match while the load is balanced, power of two otherwise).

The engines get the same flags as the ``vllm`` peer in ``benchmarks/agentic.py``: max_model_len,
prefix caching, float32, block size 32, eager mode (as kvyard's engines), prompt-tokens details, the hermes tool-call parser with
auto tool choice and the qwen3 reasoning parser; ``VLLM_CPU_KVCACHE_SPACE=2`` through the
runtime_env. CPU only: placement group bundles hold ``{"CPU": 1}`` and no ``accelerator_type``,
from which Ray Serve LLM infers a ``CPUConfig`` and runs vLLM with the ``mp`` executor.

Usage::

    peer = RayServeLLM(model_path, engines=2)
    url = peer.start()   # http://127.0.0.1:PORT/ray-serve-llm, /v1/models answers 200 when it returns
    ...
    peer.stop()

``start`` brings up its own Ray (``num_cpus=8``) and Serve proxy when Ray is not running in this
process; if it is (e.g. after the kvyard systems), it deploys into that Serve and ``port`` must be
that Serve's HTTP port. ``stop`` deletes the app, and shuts Serve and Ray down if it started them.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

APP = "ray-serve-llm"
ROUTE = f"/{APP}"


def llm_config(model_path: Path, engines: int, max_model_len: int = 16384, kv_cache_gib: int = 2) -> dict:
    """The ``LLMConfig`` (as a dict) of the peer: ``engines`` CPU vLLM replicas of ``model_path`` served as ``tiny``."""
    from ray.serve.llm.request_router import PrefixCacheAffinityRouter

    return {
        "model_loading_config": {"model_id": "tiny", "model_source": str(model_path)},
        # no GPU/TPU in any bundle and no accelerator_type: Ray Serve LLM resolves a CPUConfig
        "placement_group_config": {"bundles": [{"CPU": 1}]},
        "runtime_env": {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)}},
        "engine_kwargs": {
            "max_model_len": max_model_len,
            "enable_prefix_caching": True,
            "dtype": "float32",
            "block_size": 32,
            "enforce_eager": True,
            "enable_prompt_tokens_details": True,
            "enable_auto_tool_choice": True,
            "tool_call_parser": "hermes",
            "reasoning_parser": "qwen3",
        },
        "deployment_config": {
            "num_replicas": engines,
            "request_router_config": {"request_router_class": PrefixCacheAffinityRouter},
        },
    }


class RayServeLLM:
    """Ray Serve LLM (``build_openai_app``, ``PrefixCacheAffinityRouter``) over ``engines`` CPU vLLM engines."""

    def __init__(self, model_path: Path, engines: int, port: int | None = None, max_model_len: int = 16384):
        self.model_path, self.engines, self.max_model_len = Path(model_path), engines, max_model_len
        self.port = port
        self._owns_ray = False

    def start(self, timeout_s: float = 900) -> str:
        """Deploy the app and wait until ``/v1/models`` answers 200; return the base URL (no ``/v1``)."""
        import ray
        from ray import serve
        from ray.serve.llm import build_openai_app

        if self.port is None:
            from kvyard.kvtransfer.connector import free_port

            self.port = free_port("127.0.0.1")
        if not ray.is_initialized():
            ray.init(num_cpus=8, include_dashboard=False, logging_level="WARNING")
            serve.start(http_options={"host": "127.0.0.1", "port": self.port})
            self._owns_ray = True
        app = build_openai_app({"llm_configs": [llm_config(self.model_path, self.engines, self.max_model_len)]})
        serve.run(app, name=APP, route_prefix=ROUTE, blocking=False)
        url = f"http://127.0.0.1:{self.port}{ROUTE}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = serve.status().applications.get(APP)
            if status is not None and status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                raise RuntimeError(f"{APP}: {status.status}: {status.message}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(2)
        raise RuntimeError(f"{url} not ready within {timeout_s:.0f}s")

    def stop(self) -> None:
        """Delete the app; shut Serve and Ray down if ``start`` brought them up."""
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        try:
            serve.delete(APP)
        finally:
            if self._owns_ray:
                serve.shutdown()
                ray.shutdown()
                self._owns_ray = False
