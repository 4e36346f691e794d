"""Runs one request through prefill then decode, falling back to decode-only when prefill fails.

The decisions are the pure functions in ``handshake``; this module only sequences the two engine
calls, times the prefill leg and reports the outcome. ``EnginePool`` is the narrow surface it
needs from a Ray Serve handle, so tests can drive it with named fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from kvyard.kvtransfer.handshake import decode_request, fallback_request, has_remote_kv, prefill_request
from kvyard.protocol import EngineChunk, EngineRequest

log = logging.getLogger("kvyard.kvtransfer")


class EnginePool(Protocol):
    async def prefill(self, request: EngineRequest) -> EngineChunk: ...

    def generate(self, request: EngineRequest) -> AsyncIterator[EngineChunk]: ...


class Handoff:
    """What happened on the prefill leg of one request."""

    __slots__ = ("outcome", "prefill_seconds", "prefill_chunk", "error", "started_ns", "ended_ns")

    def __init__(self) -> None:
        self.outcome = "aggregated"
        self.started_ns = self.ended_ns = 0
        """Wall-clock bounds of the prefill leg (for its trace span)."""
        self.prefill_seconds = 0.0
        self.prefill_chunk: EngineChunk | None = None
        self.error: str | None = None


async def run_prefill(request: EngineRequest, prefill: EnginePool, timeout_s: float) -> tuple[EngineRequest, Handoff]:
    """Prefill the prompt remotely; return the decode request to send and what happened.

    outcome: ``ok`` (decode will pull the KV over NIXL) or ``fallback`` (prefill failed, timed
    out or gave no KV location: decode computes the prompt itself).
    """
    handoff = Handoff()
    started = time.monotonic()
    handoff.started_ns = time.time_ns()
    try:
        chunk = await asyncio.wait_for(prefill.prefill(prefill_request(request)), timeout_s)
    except Exception as exc:  # any prefill failure must degrade to a correct, slower answer
        handoff.ended_ns = time.time_ns()
        handoff.outcome, handoff.error = "fallback", f"{type(exc).__name__}: {exc}"[:300]
        log.warning("prefill failed for %s, decode computes the prompt: %s", request.request_id, handoff.error)
        return fallback_request(request), handoff
    handoff.prefill_seconds = time.monotonic() - started
    handoff.ended_ns = time.time_ns()
    handoff.prefill_chunk = chunk
    if not has_remote_kv(chunk.kv_transfer_params):
        handoff.outcome, handoff.error = "fallback", "prefill returned no KV location"
        log.warning("prefill of %s returned no KV location; decode computes the prompt", request.request_id)
        return fallback_request(request), handoff
    handoff.outcome = "ok"
    return decode_request(request, chunk.kv_transfer_params), handoff


async def disaggregated_stream(
    request: EngineRequest,
    prefill: EnginePool,
    decode: EnginePool,
    *,
    timeout_s: float,
    on_handoff: Callable[[Handoff], None] = lambda h: None,
) -> AsyncIterator[EngineChunk]:
    """Prefill on one pool, then stream decode's tokens from the other."""
    decode_req, handoff = await run_prefill(request, prefill, timeout_s)
    on_handoff(handoff)
    async for chunk in decode.generate(decode_req):
        yield chunk
