"""Ray Serve glue: a ``RequestRouter`` that sends a request to the replica kvyard's KV-aware
decision named, and otherwise to the candidate with the shortest queue (or, for the round-robin
policy, to each replica in turn).

The decision itself happens in the frontend (``router.kv_router``), which needs the live replica
set: every router instance (one per deployment handle, in the caller's process) publishes the
replicas Serve gives it to ``LIVE``, so the index and the decision follow scale-up, scale-down
and replacement as Serve sees them. Requests carry the hint as ``route_to`` on their first
positional argument (``EngineRequest`` or ``RouteTo``); no blocking calls.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import msgspec
from ray.serve._private.request_router.pow_2_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica


class RouteTo(msgspec.Struct, frozen=True):
    """A request for one named replica (used for per-replica control calls such as ``stats``)."""

    route_to: str


class LiveReplicas:
    """Replica ids per deployment ("app/name"), as the Serve routers in this process last saw them."""

    def __init__(self) -> None:
        self.by_deployment: dict[str, dict[str, RunningReplica]] = {}
        self.listeners: list[Callable[[str, set[str]], Any]] = []

    def update(self, deployment: str, replicas: list[RunningReplica]) -> None:
        self.by_deployment[deployment] = {r.replica_id.unique_id: r for r in replicas}
        for listener in self.listeners:
            listener(deployment, set(self.by_deployment[deployment]))

    def ids(self, deployment: str) -> set[str]:
        return set(self.by_deployment.get(deployment, {}))


def live_replicas() -> LiveReplicas:
    """The one registry of this process, looked up at call time: Ray Serve may rebuild the router
    class from a pickle by value, carrying copies of this module's globals, so a module-level
    object would not be shared between the router and the frontend."""
    return sys.__dict__.setdefault("_kvyard_live_replicas", LiveReplicas())


LIVE = live_replicas()


def _hint(pending: PendingRequest | None) -> str | None:
    if pending is None or not pending.args:
        return None
    return getattr(pending.args[0], "route_to", None)


def _hinted(candidates: list[RunningReplica], pending: PendingRequest | None) -> tuple[list[RunningReplica], list[RunningReplica]] | None:
    """``(the hinted replica, the others)`` when the request names a live candidate, else None."""
    hint = _hint(pending)
    chosen = [r for r in candidates if r.replica_id.unique_id == hint] if hint is not None else []
    return (chosen, [r for r in candidates if r.replica_id.unique_id != hint]) if chosen else None


class _PublishesReplicas:
    """Mixin: publish the replica set Serve gives this router to ``live_replicas()``."""

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)  # type: ignore[misc]
        live_replicas().update(f"{self._deployment_id.app_name}/{self._deployment_id.name}", replicas)  # type: ignore[attr-defined]


class KVAwareRequestRouter(_PublishesReplicas, FIFOMixin, RequestRouter):
    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        hinted = _hinted(candidate_replicas, pending_request)
        if hinted is not None:
            chosen, others = hinted
            return [chosen, self._unhinted(others)] if others else [chosen]
        return [self._unhinted(candidate_replicas)]

    def _unhinted(self, replicas: list[RunningReplica]) -> list[RunningReplica]:
        """Shortest known queue first (unknown queues count as empty)."""
        cache = self._replica_queue_len_cache
        return sorted(replicas, key=lambda r: cache.get(r.replica_id) or 0)


class RoundRobinRequestRouter(KVAwareRequestRouter):
    """``router.policy: round_robin``, the cache-blind baseline: each replica in turn (ordered by
    id, so the turn survives replica-set updates); a full replica passes the request on in the same
    order. Per-replica control calls (``RouteTo``) still reach their replica."""

    _turn = 0

    def _unhinted(self, replicas: list[RunningReplica]) -> list[RunningReplica]:
        ordered = sorted(replicas, key=lambda r: r.replica_id.unique_id)
        if not ordered:
            return ordered
        start = self._turn % len(ordered)
        self._turn += 1
        return ordered[start:] + ordered[:start]


class HintedPowerOfTwoRequestRouter(_PublishesReplicas, PowerOfTwoChoicesRequestRouter):
    """Ray Serve's default power-of-two-choices (with its locality preference), plus hints:
    ``router.policy: serve_default`` for engines, and the frontend deployment, whose replicas ask
    each other for their metrics by replica id."""

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        hinted = _hinted(candidate_replicas, pending_request)
        if hinted is not None:
            return [hinted[0]]
        return await super().choose_replicas(candidate_replicas, pending_request)
