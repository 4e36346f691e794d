"""KV-aware routing end to end on /pd (2 prefill + 2 decode replicas, 2 frontends, Redis):
a multi-session, multi-turn workload reaches >= 90% of the trace's ideal prefix reuse, and both
frontend replicas send a session to the same workers."""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.engine

BLOCK = 32
WORDS = "alpha river stone cloud seven orbit maple quiet ember violet copper lantern harbor meadow signal".split()


def lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def ideal_cached(prompt: list[int], earlier: list[list[int]]) -> int:
    """Tokens a perfect router could serve from cache: the longest block-aligned prefix shared
    with an earlier prompt (vLLM always computes at least the prompt's last token)."""
    best = max((lcp(prompt, e) for e in earlier), default=0)
    return min(best // BLOCK * BLOCK, (len(prompt) - 1) // BLOCK * BLOCK)


def test_multi_session_reuse_reaches_ideal(http):
    rng = random.Random(5)
    sessions = {f"s{i}": [{"role": "system", "content": " ".join(rng.choice(WORDS) for _ in range(180))}] for i in range(4)}
    prompts, cached, ideal = [], 0, 0
    for turn in range(4):
        for sid, messages in sessions.items():
            messages.append({"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(20))})
            resp = http.post(
                "/pd/v1/chat/completions",
                headers={"x-session-id": sid},
                json={"model": "tiny", "messages": messages, "max_tokens": 6, "temperature": 0, "return_token_ids": True},
            )
            assert resp.status_code == 200, resp.text
            assert "prefill=" in resp.headers["x-kvyard-route"]
            body = resp.json()
            prompt = body["prompt_token_ids"]
            ideal += ideal_cached(prompt, prompts)
            cached += body["usage"]["prompt_tokens_details"]["cached_tokens"]
            prompts.append(prompt)
            messages.append({"role": "assistant", "content": body["choices"][0]["message"]["content"] or "ok"})
    assert ideal > 0
    print(f"cached {cached} of ideal {ideal} tokens ({cached / ideal:.1%})")
    assert cached >= 0.9 * ideal


def test_both_frontends_route_a_session_alike(http):
    prompt = " ".join(random.Random(11).choice(WORDS) for _ in range(150))
    seen: dict[str, set[str]] = {}
    for sent in range(40):
        if sent >= 12 and len(seen) == 2:
            break
        resp = http.post(
            "/pd/v1/chat/completions",
            headers={"x-claude-code-session-id": "affinity-1"},
            json={"model": "tiny", "messages": [{"role": "user", "content": prompt}], "max_tokens": 2},
        )
        assert resp.status_code == 200
        route = resp.headers["x-kvyard-route"]
        workers = ",".join(p.split(";")[0] for p in route.split(", "))
        seen.setdefault(resp.headers["x-kvyard-frontend"], set()).add(workers)
    assert len(seen) == 2, f"expected both frontend replicas to serve requests, saw {sorted(seen)}"
    assert len(set().union(*seen.values())) == 1, seen


def test_explain_scores_every_live_worker(http):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "stone " * 100}]}
    resp = http.post("/pd/v1/kvyard/route", json=body)
    assert resp.status_code == 200, resp.text
    route = resp.json()["route"]
    assert len(route["prefill"]["costs_by_worker"]) == 2 and len(route["decode"]["costs_by_worker"]) == 2


def test_one_scrape_shows_every_frontend_and_engine_replica(http):
    """/metrics from any frontend replica carries every frontend's series (label ``frontend``) and
    every engine replica's, so one Prometheus target sees the whole app."""
    from prometheus_client.parser import text_string_to_metric_families

    served: set[str] = set()
    for _ in range(40):  # until both frontends have answered a request (and so counted one)
        resp = http.post("/pd/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
        assert resp.status_code == 200
        served.add(resp.headers["x-kvyard-frontend"])
        if len(served) == 2:
            break
    assert len(served) == 2, served
    for _ in range(2):  # whichever frontend answers the scrape
        text = http.get("/pd/metrics").text
        families = {f.name: f.samples for f in text_string_to_metric_families(text)}
        frontends = {s.labels["frontend"] for s in families["kvyard_requests"] if s.name == "kvyard_requests_total"}
        assert frontends == served, text
        assert text.count("# TYPE kvyard_requests_total counter") == 1
        engines = {(s.labels["pool"], s.labels["replica"]) for s in families["kvyard_engine_requests"]}
        assert len(engines) == 4, engines  # 2 prefill + 2 decode
