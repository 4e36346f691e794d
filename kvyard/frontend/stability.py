"""Prompt-stability inspector: for a session, where consecutive requests stopped sharing a prefix.

Per session it keeps the block hashes of the last prompt (one int per KV block, never prompt
text). Each new request is compared block by block: the first differing block bounds the reusable
prefix; that block's start is located in the rendered prompt (which message, which field, or the
template between them) and reported with the sanitizer rules that fired. Cost: one hash pass over
the prompt and one decode of the common prefix when it diverged.
Reports are kept per frontend replica, the last ``keep`` per session, for ``sessions`` sessions.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

import msgspec

from kvyard.conversation import Conversation, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from kvyard.router.hashing import block_hashes


class StabilityReport(msgspec.Struct):
    at: float
    prompt_tokens: int
    previous_prompt_tokens: int
    reused_blocks: int
    """Leading blocks identical to the previous request's prompt."""
    first_divergent_block: int | None
    """None when this prompt extends the previous one block for block."""
    diverged_at: str | None
    """Where the first divergent block starts: e.g. ``system``, ``messages[3].user.text``, ``template``."""
    sanitizer_rules_fired: dict[str, int]


def _fields(conv: Conversation) -> list[tuple[str, str]]:
    """(location, text) of every piece of client text, in prompt order."""
    out = [("system", conv.system)] if conv.system else []
    for i, msg in enumerate(conv.messages):
        for part in msg.parts:
            if isinstance(part, TextPart):
                out.append((f"messages[{i}].{msg.role}.text", part.text))
            elif isinstance(part, ReasoningPart):
                out.append((f"messages[{i}].{msg.role}.reasoning", part.text))
            elif isinstance(part, ToolCallPart):
                out.append((f"messages[{i}].{msg.role}.tool_call.{part.name}", part.name))
            elif isinstance(part, ToolResultPart):
                out.append((f"messages[{i}].{msg.role}.tool_result", part.content))
    return out


def locate(rendered: str, conv: Conversation, offset: int) -> str:
    """The conversation field whose rendered text covers character ``offset`` (else ``template``)."""
    cursor = 0
    for where, text in _fields(conv):
        if not text:
            continue
        start = rendered.find(text, cursor)
        if start < 0:
            continue
        if start <= offset < start + len(text):
            return where
        if start > offset:
            break
        cursor = start + len(text)
    return "template"


class StabilityTracker:
    def __init__(self, block_size: int, *, sessions: int = 10_000, keep: int = 50):
        self.block_size, self.capacity, self.keep = block_size, sessions, keep
        self._last: OrderedDict[str, tuple[list[int], int]] = OrderedDict()
        self._reports: dict[str, deque[StabilityReport]] = {}

    def observe(
        self,
        session: str,
        prompt_ids: list[int],
        conv: Conversation,
        rendered_text: str,
        detokenize,
        fired: dict[str, int],
    ) -> StabilityReport:
        hashes = block_hashes(prompt_ids, self.block_size, 0)
        previous, previous_len = self._last.get(session, ([], 0))
        reused = 0
        for a, b in zip(hashes, previous):
            if a != b:
                break
            reused += 1
        divergent = reused if previous and reused < min(len(hashes), len(previous)) else None
        where = None
        if divergent is not None:
            offset = len(detokenize(prompt_ids[: divergent * self.block_size]))
            where = locate(rendered_text, conv, offset)
        report = StabilityReport(time.time(), len(prompt_ids), previous_len, reused, divergent, where, dict(fired))
        self._last[session] = (hashes, len(prompt_ids))
        self._last.move_to_end(session)
        self._reports.setdefault(session, deque(maxlen=self.keep)).append(report)
        while len(self._last) > self.capacity:
            gone, _ = self._last.popitem(last=False)
            self._reports.pop(gone, None)
        return report

    def reports(self, session: str) -> list[StabilityReport]:
        return list(self._reports.get(session, ()))
