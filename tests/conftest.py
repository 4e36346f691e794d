"""Shared fixtures: test models are built once per session into a cache keyed by their parameters."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from kvyard.kvtransfer.connector import free_port
from tests.engine_support import NODE_CPUS, pd_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL_CACHE = Path(os.environ.get("KVYARD_TEST_MODELS", Path.home() / ".cache" / "kvyard" / "test-models"))

# Small enough to start fast on 2 cores, big enough that every prompt spans several KV blocks.
TINY_QWEN3 = dict(arch="qwen3", hidden_size=128, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=256, max_model_len=2048, seed=0)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from kvyard.models import build_model

    return build_model("random", MODEL_CACHE / "tiny-qwen3", **TINY_QWEN3)


@pytest.fixture(scope="session")
def smollm2_model() -> Path:
    from kvyard.models import build_model

    return build_model("smollm2", MODEL_CACHE / "SmolLM2-135M-Instruct")


# --- engine tests: one Ray cluster per session -----------------------------------------------
# Three Ray nodes on this machine (a head, a node advertising `prefill` and one advertising
# `decode`), Serve on it, a real redis-server, and the app /pd: what kvyard deploys by default,
# scaled out to 2 prefill + 2 decode replicas of TINY_QWEN3 pinned to their nodes (every P/D
# handoff crosses Ray nodes over NIXL), 2 frontends, KV-aware routing. Engines take about a
# minute each to start on 2 cores and ~3 GB of RAM each: modules that need another app deploy it
# with tests.engine_support.deploy and delete it when done.


@pytest.fixture(scope="session")
def redis_server():
    from kvyard.redis_server import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster():
    import ray
    from ray.cluster_utils import Cluster

    # Serve's proxy sends requests to frontend replicas on its own node when there are any; the
    # tests that read every frontend's counters need both frontends reachable whatever node each
    # lands on. Nodes started below inherit this environment.
    os.environ["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4})
    cluster.add_node(num_cpus=NODE_CPUS, resources={"prefill": NODE_CPUS})
    cluster.add_node(num_cpus=NODE_CPUS, resources={"decode": NODE_CPUS})
    ray.init(address=cluster.address, logging_level="WARNING")
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def serve_url(ray_cluster, tiny_model, redis_server):
    from ray import serve

    from kvyard.deployments.builder import build_app

    port = free_port("127.0.0.1")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    started = time.monotonic()
    serve.run(build_app(pd_config(tiny_model, redis_server.url)), name="pd", route_prefix="/pd")
    print(f"/pd up in {time.monotonic() - started:.0f}s")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="session")
def http(serve_url):
    with httpx.Client(base_url=serve_url, timeout=120) as client:
        yield client
