"""``kvyard serve``: config from file and flags, the default model built on first use, a local Ray
started when none runs, the app deployed, the URL printed when ready, a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from kvyard.config import DEFAULT_MODEL_DIR, AppConfig


def say(msg: str) -> None:
    print(f"[kvyard] {msg}", flush=True)


def config_from_args(args) -> AppConfig:
    cfg = AppConfig.from_yaml(args.config) if args.config else AppConfig()
    data = cfg.model_dump()
    if args.model:
        data["model"]["path"] = str(Path(args.model).resolve())
        data["model"]["served_name"] = args.served_name or Path(args.model).name
    elif args.served_name:
        data["model"]["served_name"] = args.served_name
    if args.max_model_len:
        data["model"]["max_model_len"] = args.max_model_len
    if args.prefill_replicas:
        data["prefill"]["replicas"] = args.prefill_replicas
    if args.decode_replicas:
        data["decode"]["replicas"] = args.decode_replicas
    if args.mode:
        data["mode"] = args.mode
    return AppConfig.model_validate(data)


def ensure_model(cfg: AppConfig) -> None:
    path = Path(cfg.model.path)
    if (path / "config.json").exists():
        return
    if path == DEFAULT_MODEL_DIR:
        say(f"building the embedded default model into {path} (first run only, about a minute)")
        from kvyard.models import build_model

        build_model("smollm2", path, progress=lambda m: say(f"  {m}"))
        return
    raise FileNotFoundError(f"no model at {path}: build one with 'kvyard model smollm2|random DIR' or pass --model")


def engines_needed(cfg: AppConfig) -> int:
    return cfg.decode.replicas + (cfg.prefill.replicas if cfg.mode == "disaggregated" else 0)


def start_ray(cfg: AppConfig) -> None:
    import ray

    if os.environ.get("RAY_ADDRESS") or _ray_running():
        say("connecting to the running Ray cluster")
        ray.init(address="auto", logging_level="WARNING")
        return
    cpus = max(os.cpu_count() or 1, int(cfg.prefill.num_cpus + cfg.decode.num_cpus * 2 + 2))
    say(f"starting a local Ray ({cpus} logical CPUs)")
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")


def _ray_running() -> bool:
    return Path("/tmp/ray/ray_current_cluster").exists()


def deploy(cfg: AppConfig, host: str, port: int, name: str = "kvyard") -> str:
    """Deploy and wait until every replica is up; returns the base URL."""
    from ray import serve

    from kvyard.deployments.builder import build_app

    serve.start(http_options={"host": host, "port": port})
    n = engines_needed(cfg)
    say(f"deploying: {cfg.mode}, {n} engine replica(s) of {cfg.model.served_name}; each engine takes ~40 s to start on CPU")
    done = threading.Event()
    started = time.monotonic()

    def progress() -> None:
        while not done.wait(15):
            say(f"  still starting engines ({time.monotonic() - started:.0f} s)")

    threading.Thread(target=progress, daemon=True).start()
    try:
        serve.run(build_app(cfg), name=name, route_prefix="/", blocking=False)
    finally:
        done.set()
    return f"http://{host}:{port}"


def serve_from_args(args) -> int:
    import ray
    from ray import serve

    cfg = config_from_args(args)
    ensure_model(cfg)
    redis = None
    if cfg.redis_url is None and cfg.router.policy == "kv_aware":
        from kvyard.redis_server import RedisServer

        redis = RedisServer().start()
        cfg = cfg.model_copy(update={"redis_url": redis.url})
        say(f"started redis-server for shared router state on {redis.url}")
    start_ray(cfg)
    try:
        url = deploy(cfg, args.host, args.port)
    except Exception as exc:
        say(f"deploy failed: {exc}")
        say("check the replica logs under /tmp/ray/session_latest/logs/serve/ and rerun")
        serve.shutdown()
        ray.shutdown()
        if redis:
            redis.stop()
        return 1
    say(f"ready: {url}  (OpenAI: {url}/v1, Anthropic: {url}; model id {cfg.model.served_name!r}). Ctrl-C stops.")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    say("shutting down")
    serve.shutdown()
    ray.shutdown()
    if redis:
        redis.stop()
    return 0
