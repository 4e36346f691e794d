"""The frontend's engine scrape against fake handles (named fakes of Serve handles): a replica that
hangs or fails is left out within the timeout, the others still answer."""

from __future__ import annotations

import asyncio
import time

from kvyard.deployments.frontend import ask_engines
from kvyard.router.serve_router import RouteTo


class FakeResponse:
    """Awaitable like a ``DeploymentResponse``; records cancellation."""

    def __init__(self, outcome):
        self.outcome, self.cancelled = outcome, False

    def __await__(self):
        return self._wait().__await__()

    async def _wait(self):
        if self.outcome == "hang":
            await asyncio.sleep(3600)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def cancel(self):
        self.cancelled = True


class FakeHandle:
    def __init__(self, name: str, replies: dict):
        self.deployment_name, self.replies, self.sent = name, replies, []
        self.stats = self

    def remote(self, target: RouteTo | None = None):
        worker = target.route_to if target is not None else None
        self.sent.append(worker)
        response = FakeResponse(self.replies[worker])
        self.replies[worker] = response
        return response


async def test_a_hanging_or_failing_replica_is_left_out_within_the_timeout():
    decode = FakeHandle("Decode", {"d1": {"replica": "d1"}, "d2": "hang"})
    prefill = FakeHandle("Prefill", {"p1": RuntimeError("replica died")})
    started = time.monotonic()
    got = await ask_engines([("decode", decode), ("prefill", prefill)], lambda h: sorted(h.replies), timeout_s=0.2)
    assert time.monotonic() - started < 2
    assert got == [("decode", {"replica": "d1"})]
    assert decode.replies["d2"].cancelled  # the timed-out request is not left queued


async def test_a_pool_with_no_known_replica_gets_one_unhinted_call():
    decode = FakeHandle("Decode", {None: "hang"})  # every replica still starting: the call would queue
    got = await ask_engines([("decode", decode)], lambda h: [], timeout_s=0.1)
    assert got == [] and decode.sent == [None]
