"""Shared request decoding and error shapes of the HTTP APIs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import msgspec

from kvyard.errors import InvalidRequest, KvyardError

T = TypeVar("T")

_AT = re.compile(r" - at `\$\.?(.*)`$")

# Sampling values every engine accepts (vLLM refuses others, which would fail the request later).
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
TopP = Annotated[float, msgspec.Meta(gt=0, le=1)]
TopK = Annotated[int, msgspec.Meta(ge=-1)]
"""0 or -1: no top-k."""
Seed = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""A 64-bit integer (the engines' random generators take no other)."""


class StructuredOutputs(msgspec.Struct):
    regex: str | None = None
    json: dict[str, Any] | None = None


class Extensions(msgspec.Struct):
    """kvyard/vLLM request extensions every API accepts: constrain the output (vLLM's field name)."""

    structured_outputs: StructuredOutputs | None = None
    metadata: dict[str, Any] | None = None
    """Anthropic/OpenAI request metadata; ``metadata.kvyard_replay`` overrides the replay policy."""
    cache_salt: str | None = None
    """vLLM's field: a further split of the caller's prefix cache (chained after the tenant's salt)."""


def decode_body(body: bytes, schema: type[T]) -> T:
    """Decode and validate a JSON body; every failure is an ``InvalidRequest`` naming the field."""
    if not body:
        raise InvalidRequest("the request body is empty: send a JSON object")
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        at = _AT.search(str(exc))
        raise InvalidRequest(f"invalid request: {exc}", param=(at.group(1) or None) if at else None) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec's depth limit (about 1000 nested arrays/objects)
        raise InvalidRequest("the body is nested too deeply") from None


def parse_arguments(arguments: str | dict[str, Any]) -> dict[str, Any]:
    """Tool-call arguments as a dict (clients send a JSON string or an object)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        raise InvalidRequest("a tool call's 'arguments' is not valid JSON") from None
    except RecursionError:
        raise InvalidRequest("a tool call's 'arguments' is nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidRequest("a tool call's 'arguments' must be a JSON object")
    return value


def openai_error(exc: KvyardError) -> dict[str, Any]:
    return {"error": {"message": exc.message, "type": exc.kind, "param": exc.param, "code": exc.status}}


def anthropic_error(exc: KvyardError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": exc.kind, "message": exc.message}}


def hmac_signer(key: bytes) -> Callable[[str], str]:
    """``text -> base64url(HMAC-SHA256(key, text))``: a reasoning signature only kvyard can make
    (no ``.`` in it, so it also fits Responses' packed ``encrypted_content``)."""

    def sign(text: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(key, text.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()

    return sign


process_signer = hmac_signer(secrets.token_bytes(32))
"""Default signer; deployments pass one keyed from config so signatures survive restarts."""


def sse_frame(payload: dict[str, Any], event: str | None = None) -> bytes:
    """One SSE frame; ``event`` names it (Anthropic and Responses name every event by its type)."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def typed_sse(payload: dict[str, Any]) -> bytes:
    """An SSE frame whose event name is the payload's ``type``."""
    return sse_frame(payload, payload["type"])
