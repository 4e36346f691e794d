"""Models without reasoning or tool-call syntax (SmolLM2): every character is answer text.

No delimiter is active, so nothing is ever held back: each feed returns its chunk as one
``TextDelta``.
"""

from __future__ import annotations

from kvyard.parsing.base import StreamParser


class PlainParser(StreamParser):
    name = "plain"
    special_tokens = ()

    def _content(self, text: str) -> None:
        self._text(text)

    def _delimiter(self, delim: str) -> None:  # pragma: no cover - no delimiters exist
        self._text(delim)

    def _end_of_stream(self) -> None:
        pass
