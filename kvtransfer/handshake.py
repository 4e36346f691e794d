"""P/D request preparation: pure functions, no Ray, no engine.

Algorithm (vLLM NixlConnector protocol):
1. prefill gets the prompt with ``max_tokens=1`` and ``kv_transfer_params={"do_remote_decode": True}``;
   it computes the prompt's KV, keeps the blocks pinned and returns the params that locate them
   (engine id, block ids, side-channel host/port).
2. decode gets the same prompt and sampling with those params; it pulls the KV blocks over NIXL,
   computes only what was not transferred, and generates. Its output is the answer: the one token
   prefill sampled is discarded, so P/D output equals a single engine's.
3. when prefill failed or returned no params, decode gets the plain request and computes the
   prompt itself (the fallback): slower, never wrong.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kvyard.protocol import EngineRequest

PREFILL_PARAMS: dict[str, Any] = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


def prefill_request(request: EngineRequest) -> EngineRequest:
    """The request prefill runs: one token, KV kept for a remote decode."""
    sampling = msgspec.structs.replace(request.sampling, max_tokens=1, regex=None, json_schema=None, ignore_eos=False)
    return msgspec.structs.replace(
        request,
        request_id=f"{request.request_id}-prefill",
        sampling=sampling,
        kv_transfer_params=dict(PREFILL_PARAMS),
        route_to=request.prefill_to,
    )


def has_remote_kv(params: dict[str, Any] | None) -> bool:
    """Whether prefill's answer locates KV blocks that decode can pull."""
    return bool(params) and bool(params.get("do_remote_prefill")) and params.get("remote_engine_id") is not None


def decode_request(request: EngineRequest, prefill_params: dict[str, Any] | None) -> EngineRequest:
    """The request decode runs: the original one, plus prefill's KV location when it has one."""
    if not has_remote_kv(prefill_params):
        return fallback_request(request)
    return msgspec.structs.replace(request, kv_transfer_params=dict(prefill_params))


def fallback_request(request: EngineRequest) -> EngineRequest:
    """Decode computes the whole prompt itself."""
    return msgspec.structs.replace(request, kv_transfer_params=None)
