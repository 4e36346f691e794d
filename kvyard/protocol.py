"""What crosses Ray Serve handles between the frontend and the engines (msgspec structs).

Engines are token-in/token-out: no text crosses this boundary.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Sampling(msgspec.Struct, frozen=True):
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    regex: str | None = None
    """Structured output: the generated text must match this regex."""
    json_schema: dict[str, Any] | None = None
    """Structured output: the generated text must be JSON valid for this schema."""


class EngineRequest(msgspec.Struct, frozen=True):
    request_id: str
    prompt_token_ids: list[int]
    sampling: Sampling
    kv_transfer_params: dict[str, Any] | None = None
    cache_salt: str | None = None
    route_to: str | None = None
    """The replica (Serve unique id) the router chose for this request; None: any replica."""
    prefill_to: str | None = None
    """In P/D mode, the prefill replica chosen for the prefill leg."""


class EngineChunk(msgspec.Struct):
    """New output tokens of one request, as the engine produced them."""

    token_ids: list[int]
    finish_reason: str | None = None
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    kv_transfer_params: dict[str, Any] | None = None
    replica: str = ""
