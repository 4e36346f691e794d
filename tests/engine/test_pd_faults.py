"""Faults, tenants and limits on a small P/D app of its own (/fb: 1 prefill, 2 decode, 1 frontend,
Redis, API keys of two tenants). Runs last among the engine tests (it kills replicas and Redis):
it retires the session's /pd app to free its four engines.

* prompt text never reaches the logs (all of Ray's, Serve's and vLLM's log files);
* tenants never share prefix-cache blocks (engines and router), keys of one tenant do;
* a key over its concurrency limit gets 429 in its API's shape;
* a client that disconnects mid-stream has its engine request aborted;
* Redis killed and restarted under load: no failed request, session routes written again;
* a restarted frontend rebuilds its KV index from the engines' event replay;
* a decode replica killed mid-stream: that client gets an error event, the other stream ends
  normally, Serve replaces the replica;
* a dead prefill degrades to decode computing the prompt: the same tokens, counted as fallback.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.engine.test_pd import greedy_ids, random_prompt
from tests.engine_support import app_config, deploy, metric

pytestmark = pytest.mark.engine

APP = "fb"
ACME_1, ACME_2, GLOBEX, LIMITED = "sk-acme-0001", "sk-acme-0002", "sk-globex-01", "sk-limited-1"
NO_EOS = {"regex": "[a-z ]{4000}"}
"""Long streams: a random model may end a reply at any token; this grammar cannot end before max_tokens."""
KEYS = [
    {"key": ACME_1, "tenant": "acme"},
    {"key": ACME_2, "tenant": "acme"},
    {"key": GLOBEX, "tenant": "globex"},
    {"key": LIMITED, "tenant": "limited", "max_concurrent": 1},
]


@pytest.fixture(scope="module")
def fb(serve_url, tiny_model, redis_server):
    from ray import serve

    serve.delete("pd")
    cfg = app_config(tiny_model, "disaggregated", api_keys=KEYS)
    cfg["decode"]["replicas"] = 2
    cfg["redis_url"] = redis_server.url
    deploy(APP, cfg)
    yield f"/{APP}"
    serve.delete(APP)


@pytest.fixture(scope="module")
def client(serve_url, fb):
    with httpx.Client(base_url=serve_url, timeout=120, headers={"x-api-key": ACME_1}) as c:
        yield c


def chat(prompt: str, **fields) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4, "temperature": 0, **fields}


def cached(client, fb, prompt: str, key: str) -> int:
    resp = client.post(f"{fb}/v1/chat/completions", json=chat(prompt), headers={"x-api-key": key})
    assert resp.status_code == 200, resp.text
    return resp.json()["usage"]["prompt_tokens_details"]["cached_tokens"]


def engine_stats(client, fb) -> str:
    return client.get(f"{fb}/metrics").text


def wait_for(check, timeout_s: float, what: str, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(every_s)


def replica_actor(deployment: str, replica_id: str):
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if f"{APP}#{deployment}#{replica_id}" in a["name"]]
    assert len(names) == 1, names
    return ray.get_actor(names[0], namespace="serve")


def route_workers(route_header: str) -> dict[str, str]:
    """``{"prefill": id, "decode": id}`` from an ``x-kvyard-route`` header."""
    out = {}
    for part in route_header.split(", "):
        pool, _, rest = part.partition("=")
        out[pool] = rest.split(";")[0]
    return out


def test_prompt_text_never_reaches_the_logs(client, fb, ray_cluster):
    marker = f"vermilion-{random.Random().randrange(10**9)}-okapi"
    assert client.post(f"{fb}/v1/chat/completions", json=chat(f"{marker} says hello")).status_code == 200
    bad = client.post(f"{fb}/v1/chat/completions", json=chat(f"{marker} again", max_tokens=10**9, temperature="hot"))
    assert bad.status_code == 400
    time.sleep(2)  # log files are flushed asynchronously
    logs = Path(ray_cluster.head_node.get_session_dir_path()) / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert len(files) > 10
    leaks = [str(p) for p in files if marker.encode() in p.read_bytes()]
    assert not leaks, f"prompt text in {leaks}"


def test_tenants_share_no_cache_and_keys_of_a_tenant_do(client, fb):
    prompt = random_prompt(random.Random(21)) * 2
    cached(client, fb, prompt, ACME_1)
    assert cached(client, fb, prompt, ACME_2) > 0, "keys of one tenant share its cache"
    assert cached(client, fb, prompt, GLOBEX) == 0, "another tenant got hits from acme's prompt"
    # the router scores by tenant-salted hashes too: globex's view of the same prompt is cold
    assert cached(client, fb, prompt, GLOBEX) > 0  # its own second request hits its own cache
    body = chat(prompt + " tail")
    acme = client.post(f"{fb}/v1/kvyard/route", json=body, headers={"x-api-key": ACME_1}).json()["route"]
    limited = client.post(f"{fb}/v1/kvyard/route", json=body, headers={"x-api-key": LIMITED}).json()["route"]
    assert acme["decode"]["overlap_blocks"] > 0
    assert limited["decode"]["overlap_blocks"] == 0 and limited["prefill"]["overlap_blocks"] == 0


def test_wrong_key_is_401_in_each_api_shape(client, fb):
    bad = {"x-api-key": "sk-nobody"}
    chat_resp = client.post(f"{fb}/v1/chat/completions", json=chat("hi"), headers=bad)
    assert chat_resp.status_code == 401 and chat_resp.json()["error"]["type"] == "authentication_error"
    msg = client.post(f"{fb}/v1/messages", json={"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}, headers=bad)
    assert msg.status_code == 401 and msg.json() == {"type": "error", "error": {"type": "authentication_error", "message": msg.json()["error"]["message"]}}
    assert client.get(f"{fb}/health", headers=bad).status_code == 200


def _stream_until_first_token(client, fb, key: str, started: threading.Event, stop: threading.Event, out: dict):
    body = chat("count slowly " * 20, max_tokens=1500, stream=True, temperature=1.0, structured_outputs=NO_EOS)
    with client.stream("POST", f"{fb}/v1/chat/completions", json=body, headers={"x-api-key": key}) as resp:
        out["status"] = resp.status_code
        for line in resp.iter_lines():
            if line.startswith("data:"):
                started.set()
                if stop.is_set():
                    break  # closes the connection mid-stream


def test_key_over_its_limit_gets_429_and_recovers(client, fb):
    started, stop, out = threading.Event(), threading.Event(), {}
    holder = threading.Thread(target=_stream_until_first_token, args=(client, fb, LIMITED, started, stop, out))
    holder.start()
    try:
        assert started.wait(60)
        over = client.post(f"{fb}/v1/chat/completions", json=chat("hi"), headers={"x-api-key": LIMITED})
        assert over.status_code == 429 and over.json()["error"]["type"] == "rate_limit_error", over.text
        body = {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        over = client.post(f"{fb}/v1/messages", json=body, headers={"x-api-key": LIMITED})
        assert over.status_code == 429 and over.json()["error"]["type"] == "rate_limit_error", over.text
        other = client.post(f"{fb}/v1/chat/completions", json=chat("hi"), headers={"x-api-key": GLOBEX})
        assert other.status_code == 200  # limits are per key
    finally:
        stop.set()
        holder.join(60)
    assert out["status"] == 200
    wait_for(
        lambda: client.post(f"{fb}/v1/chat/completions", json=chat("hi"), headers={"x-api-key": LIMITED}).status_code == 200,
        30,
        "the limited key served again after its stream ended",
    )


def serve_log_count(ray_cluster, needle: bytes) -> int:
    logs = Path(ray_cluster.head_node.get_session_dir_path()) / "logs" / "serve"
    return sum(p.read_bytes().count(needle) for p in logs.glob("replica_*.log"))


def test_client_disconnect_aborts_the_engine_request(client, fb, ray_cluster):
    tracebacks = serve_log_count(ray_cluster, b"TaskCancelledError")
    before = metric(engine_stats(client, fb), "kvyard_engine_aborted_total", pool="decode")
    started, stop, out = threading.Event(), threading.Event(), {}
    stop.set()  # leave at the first data line
    _stream_until_first_token(client, fb, ACME_1, started, stop, out)
    assert out["status"] == 200 and started.is_set()
    # 1500 tokens take far longer than this on these engines: only an abort ends it in time
    wait_for(
        lambda: metric(engine_stats(client, fb), "kvyard_engine_aborted_total", pool="decode") == before + 1,
        20,
        "decode engine aborted the request of the client that went away",
    )
    text = engine_stats(client, fb)
    assert metric(text, "kvyard_engine_in_flight_requests") == 0
    assert metric(text, "kvyard_in_flight_requests") == 0
    time.sleep(2)  # log files are flushed asynchronously
    assert serve_log_count(ray_cluster, b"TaskCancelledError") == tracebacks, "a disconnect was logged as a failed request"


def test_redis_killed_and_restarted_under_load_fails_no_request(client, fb, redis_server):
    import redis

    statuses: list[int] = []
    done = threading.Event()
    rng = random.Random(3)
    prompts = [random_prompt(rng) for _ in range(6)]

    def session(i: int) -> None:
        turn = 0
        while not done.is_set():
            resp = client.post(f"{fb}/v1/chat/completions", json=chat(prompts[i] + f" turn {turn}"), headers={"x-session-id": f"redis-{i}"})
            statuses.append(resp.status_code)
            turn += 1

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(session, i) for i in range(3)]
        time.sleep(3)
        redis_server.stop()
        time.sleep(8)
        down = len(statuses)
        redis_server.start()
        time.sleep(8)
        done.set()
        for f in futures:
            f.result()
    assert len(statuses) > down > 3, (down, len(statuses))
    assert set(statuses) == {200}, statuses
    client.post(f"{fb}/v1/chat/completions", json=chat(prompts[5]), headers={"x-session-id": "redis-after"})
    store = redis.Redis.from_url(redis_server.url)
    wait_for(lambda: store.exists("kvyard:session:redis-after"), 10, "session route written to the restarted Redis")


def test_restarted_frontend_rebuilds_its_kv_view(client, fb):
    import ray

    prompt = random_prompt(random.Random(31)) * 2
    cached(client, fb, prompt, ACME_1)
    body = chat(prompt + " again")
    before = client.post(f"{fb}/v1/kvyard/route", json=body)
    old_frontend = before.headers["x-kvyard-frontend"]
    warm = before.json()["route"]["decode"]
    assert warm["overlap_blocks"] > 0
    ray.kill(replica_actor("Frontend", old_frontend), no_restart=True)  # Serve starts a replacement

    def new_frontend_view():
        try:
            resp = client.post(f"{fb}/v1/kvyard/route", json=body, timeout=10)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200 or resp.headers.get("x-kvyard-frontend") in (None, old_frontend):
            return None
        decode = resp.json()["route"]["decode"]
        return decode if decode["overlap_blocks"] > 0 else None

    rebuilt = wait_for(new_frontend_view, 180, "a new frontend replica that sees the cached prefix", every_s=2)
    assert rebuilt["worker"] == warm["worker"] and rebuilt["overlap_blocks"] == warm["overlap_blocks"]


def _read_stream(client, fb, prompt: str, session: str, out: dict, started: threading.Event) -> None:
    body = chat(prompt, max_tokens=1800, stream=True, temperature=1.0, structured_outputs=NO_EOS)
    events = []
    try:
        with client.stream("POST", f"{fb}/v1/chat/completions", json=body, headers={"x-session-id": session}, timeout=300) as resp:
            out["route"] = resp.headers.get("x-kvyard-route", "")
            out["status"] = resp.status_code
            started.set()
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    events.append(line[5:].strip())
    except httpx.HTTPError as exc:
        out["transport_error"] = repr(exc)
    finally:
        started.set()
        out["events"] = events


def test_decode_killed_mid_stream_errors_that_stream_only(client, fb):
    import ray

    rng = random.Random(41)
    outs = [{} for _ in range(4)]
    starts = [threading.Event() for _ in outs]
    threads = [
        threading.Thread(target=_read_stream, args=(client, fb, random_prompt(rng), f"mid-{i}", out, ev))
        for i, (out, ev) in enumerate(zip(outs, starts))
    ]
    for t in threads:
        t.start()
    for ev in starts:
        assert ev.wait(120)
    decodes = [route_workers(o["route"])["decode"] for o in outs]
    assert len(set(decodes)) == 2, f"the router spread 4 concurrent streams over one decode replica: {decodes}"
    victim = decodes[0]
    ray.kill(replica_actor("Decode", victim), no_restart=True)
    for t in threads:
        t.join(300)
    for out, decode in zip(outs, decodes):
        assert out["status"] == 200 and "transport_error" not in out, out.get("transport_error")
        last = out["events"][-1]
        if decode == victim:
            assert "error" in json.loads(out["events"][-1]), out["events"][-3:]
        else:
            assert last == "[DONE]", out["events"][-3:]
    # Serve replaces the dead replica, and the app serves through two decode replicas again
    wait_for(
        lambda: len({line for line in engine_stats(client, fb).splitlines() if line.startswith('kvyard_engine_info{pool="decode"')}) == 2
        and victim not in engine_stats(client, fb),
        300,
        "a replacement decode replica",
        every_s=5,
    )
    assert client.post(f"{fb}/v1/chat/completions", json=chat("after the crash")).status_code == 200


def test_prefill_killed_falls_back_to_correct_answer(client, fb):
    import ray

    prompt = random_prompt(random.Random(99))
    expected, _ = greedy_ids(client, fb, prompt)  # through prefill + NIXL
    before = client.get(f"{fb}/metrics").text
    assert metric(before, "kvyard_kv_transfer_total", outcome="ok") >= 1
    replicas = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if f"{APP}#Prefill" in a["name"]]
    assert len(replicas) == 1, replicas
    ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
    got, _ = greedy_ids(client, fb, prompt)
    assert got == expected
    after = client.get(f"{fb}/metrics").text
    assert metric(after, "kvyard_kv_transfer_total", outcome="fallback") == metric(before, "kvyard_kv_transfer_total", outcome="fallback") + 1
