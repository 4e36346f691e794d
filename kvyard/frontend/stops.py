"""Client stop strings over streamed text: release text as soon as it cannot start a stop string.

Holds back at most ``max(len(stop)) - 1`` characters; on a match, the text before the stop string
is released and the rest dropped.
"""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.buffer = ""
        self.matched: str | None = None

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to release, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        self.buffer += text
        found = [(i, s) for s in self.stops if (i := self.buffer.find(s)) >= 0]
        if found:
            cut, self.matched = min(found)
            out, self.buffer = self.buffer[:cut], ""
            return out, True
        keep = self._partial_suffix()
        out = self.buffer[: len(self.buffer) - keep]
        self.buffer = self.buffer[len(self.buffer) - keep :]
        return out, False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out

    def _partial_suffix(self) -> int:
        """Length of the longest buffer suffix that is a proper prefix of some stop string."""
        for n in range(min(self.hold, len(self.buffer)), 0, -1):
            tail = self.buffer[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0
