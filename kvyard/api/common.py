"""Shared request decoding and error shapes of the HTTP APIs."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec

from kvyard.errors import InvalidRequest, KvyardError

T = TypeVar("T")


def decode_body(body: bytes, schema: type[T]) -> T:
    """Decode and validate a JSON body; every failure is an ``InvalidRequest`` naming the field."""
    if not body:
        raise InvalidRequest("the request body is empty: send a JSON object")
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None


def parse_arguments(arguments: str | dict[str, Any]) -> dict[str, Any]:
    """Tool-call arguments as a dict (clients send a JSON string or an object)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        raise InvalidRequest("a tool call's 'arguments' is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("a tool call's 'arguments' must be a JSON object")
    return value


def openai_error(exc: KvyardError) -> dict[str, Any]:
    return {"error": {"message": exc.message, "type": exc.kind, "param": exc.param, "code": exc.status}}


def anthropic_error(exc: KvyardError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": exc.kind, "message": exc.message}}
