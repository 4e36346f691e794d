"""P/D request preparation and the prefill-leg fallback (pure logic; engines are named fakes)."""

from __future__ import annotations

import asyncio

import pytest

from kvyard.kvtransfer.coordinator import disaggregated_stream, run_prefill
from kvyard.kvtransfer.handshake import decode_request, has_remote_kv, prefill_request
from kvyard.protocol import EngineChunk, EngineRequest, Sampling

REQ = EngineRequest("r1", [1, 2, 3, 4], Sampling(max_tokens=50, temperature=0.7, regex="a+"), cache_salt="t1")
REMOTE = {"do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": "e1", "remote_block_ids": [0], "remote_host": "h", "remote_port": 5}


def test_prefill_request_runs_one_token_and_asks_for_remote_decode():
    p = prefill_request(REQ)
    assert p.sampling.max_tokens == 1
    assert p.sampling.regex is None  # structured output applies to decode's answer only
    assert p.sampling.temperature == 0.7
    assert p.kv_transfer_params["do_remote_decode"] is True
    assert p.prompt_token_ids == REQ.prompt_token_ids and p.cache_salt == "t1"
    assert p.request_id != REQ.request_id
    assert REQ.kv_transfer_params is None  # the original is untouched


def test_decode_request_carries_prefill_params_or_falls_back():
    d = decode_request(REQ, REMOTE)
    assert d.kv_transfer_params == REMOTE and d.sampling == REQ.sampling
    assert decode_request(REQ, None).kv_transfer_params is None
    assert decode_request(REQ, {"do_remote_prefill": True, "remote_engine_id": None}).kv_transfer_params is None
    assert has_remote_kv(REMOTE) and not has_remote_kv({})


class FakePool:
    """A named fake engine pool: returns canned prefill results or raises."""

    def __init__(self, prefill_result=None, error: Exception | None = None, delay: float = 0.0):
        self.prefill_result, self.error, self.delay = prefill_result, error, delay
        self.seen: list[EngineRequest] = []

    async def prefill(self, request):
        self.seen.append(request)
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return self.prefill_result

    async def generate(self, request):
        self.seen.append(request)
        yield EngineChunk(token_ids=[7], finish_reason="length")


@pytest.mark.parametrize(
    "pool, outcome",
    [
        (FakePool(EngineChunk(token_ids=[9], kv_transfer_params=REMOTE)), "ok"),
        (FakePool(error=RuntimeError("replica died")), "fallback"),
        (FakePool(EngineChunk(token_ids=[9], kv_transfer_params=None)), "fallback"),
        (FakePool(EngineChunk(token_ids=[9]), delay=5), "fallback"),
    ],
    ids=["ok", "prefill-raises", "no-kv-location", "timeout"],
)
async def test_prefill_outcomes(pool, outcome):
    decode_req, handoff = await run_prefill(REQ, pool, timeout_s=0.5)
    assert handoff.outcome == outcome
    assert (decode_req.kv_transfer_params == REMOTE) == (outcome == "ok")
    assert pool.seen[0].sampling.max_tokens == 1


async def test_stream_reports_handoff_then_streams_decode():
    prefill, decode = FakePool(error=ConnectionError("unreachable")), FakePool()
    seen = []
    chunks = [c async for c in disaggregated_stream(REQ, prefill, decode, timeout_s=1, on_handoff=seen.append)]
    assert [h.outcome for h in seen] == ["fallback"]
    assert "unreachable" in seen[0].error
    assert chunks[0].token_ids == [7]
    assert decode.seen[0].kv_transfer_params is None and decode.seen[0].sampling.max_tokens == 50
