"""The Serve request routers' replica order, on FAKE replicas (objects with a ``replica_id``):
hints first, then the policy's order for the rest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace

from kvyard.router.serve_router import KVAwareRequestRouter, RoundRobinRequestRouter, RouteTo


@dataclass(frozen=True)
class FakeReplicaId:
    unique_id: str


def fake_replica(unique_id: str) -> SimpleNamespace:
    return SimpleNamespace(replica_id=FakeReplicaId(unique_id))


def bare(cls):
    """A router without Serve's constructor: ``choose_replicas`` only reads hints and queue lengths."""
    router = object.__new__(cls)
    router._replica_queue_len_cache = {}
    return router


def order(router, replicas, hint: str | None = None) -> list[list[str]]:
    pending = SimpleNamespace(args=[RouteTo(hint)]) if hint else None
    ranks = asyncio.run(router.choose_replicas(replicas, pending))
    return [[r.replica_id.unique_id for r in rank] for rank in ranks]


def test_round_robin_gives_each_replica_its_turn_in_a_stable_order():
    router = bare(RoundRobinRequestRouter)
    replicas = [fake_replica(x) for x in ("c", "a", "b")]
    firsts = [order(router, replicas)[0][0] for _ in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    assert order(router, replicas) == [["a", "b", "c"]]  # a full replica passes the request on in turn order


def test_round_robin_keeps_turning_when_the_replica_set_changes():
    router = bare(RoundRobinRequestRouter)
    assert order(router, [fake_replica("a"), fake_replica("b")])[0][0] == "a"
    assert order(router, [fake_replica("b")])[0][0] == "b"  # the only one left
    assert order(router, [fake_replica(x) for x in "abc"])[0][0] == "c"


def test_a_hint_wins_under_either_policy():
    for cls in (KVAwareRequestRouter, RoundRobinRequestRouter):
        ranks = order(bare(cls), [fake_replica(x) for x in "abc"], hint="b")
        assert ranks[0] == ["b"] and sorted(ranks[1]) == ["a", "c"]


def test_kv_aware_falls_back_to_the_shortest_queue():
    router = bare(KVAwareRequestRouter)
    replicas = [fake_replica(x) for x in "abc"]
    router._replica_queue_len_cache = {r.replica_id: n for r, n in zip(replicas, (5, 1, 3))}
    assert order(router, replicas) == [["b", "c", "a"]]
