"""A dead prefill degrades to a correct answer: decode computes the prompt itself, the user gets
the same tokens as before, and `kvyard_kv_transfer_total{outcome="fallback"}` counts it.

Runs last among the engine tests (it kills replicas): it retires the session's /pd app to free
its four engines and deploys a small P/D app of its own (one prefill, one decode, one frontend).
"""

from __future__ import annotations

import random

import pytest

from tests.engine.test_pd import greedy_ids, random_prompt
from tests.engine_support import app_config, deploy, metric

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def fallback_app(serve_url, tiny_model):
    from ray import serve

    serve.delete("pd")
    deploy("fb", app_config(tiny_model, "disaggregated"))
    yield "/fb"
    serve.delete("fb")


def test_prefill_killed_falls_back_to_correct_answer(http, fallback_app):
    import ray

    prompt = random_prompt(random.Random(99))
    expected, _ = greedy_ids(http, fallback_app, prompt)  # through prefill + NIXL
    before = http.get(f"{fallback_app}/metrics").text
    assert metric(before, "kvyard_kv_transfer_total", outcome="ok") >= 1
    replicas = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "fb#Prefill" in a["name"]]
    assert len(replicas) == 1, replicas
    ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
    got, _ = greedy_ids(http, fallback_app, prompt)
    assert got == expected
    after = http.get(f"{fallback_app}/metrics").text
    assert metric(after, "kvyard_kv_transfer_total", outcome="fallback") == metric(before, "kvyard_kv_transfer_total", outcome="fallback") + 1
