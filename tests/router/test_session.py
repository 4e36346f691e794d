"""Session identity: first match wins, headers case-insensitive."""

from __future__ import annotations

import pytest

from kvyard.router.session import session_id

ALL = {
    "X-Claude-Code-Session-Id": "claude",
    "Session-Id": "codex",
    "X-Session-Id": "generic",
}


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (ALL, "pck", "claude"),
        ({"session-id": "codex", "x-session-id": "generic"}, "pck", "codex"),
        ({"x-session-id": "generic"}, "pck", "pck"),
        ({"x-session-id": "generic"}, None, "generic"),
        ({"X-SESSION-ID": "generic"}, "", "generic"),
        ({"x-claude-code-session-id": "  spaced  "}, None, "spaced"),
        ({"x-claude-code-session-id": "   ", "session-id": "codex"}, None, "codex"),  # blank = absent
        ({"content-type": "application/json"}, None, None),
        ({}, None, None),
        ({}, "  ", None),
    ],
)
def test_first_match_wins(headers, body, expected) -> None:
    assert session_id(headers, body) == expected


def test_works_with_starlette_headers() -> None:
    datastructures = pytest.importorskip("starlette.datastructures")
    raw = [(b"x-session-id", b"generic"), (b"session-id", b"codex"), (b"session-id", b"second")]
    assert session_id(datastructures.Headers(raw=raw), None) == "codex"  # first value of a repeat
