"""Forced tool calls (Anthropic ``any``/``tool``, OpenAI ``required``/named function), enforced in
the engine: a regex of the model family's own tool-call format around a regex compiled from the
tool's JSON schema (outlines-core), so the call is valid JSON for that schema whatever the model,
and the one stream parser reads it like any other call.
"""

from __future__ import annotations

import json
from functools import lru_cache

from kvyard.conversation import Tool
from kvyard.errors import InvalidRequest
from kvyard.policies.profiles import ModelProfile

GENERIC_OBJECT = {"type": "object"}
_META = set(".^$*+?{}[]\\|()/")


def escape(text: str) -> str:
    """A regex matching ``text`` literally, in the plain dialect every structured-output backend reads."""
    return "".join("\\n" if c == "\n" else "\\t" if c == "\t" else "\\" + c if c in _META else c for c in text)


@lru_cache(maxsize=256)
def _schema_regex(schema_json: str) -> str:
    from outlines_core.json_schema import build_regex_from_schema

    try:
        return build_regex_from_schema(schema_json)
    except Exception:  # a schema outlines cannot compile still gets a well-formed JSON object
        return build_regex_from_schema(json.dumps(GENERIC_OBJECT))


def forced_call_regex(profile: ModelProfile, tools: list[Tool], name: str | None) -> str:
    """The regex the engine must follow: one call to ``name``, or to any of ``tools`` when None."""
    if profile.tool_call_format is None:
        raise InvalidRequest(f"this model (profile {profile.name!r}) has no tool-call format, so a tool call cannot be forced")
    chosen = [t for t in tools if name is None or t.name == name]
    if not chosen:
        raise InvalidRequest(f"tool_choice names {name!r}, which is not among the request's tools", param="tool_choice")
    alternatives = []
    for tool in chosen:
        head, tail = profile.tool_call_format.split("{arguments}")
        head = head.replace("{name}", json.dumps(tool.name)[1:-1])
        args = _schema_regex(json.dumps(tool.parameters or GENERIC_OBJECT, sort_keys=True))
        alternatives.append(f"{escape(head)}{args}{escape(tail)}")
    return alternatives[0] if len(alternatives) == 1 else "(" + "|".join(f"({a})" for a in alternatives) + ")"
