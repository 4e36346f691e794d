"""Frontend-side KV-aware routing: block indexes fed by the engines' own KV events, and a
decision per request.

- Workers are the live replicas of the engine deployments, as Serve's routers in this process
  see them (``serve_router.live_replicas()``); a worker that leaves is dropped from the index.
- Each engine replica publishes vLLM KV events over ZMQ; this router subscribes to every live
  worker (first replaying the publisher's buffer, so a restarted frontend rebuilds its view) and
  rehashes the token ids in each event with kvyard's salted chain hash.
- ``route`` hashes the sanitized prompt, asks each pool's index for every worker's cached prefix,
  and calls the pure ``decision.choose`` with the router's own in-flight counts as load and the
  session's last workers (shared through Redis) for affinity.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import msgspec

from kvyard.router.decision import Decision, RouterWeights, WorkerLoad, choose
from kvyard.router.events import decode_vllm_event_batch
from kvyard.router.hashing import block_hashes, derive_salt
from kvyard.router.index import BlockIndex
from kvyard.router.serve_router import RouteTo, live_replicas
from kvyard.router.sessions import LocalSessions, SessionRoute

log = logging.getLogger("kvyard.router")

END_SEQ = (-1).to_bytes(8, "big", signed=True)


class Route(msgspec.Struct):
    decode: Decision
    prefill: Decision | None = None
    blocks: int = 0

    def header(self) -> str:
        """The ``x-kvyard-route`` value: chosen workers, cached blocks and costs."""
        parts = [f"decode={self.decode.worker};overlap={self.decode.overlap_blocks};cost={self.decode.cost:g}"]
        if self.prefill is not None:
            parts.insert(0, f"prefill={self.prefill.worker};overlap={self.prefill.overlap_blocks};cost={self.prefill.cost:g}")
        return ", ".join(parts) + f"; blocks={self.blocks}"


class KvRouter:
    def __init__(
        self,
        *,
        app: str,
        model: str,
        block_size: int,
        pools: dict[str, tuple[str, Any]],
        sessions: LocalSessions | None = None,
        weights: RouterWeights | None = None,
    ):
        """``pools``: pool name (``prefill``/``decode``) -> (deployment name, Serve handle)."""
        self.app, self.model, self.block_size = app, model, block_size
        self.pools = pools
        self.indexes = {pool: BlockIndex(pool, model=model, block_size=block_size) for pool in pools}
        self.sessions = sessions or LocalSessions()
        self.weights = weights or RouterWeights()
        self.in_flight: Counter[str] = Counter()
        self.subscriptions: dict[str, asyncio.Task] = {}
        self.events_applied = 0
        self._sync_task: asyncio.Task | None = None

    # --- worker set and KV event subscriptions ---------------------------------------------

    def live(self, pool: str) -> set[str]:
        return live_replicas().ids(f"{self.app}/{self.pools[pool][0]}")

    def start(self) -> None:
        """Follow the worker set and its KV events (idempotent; needs the running event loop)."""
        if self._sync_task is None:
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_forever())

    async def _sync_forever(self, period_s: float = 2.0) -> None:
        while True:
            try:
                await self.sync()
            except Exception as exc:  # keep syncing: a replica may be restarting
                log.warning("router sync failed: %s", exc)
            await asyncio.sleep(period_s)

    async def sync(self) -> None:
        """Subscribe to new workers, forget workers that left."""
        for pool, (deployment, handle) in self.pools.items():
            if not self.live(pool):
                await handle.stats.remote()  # the first call makes Serve's router report replicas
            live = self.live(pool)
            for worker, task in list(self.subscriptions.items()):
                if task.done():  # its subscription died (replica restarting): resubscribe, replaying
                    del self.subscriptions[worker]
            for worker in live - set(self.subscriptions):
                self.indexes[pool].add_worker(worker)
                self.subscriptions[worker] = asyncio.get_running_loop().create_task(self._follow(pool, handle, worker))
            for worker in set(self.indexes[pool].workers) - live:
                self.indexes[pool].remove_worker(worker)
                task = self.subscriptions.pop(worker, None)
                if task is not None:
                    task.cancel()

    async def _follow(self, pool: str, handle: Any, worker: str) -> None:
        import zmq
        import zmq.asyncio

        endpoints = await handle.kv_events_endpoints.remote(RouteTo(worker))
        ctx = zmq.asyncio.Context.instance()
        sub = ctx.socket(zmq.SUB)
        sub.connect(endpoints["events"])
        sub.setsockopt(zmq.SUBSCRIBE, endpoints["topic"].encode())
        last = -1
        try:
            last = await self._replay(ctx, endpoints["replay"], pool, worker)
            while True:
                _topic, seq_bytes, payload = await sub.recv_multipart()
                seq = int.from_bytes(seq_bytes, "big")
                if seq > last:
                    last = seq
                    self._apply(pool, worker, payload)
        finally:
            sub.close(linger=0)

    async def _replay(self, ctx, endpoint: str, pool: str, worker: str) -> int:
        """Apply the publisher's buffered batches from the start; return the last sequence."""
        import zmq

        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(endpoint)
        last = -1
        try:
            await dealer.send_multipart((b"", (0).to_bytes(8, "big")))
            while True:
                if not await dealer.poll(5000):
                    log.warning("replay from %s timed out; following live events only", worker)
                    return last
                _empty, _topic, seq_bytes, payload = await dealer.recv_multipart()
                if seq_bytes == END_SEQ:
                    return last
                last = int.from_bytes(seq_bytes, "big")
                self._apply(pool, worker, payload)
        finally:
            dealer.close(linger=0)

    def _apply(self, pool: str, worker: str, payload: bytes) -> None:
        if worker not in self.live(pool):
            return  # a late event must not re-add a worker that left
        try:
            self.indexes[pool].apply_batch(worker, decode_vllm_event_batch(payload))
            self.events_applied += 1
        except ValueError as exc:
            log.warning("bad KV event batch from %s: %s", worker, exc)

    # --- decisions ---------------------------------------------------------------------------

    def hashes(self, prompt_ids: list[int], cache_salt: str | None) -> list[int]:
        return block_hashes(prompt_ids, self.block_size, derive_salt(self.model, None, cache_salt))

    def score(self, prompt_ids: list[int], cache_salt: str | None, session: SessionRoute | None = None) -> Route | None:
        """The decision for a prompt, without routing it (None until workers are known)."""
        hashes = self.hashes(prompt_ids, cache_salt)
        decisions: dict[str, Decision] = {}
        for pool in self.pools:
            live = self.live(pool)
            if not live:
                return None
            overlaps = self.indexes[pool].overlaps(hashes, live)
            loads = {w: WorkerLoad(active_requests=self.in_flight[w]) for w in live}
            previous = None if session is None else (session.prefill if pool == "prefill" else session.decode)
            decisions[pool] = choose(len(hashes), overlaps, loads, previous, self.weights)
        return Route(decode=decisions["decode"], prefill=decisions.get("prefill"), blocks=len(hashes))

    async def route(self, prompt_ids: list[int], cache_salt: str | None, session: str | None) -> Route | None:
        self.start()
        previous = await self.sessions.get(session) if session else None
        route = self.score(prompt_ids, cache_salt, previous)
        # Counted as load from the decision on, before the next await: concurrent requests then
        # see each other (a burst no longer lands on one worker). The caller calls ``end``.
        self.begin(route)
        if route is not None and session:
            try:
                await self.sessions.put(
                    session, SessionRoute(decode=route.decode.worker, prefill=route.prefill.worker if route.prefill else None)
                )
            except BaseException:
                self.end(route)
                raise
        return route

    def begin(self, route: Route | None) -> None:
        if route is not None:
            for d in (route.prefill, route.decode):
                if d is not None:
                    self.in_flight[d.worker] += 1

    def end(self, route: Route | None) -> None:
        if route is not None:
            for d in (route.prefill, route.decode):
                if d is not None:
                    self.in_flight[d.worker] -= 1
