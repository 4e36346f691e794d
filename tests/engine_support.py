"""Helpers for engine tests: app configs, deploying extra apps, reading Prometheus text.

The session fixtures that start Ray, Serve, Redis and the /pd app live in ``tests/conftest.py``
so that every test folder (engine, harness) shares one cluster.
"""

from __future__ import annotations

import re

import time

NODE_CPUS = 2


def app_config(model_path, mode: str, **frontend) -> dict:
    return {
        "mode": mode,
        "model": {
            "path": str(model_path),
            "served_name": "tiny",
            "max_model_len": 2048,
            "aliases": {"claude-sonnet-4-5": "tiny", "gpt-5-codex": "tiny"},
        },
        "engine": {"cpu_kv_cache_gib": 1, "max_num_seqs": 16},
        "prefill": {"num_cpus": 0.5},
        "decode": {"num_cpus": 0.5},
        "frontend": {"num_cpus": 0.25, "prefill_timeout_s": 20, **frontend},
    }


def pd_config(model_path, redis_url: str, replicas: int = 2) -> dict:
    cfg = app_config(model_path, "disaggregated")
    cfg["prefill"] = {"replicas": replicas, "num_cpus": 0.5, "resources": {"prefill": 1}}
    cfg["decode"] = {"replicas": replicas, "num_cpus": 0.5, "resources": {"decode": 1}}
    cfg["frontend"]["replicas"] = 2
    cfg["redis_url"] = redis_url
    return cfg


def deploy(name: str, config: dict) -> None:
    """Deploy an extra app at /NAME (delete it with ``serve.delete(NAME)``)."""
    from ray import serve

    from kvyard.deployments.builder import build_app

    started = time.monotonic()
    serve.run(build_app(config), name=name, route_prefix=f"/{name}")
    print(f"/{name} up in {time.monotonic() - started:.0f}s")


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



def scrape_app(http, prefix: str, frontends: int = 2, tries: int = 40) -> str:
    """/metrics of the app once it shows every frontend replica (any replica answers for all of
    them, label ``frontend``; a replica that just started may not know its peers yet)."""
    seen: set[str] = set()
    for _ in range(tries):
        text = http.get(f"{prefix}/metrics").text
        seen = set(re.findall(r'frontend="([^"]+)"', text))
        if len(seen) >= frontends:
            return text
        time.sleep(0.5)
    raise AssertionError(f"/metrics showed {len(seen)} of {frontends} frontend replicas in {tries} scrapes")
