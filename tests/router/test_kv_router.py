"""KvRouter decisions from KV event payloads (vLLM's own classes and encoder) and the live
replica set; Serve replicas are named fakes carrying only an id."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import msgspec
import pytest

from kvyard.router.kv_router import KvRouter
from kvyard.router.serve_router import LIVE
from kvyard.router.sessions import LocalSessions

kv_events = pytest.importorskip("vllm.distributed.kv_events")
BS = 4


def fake_replica(uid: str):
    return SimpleNamespace(replica_id=SimpleNamespace(unique_id=uid))


def stored_payload(tokens: list[int]) -> bytes:
    n = len(tokens) // BS
    batch = kv_events.KVEventBatch(
        ts=1.0,
        events=[
            kv_events.BlockStored(
                block_hashes=list(range(100, 100 + n)), parent_block_hash=None, token_ids=tokens[: n * BS],
                block_size=BS, lora_id=None, medium="GPU", lora_name=None,
            )
        ],
    )
    return msgspec.msgpack.Encoder().encode(batch)


@pytest.fixture
def router():
    LIVE.update("t/Decode", [fake_replica("d1"), fake_replica("d2")])
    LIVE.update("t/Prefill", [fake_replica("p1"), fake_replica("p2")])
    r = KvRouter(app="t", model="m", block_size=BS, pools={"decode": ("Decode", FakeHandle()), "prefill": ("Prefill", FakeHandle())})
    for pool, workers in (("decode", ("d1", "d2")), ("prefill", ("p1", "p2"))):
        for w in workers:
            r.indexes[pool].add_worker(w)
    yield r
    LIVE.by_deployment.clear()


PROMPT = list(range(1, 33))  # 8 full blocks


def test_longest_cached_prefix_wins(router):
    router._apply("prefill", "p2", stored_payload(PROMPT[:24]))
    router._apply("decode", "d1", stored_payload(PROMPT))
    route = router.score(PROMPT, None)
    assert route.blocks == 8
    assert (route.prefill.worker, route.prefill.overlap_blocks) == ("p2", 6)
    assert (route.decode.worker, route.decode.overlap_blocks) == ("d1", 8)
    assert "prefill=p2;overlap=6" in route.header()


def test_tenant_salt_isolates_cache(router):
    router._apply("prefill", "p2", stored_payload(PROMPT))
    assert router.score(PROMPT, "tenant-b").prefill.overlap_blocks == 0


def test_load_breaks_ties_and_dead_workers_are_skipped(router):
    router.in_flight["p1"] = 3
    assert router.score(PROMPT, None).prefill.worker == "p2"
    LIVE.update("t/Prefill", [fake_replica("p1")])
    router._apply("prefill", "p2", stored_payload(PROMPT))  # a late event from a gone worker is ignored
    assert router.score(PROMPT, None).prefill.worker == "p1"
    assert router.indexes["prefill"].overlaps(router.hashes(PROMPT, None)).get("p2", 0) == 0


async def test_session_affinity_survives_a_tie(router):
    first = await router.route(PROMPT, None, "sess")
    router.in_flight[first.decode.worker] += 5  # busier now, but the session bonus keeps it
    again = await router.route(PROMPT, None, "sess")
    assert again.decode.worker == first.decode.worker
    await stop(router)


def test_no_live_workers_means_no_decision(router):
    LIVE.by_deployment.clear()
    assert router.score(PROMPT, None) is None


async def stop(router: KvRouter) -> None:
    """Cancel what ``route()`` started: the replica-set sync and the KV-event subscriptions."""
    for task in [router._sync_task, *router.subscriptions.values()]:
        if task is not None:
            task.cancel()
    await asyncio.sleep(0)


class FakeHandle:
    """A named fake Serve handle: ``x.remote(...)`` returns an awaitable; endpoints go nowhere."""

    def __getattr__(self, name):
        async def result(*args):
            return {"events": "tcp://127.0.0.1:9", "replay": "tcp://127.0.0.1:9", "topic": "kv-events"} if name == "kv_events_endpoints" else {}

        return SimpleNamespace(remote=lambda *a: result(*a))


async def test_sync_follows_the_live_replica_set():
    import asyncio

    LIVE.update("s/Decode", [fake_replica("d1"), fake_replica("d2")])
    r = KvRouter(app="s", model="m", block_size=BS, pools={"decode": ("Decode", FakeHandle())})
    try:
        await r.sync()
        assert sorted(r.indexes["decode"].workers) == ["d1", "d2"] and sorted(r.subscriptions) == ["d1", "d2"]
        LIVE.update("s/Decode", [fake_replica("d2"), fake_replica("d3")])
        await r.sync()
        assert sorted(r.indexes["decode"].workers) == ["d2", "d3"] and sorted(r.subscriptions) == ["d2", "d3"]
    finally:
        for task in r.subscriptions.values():
            task.cancel()
        await asyncio.sleep(0)
        LIVE.by_deployment.clear()


class SlowSessions(LocalSessions):
    """A named fake session store whose calls yield to the event loop, as Redis calls do."""

    async def get(self, session):
        await asyncio.sleep(0)
        return await super().get(session)

    async def put(self, session, route):
        await asyncio.sleep(0.01)
        await super().put(session, route)


async def test_a_burst_of_concurrent_requests_spreads_over_workers(router):
    router.sessions = SlowSessions()
    routes = await asyncio.gather(*(router.route(PROMPT, None, f"burst-{i}") for i in range(4)))
    assert Counter(r.decode.worker for r in routes) == {"d1": 2, "d2": 2}
    assert Counter(r.prefill.worker for r in routes) == {"p1": 2, "p2": 2}
    for r in routes:
        router.end(r)
    assert not +router.in_flight
    await stop(router)
