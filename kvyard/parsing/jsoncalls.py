"""Decode JSON tool-call bodies and keep the exact text of the arguments.

``{"name": ..., "arguments": {...}}`` objects (Qwen3/Hermes, Nemotron) are walked member by member
with ``json.JSONDecoder.raw_decode``, which returns where each value ends, so ``raw_arguments`` is
the model's own text of the arguments object (what a chat template that replays argument strings
verbatim needs for a token-exact prompt). One linear pass over the body; any syntax error or
wrong shape gives ``None`` (the caller surfaces the block as malformed text).
"""

from __future__ import annotations

import json
from json.decoder import scanstring
from typing import Any

from kvyard.parsing.base import ParsedCall

_decoder = json.JSONDecoder()
_WS = " \t\n\r"


def _skip_ws(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def _object_members(s: str, i: int) -> tuple[dict[str, tuple[Any, int, int]], int]:
    """Members of the JSON object at ``s[i] == '{'``: key -> (value, start, end); and its end."""
    if s[i : i + 1] != "{":
        raise ValueError("expected an object")
    members: dict[str, tuple[Any, int, int]] = {}
    i = _skip_ws(s, i + 1)
    if s[i : i + 1] == "}":
        return members, i + 1
    while True:
        if s[i : i + 1] != '"':
            raise ValueError("expected a key")
        key, i = scanstring(s, i + 1)
        i = _skip_ws(s, i)
        if s[i : i + 1] != ":":
            raise ValueError("expected ':'")
        i = _skip_ws(s, i + 1)
        value, end = _decoder.raw_decode(s, i)
        members[key] = (value, i, end)
        i = _skip_ws(s, end)
        c = s[i : i + 1]
        if c == ",":
            i = _skip_ws(s, i + 1)
        elif c == "}":
            return members, i + 1
        else:
            raise ValueError("expected ',' or '}'")


def _call_from_object(s: str, i: int) -> tuple[ParsedCall | None, int]:
    members, end = _object_members(s, i)
    name = members.get("name", (None,))[0]
    if not isinstance(name, str) or not name:
        return None, end
    entry = members.get("arguments") or members.get("parameters")
    if entry is None:
        return ParsedCall(name, {}, "{}"), end
    value, start, stop = entry
    if isinstance(value, dict):
        return ParsedCall(name, value, s[start:stop]), end
    if isinstance(value, str):  # arguments given as a JSON string
        try:
            inner = json.loads(value)
        except ValueError:
            return None, end
        if isinstance(inner, dict):
            return ParsedCall(name, inner, value), end
    return None, end


def decode_call_object(body: str) -> list[ParsedCall] | None:
    """One ``{"name": ..., "arguments": {...}}`` object (whitespace around it allowed)."""
    try:
        i = _skip_ws(body, 0)
        call, end = _call_from_object(body, i)
    except ValueError:
        return None
    if call is None or _skip_ws(body, end) != len(body):
        return None
    return [call]


def decode_call_array(body: str) -> list[ParsedCall] | None:
    """A JSON array of call objects (a lone object is accepted too); empty is bad."""
    i = _skip_ws(body, 0)
    if body[i : i + 1] == "{":
        return decode_call_object(body)
    if body[i : i + 1] != "[":
        return None
    calls: list[ParsedCall] = []
    try:
        i = _skip_ws(body, i + 1)
        while body[i : i + 1] != "]":
            call, i = _call_from_object(body, i)
            if call is None:
                return None
            calls.append(call)
            i = _skip_ws(body, i)
            if body[i : i + 1] == ",":
                i = _skip_ws(body, i + 1)
            elif body[i : i + 1] != "]":
                return None
    except ValueError:
        return None
    if not calls or _skip_ws(body, i + 1) != len(body):
        return None
    return calls


def decode_arguments(name: str, text: str, call_id: str | None = None) -> list[ParsedCall] | None:
    """A bare JSON object of arguments for a call whose name came from elsewhere."""
    raw = text.strip(_WS)
    if not name or not raw.startswith("{"):
        return None
    try:
        arguments = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(arguments, dict):
        return None
    return [ParsedCall(name, arguments, raw, call_id)]
