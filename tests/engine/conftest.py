"""One local Ray + Serve per test session, with a disaggregated app (/pd) and an aggregated app
(/agg) over the same tiny random model. Engines take about a minute each to start on 2 cores,
so every engine test shares these."""

from __future__ import annotations

import time

import httpx
import pytest

from kvyard.kvtransfer.connector import free_port


def app_config(model_path, mode: str, **frontend) -> dict:
    return {
        "mode": mode,
        "model": {"path": str(model_path), "served_name": "tiny", "max_model_len": 2048, "aliases": {"claude-sonnet-4-5": "tiny"}},
        "engine": {"cpu_kv_cache_gib": 1, "max_num_seqs": 16},
        "prefill": {"num_cpus": 0.5},
        "decode": {"num_cpus": 0.5},
        "frontend": {"num_cpus": 0.25, "prefill_timeout_s": 20, **frontend},
    }


@pytest.fixture(scope="session")
def serve_url(tiny_model):
    import ray
    from ray import serve

    from kvyard.deployments.builder import build_app

    ray.init(num_cpus=8, include_dashboard=False, logging_level="WARNING")
    port = free_port("127.0.0.1")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    started = time.monotonic()
    serve.run(build_app(app_config(tiny_model, "disaggregated")), name="pd", route_prefix="/pd")
    serve.run(build_app(app_config(tiny_model, "aggregated")), name="agg", route_prefix="/agg")
    print(f"engines up in {time.monotonic() - started:.0f}s")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def http(serve_url):
    with httpx.Client(base_url=serve_url, timeout=120) as client:
        yield client


def metric(text: str, name: str, **labels) -> float:
    """Sum of a Prometheus series' samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        series = head[len(name):]
        if series and series[0] not in "{":
            continue
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total
