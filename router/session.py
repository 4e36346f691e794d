"""Session identity for routing affinity: which harness session a request belongs to.

First match wins (DESIGN.md "Contracts"):

1. header ``x-claude-code-session-id`` (Claude Code),
2. header ``session-id`` (Codex CLI),
3. the Responses API body field ``prompt_cache_key`` (Codex CLI, OpenAI SDKs),
4. header ``x-session-id`` (generic),
5. none.

Header names are matched case-insensitively; values are stripped of surrounding whitespace and
an empty value counts as absent. Cost: one pass over the headers.
"""

from __future__ import annotations

from collections.abc import Mapping

_HEADERS_BEFORE_BODY = ("x-claude-code-session-id", "session-id")
_HEADERS_AFTER_BODY = ("x-session-id",)
_WANTED = frozenset(_HEADERS_BEFORE_BODY + _HEADERS_AFTER_BODY)


def session_id(headers: Mapping[str, str], body_prompt_cache_key: str | None) -> str | None:
    """The request's session id, or ``None`` (see the module docstring for the order)."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in _WANTED and key not in found and isinstance(value, str) and value.strip():
            found[key] = value.strip()
    for key in _HEADERS_BEFORE_BODY:
        if key in found:
            return found[key]
    if isinstance(body_prompt_cache_key, str) and body_prompt_cache_key.strip():
        return body_prompt_cache_key.strip()
    for key in _HEADERS_AFTER_BODY:
        if key in found:
            return found[key]
    return None
