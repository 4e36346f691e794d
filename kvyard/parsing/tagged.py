"""The state machine of tag families: a family is declared by its delimiters plus a body decoder.

A family sets (class attributes):

- ``think``: ``(open, close)`` reasoning tags, or ``None``.
- ``section``: ``(open, close)`` around a group of calls (DeepSeek, Kimi K2), or ``None``.
- ``call``: ``(open, close)`` around one tool-call body.
- ``reasoning_exits``: delimiters that end reasoning implicitly and open the tool block; each
  starts with the tool opener (``section[0]`` or ``call[0]``), only that opener is consumed, the
  rest is scanned again as the start of the body (Qwen3-Coder's ``<tool_call>\\n<function=``,
  Kimi K2's ``<|tool_calls_section_begin|>``).
- ``decode_body(body) -> list[ParsedCall] | None``: the calls in one closed body, ``None`` if bad.

States and their active delimiters::

    TEXT       think open -> REASONING; tool opener -> SECTION / CALL;
               any other family delimiter here is stray: malformed text.
    REASONING  think close -> TEXT (ReasoningEnd); reasoning exit -> SECTION / CALL (ReasoningEnd);
               think open: swallowed if the region has no content yet (a template that already
               opened it), reasoning text otherwise.
    SECTION    call open -> CALL; section close -> TEXT. Whitespace between calls is framing;
               other text is malformed text (``GapText``).
    CALL       call close -> decode the body: valid calls are emitted, else the raw block
               ``open + body + close`` is malformed text. Everything else is body.

End of stream: open reasoning gets its ``ReasoningEnd`` (a length cut is not an error, the
reasoning was already streamed); an open call is malformed text (``open + body``); an open section
is closed silently (section markers are framing). With ``reasoning_enabled=False`` the think tags
are not delimiters at all: ``<think>`` is plain text, verbatim, exactly as the model wrote it (the
same text then replays token-exactly into the next prompt). Tool calls are still parsed.
"""

from __future__ import annotations

from functools import cache
from typing import ClassVar

from kvyard.parsing.base import Delimiters, GapText, ParsedCall, StreamParser

TEXT, REASONING, SECTION, CALL = range(4)


@cache
def _state_delimiters(cls: type[TaggedParser], reasoning: bool) -> tuple[Delimiters, ...]:
    think = cls.think if reasoning else None
    structural: list[str] = []
    if cls.section:
        structural += cls.section
    if cls.call:
        structural += cls.call
    text = list(structural) + (list(think) if think else [])
    in_reasoning = (list(think) + list(cls.reasoning_exits)) if think else []
    section = [cls.call[0], cls.section[1]] if cls.section and cls.call else []
    call = [cls.call[1]] if cls.call else []
    return (Delimiters(text), Delimiters(in_reasoning), Delimiters(section), Delimiters(call))


class TaggedParser(StreamParser):
    """Base class of the tag families; see the module docstring for the grammar."""

    think: ClassVar[tuple[str, str] | None] = ("<think>", "</think>")
    section: ClassVar[tuple[str, str] | None] = None
    call: ClassVar[tuple[str, str] | None] = None
    reasoning_exits: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._tables = _state_delimiters(type(self), self.reasoning_enabled)
        self._tool_open = self.section[0] if self.section else (self.call[0] if self.call else "")
        self._body: list[str] = []
        self._gap = GapText()
        self._has_reasoning = False
        self._enter(REASONING if self.reasoning_started and self.think else TEXT)

    def decode_body(self, body: str) -> list[ParsedCall] | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _enter(self, state: int) -> None:
        self._state = state
        self._delims = self._tables[state]
        if state == REASONING:
            self._has_reasoning = False

    def _open_tool(self) -> None:
        if self.section:
            self._gap.close()
            self._enter(SECTION)
        else:
            self._body = []
            self._enter(CALL)

    def _content(self, text: str) -> None:
        state = self._state
        if state == TEXT:
            self._text(text)
        elif state == REASONING:
            self._has_reasoning = True
            self._reasoning(text)
        elif state == CALL:
            self._body.append(text)
        else:
            self._gap.add(self, text)

    def _delimiter(self, delim: str) -> None:
        state = self._state
        think = self.think
        if state == TEXT:
            if think and delim == think[0]:
                self._enter(REASONING)
            elif delim == self._tool_open:
                self._open_tool()
            else:
                self._malformed(delim)
        elif state == REASONING:
            if delim == think[1]:  # type: ignore[index]
                self._reasoning_end()
                self._enter(TEXT)
            elif delim == think[0]:  # type: ignore[index]
                if self._has_reasoning:
                    self._reasoning(delim)
            else:  # a reasoning exit: consume only the tool opener
                self._reasoning_end()
                self._buf = delim[len(self._tool_open) :] + self._buf
                self._open_tool()
        elif state == SECTION:
            self._gap.close()
            if delim == self.section[1]:  # type: ignore[index]
                self._enter(TEXT)
            else:
                self._body = []
                self._enter(CALL)
        else:  # CALL: the close delimiter
            body = "".join(self._body)
            self._body = []
            open_, close = self.call  # type: ignore[misc]
            self._emit_calls(self.decode_body(body), open_ + body + close)
            self._enter(SECTION if self.section else TEXT)

    def _end_of_stream(self) -> None:
        state = self._state
        if state == REASONING:
            self._reasoning_end()
        elif state == CALL:
            self._malformed(self.call[0] + "".join(self._body))  # type: ignore[index]
            self._body = []
        elif state == SECTION:
            self._gap.close()
        self._enter(TEXT)
