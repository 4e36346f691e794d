"""Disaggregated prefill/decode over NIXL, across Ray nodes, gives exactly the tokens of one
aggregated engine; the KV really crosses (the connector's own stats); a dead prefill degrades to a
correct answer (test_pd_fallback.py)."""

from __future__ import annotations

import random
import re

import pytest
from openai import OpenAI

from tests.engine_support import app_config, deploy, metric, scrape_app

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module", autouse=True)
def aggregated_app(serve_url, tiny_model):
    from ray import serve

    deploy("agg", app_config(tiny_model, "aggregated"))
    yield
    serve.delete("agg")

WORDS = "alpha river stone cloud seven orbit maple quiet ember violet copper lantern harbor meadow signal".split()


def random_prompt(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 140)))


def greedy_ids(http, prefix: str, prompt: str) -> tuple[list[int], dict]:
    resp = http.post(
        f"{prefix}/v1/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 12,
            "temperature": 0,
            "return_token_ids": True,
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return body["choices"][0]["token_ids"], body


def test_pd_tokens_equal_aggregated_and_kv_crosses_nixl(http):
    before = scrape_app(http, "/pd")
    rng = random.Random(1234)
    prompts = [random_prompt(rng) for _ in range(20)]
    for prompt in prompts:
        pd_ids, pd_body = greedy_ids(http, "/pd", prompt)
        agg_ids, _ = greedy_ids(http, "/agg", prompt)
        assert pd_ids, "no tokens generated"
        assert pd_ids == agg_ids
        assert pd_body["usage"]["prompt_tokens"] >= 64
    after = scrape_app(http, "/pd")
    ok = metric(after, "kvyard_kv_transfer_total", outcome="ok") - metric(before, "kvyard_kv_transfer_total", outcome="ok")
    assert ok == 20
    assert metric(after, "kvyard_kv_transfer_total", outcome="fallback") == metric(before, "kvyard_kv_transfer_total", outcome="fallback")
    # The NIXL connectors' own counters on the decode engines (every replica).
    transfers = metric(after, "kvyard_engine_kv_transfers_total", pool="decode") - metric(before, "kvyard_engine_kv_transfers_total", pool="decode")
    moved = metric(after, "kvyard_engine_kv_bytes_total", pool="decode") - metric(before, "kvyard_engine_kv_bytes_total", pool="decode")
    assert transfers >= 20
    assert moved > 0


def test_prefill_and_decode_replicas_run_on_their_own_nodes(http):
    import ray

    resources = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    info = [line for line in http.get("/pd/metrics").text.splitlines() if line.startswith("kvyard_engine_info")]
    placed = {}
    for line in info:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        placed[labels["replica"]] = (labels["pool"], labels["node_id"])
    assert sorted(pool for pool, _ in placed.values()) == ["decode", "decode", "prefill", "prefill"]
    for pool, node in placed.values():
        assert pool in resources[node] and ({"prefill", "decode"} - {pool}).isdisjoint(resources[node])


def test_cpu_engines_spread_their_model_threads_over_the_machines_cores(http):
    """vLLM alone binds every engine on a machine to its first core; kvyard's claims spread them."""
    from collections import Counter

    from kvyard.deployments.cpu_cores import usable_cores

    info = [line for line in http.get("/pd/metrics").text.splitlines() if line.startswith('kvyard_engine_info{pool="')]
    bindings = [re.search(r'cpu_cores="([^"]*)"', line).group(1) for line in info]
    assert len(bindings) == 4 and all(bindings), info
    per_core = Counter(int(core) for binding in bindings for core in binding.split(","))
    cores = usable_cores()
    assert set(per_core) <= set(cores)
    loads = [per_core[core] for core in cores[: len(bindings)]]
    assert max(loads) - min(loads) <= 1, per_core  # 4 engines on 2 cores: 2 each, not 4 on core 0


def test_openai_sdk_streaming_matches_non_streaming(serve_url):
    client = OpenAI(base_url=f"{serve_url}/pd/v1", api_key="unused")
    prompt = "stone cloud seven " * 30
    full = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}], max_tokens=16, temperature=0)
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": prompt}], max_tokens=16, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    assert text == full.choices[0].message.content
    assert usage is not None and usage.prompt_tokens == full.usage.prompt_tokens
    assert usage.completion_tokens == full.usage.completion_tokens


def test_models_health_and_errors(http):
    assert http.get("/pd/health").json() == {"status": "ok"}
    models = http.get("/pd/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert http.get("/pd/v1/models/claude-sonnet-4-5").status_code == 200
    missing = http.post("/pd/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    bad = http.post("/pd/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    empty = http.post("/pd/v1/chat/completions", json={"model": "tiny", "messages": []})
    assert empty.status_code == 400
    too_long = http.post("/pd/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "word " * 5000}]})
    assert too_long.status_code == 400 and "context" in too_long.json()["error"]["message"]
