"""The streaming scanner every reasoning/tool-call parser runs on.

A parser is a state machine over literal delimiters (``<think>``, ``</tool_call>``,
``<|channel|>``...). Each state has a fixed set of active delimiters; the text between them is
*content*, handed to the state (streamed as reasoning/text, or buffered as a tool-call body).

Algorithm (per ``feed``): append the chunk to a short pending buffer, then repeatedly

1. find the leftmost complete active delimiter (``str.find`` per delimiter; on a tie the longest);
2. find the leftmost position ``h`` in the last ``maxlen - 1`` characters whose suffix is a proper
   prefix of an active delimiter (a delimiter that may still be completing);
3. if a complete delimiter starts before ``h``: hand the content before it to the state, consume
   the delimiter (the state may switch), and repeat; otherwise hand over everything before ``h``
   and keep only ``buffer[h:]``.

So only a suffix that could still become a delimiter is ever held back, and the leftmost-longest
rule makes the result independent of how the output was cut into chunks. Cost per feed is
O(len(chunk) x number of active delimiters) for the finds plus O(maxlen) for step 2, independent
of how much was streamed before; buffered tool-call bodies are appended to a list, not rescanned.

Bad model output never raises and never loses a character. The rule, for every family: the
offending raw text, delimiters included, is emitted as ``TextDelta`` at its place in the stream and
``malformed`` is incremented once per offence:

- a tool-call block that does not decode (invalid JSON, arguments not an object, junk in the
  block) or names a tool outside ``tool_names``: ``open + body + close``; a block is all or nothing;
- a tool call still open at the end of the stream: ``open + body``;
- a delimiter outside its context (``</tool_call>`` with no opening, ``</think>`` in text, a call
  marker outside its section): the delimiter;
- non-whitespace text where only framing may be (between the calls of a section, between harmony
  messages): that text.

Not errors: reasoning still open at the end (a length cut; it was streamed, it gets its
``ReasoningEnd``), a section still open at the end, and whitespace between structural blocks
(framing, dropped). Because text streams before its fate is known, a block is judged only when it
closes, and the tool-call events of a valid block are emitted together at that moment. The family
state machines (``kvyard.parsing.tagged``, ``kvyard.parsing.families.harmony``) define the contexts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

from kvyard.parsing.events import (
    Event,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallComplete,
    ToolCallStart,
)


class ParsedCall(NamedTuple):
    """One tool call decoded from a closed tool-call body."""

    name: str
    arguments: dict[str, Any]
    raw_arguments: str
    id: str | None = None  # the model's own id where its format carries one (Kimi K2)


class Delimiters:
    """An immutable set of literal delimiters with the tables the scanner needs."""

    __slots__ = ("strings", "prefixes", "first", "maxlen")

    def __init__(self, strings: Iterable[str]):
        unique = {s for s in strings if s}
        # Longest first, so that on equal start the longest complete delimiter wins.
        self.strings: tuple[str, ...] = tuple(sorted(unique, key=lambda s: (-len(s), s)))
        self.prefixes = frozenset(s[:k] for s in unique for k in range(1, len(s)))
        self.first = frozenset(s[0] for s in unique)
        self.maxlen = max((len(s) for s in unique), default=0)


def _default_id(index: int) -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class StreamParser:
    """Base class: the scanner, event emission and the bad-output rule.

    Subclasses set ``self._delims`` for the current state and implement ``_content``,
    ``_delimiter`` and ``_end_of_stream``.
    """

    name: ClassVar[str] = ""
    #: Delimiters that must be single special tokens in the model's vocabulary (``check_tokenizer``).
    special_tokens: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        tool_names: set[str] | frozenset[str] | None = None,
        reasoning_started: bool = False,
        reasoning_enabled: bool = True,
        id_factory: Callable[[int], str] | None = None,
        tool_schemas: Mapping[str, Mapping[str, Any]] | None = None,
        drop_framing_whitespace: bool = False,
    ):
        """
        tool_names: the tools the request offers; a call to any other name is malformed.
            ``None`` accepts every name; an empty set makes every tool call malformed text.
        reasoning_started: the prompt already opened reasoning (the template ended with
            ``<think>``), so output starts inside reasoning.
        reasoning_enabled: ``False`` means reasoning delimiters are plain text (see the family
            module for what that means there).
        id_factory: tool-call id for a valid call's index (default ``call_<24 hex>``). Formats that
            carry their own id (Kimi K2) keep the model's id.
        tool_schemas: tool name -> JSON schema of its parameters, for formats whose argument values
            are untyped strings (Qwen3-Coder).
        drop_framing_whitespace: drop text runs that are whitespace only and sit between
            structure (``</think>\\n\\n<tool_call>``, ``\\n`` between tool calls, a trailing
            newline): the templates' framing, which APIs should not show as text blocks. A
            whitespace run is then held until non-whitespace text follows (emitted with it) or
            structure follows (dropped). Off: every character is surfaced.
        """
        self.tool_names = frozenset(tool_names) if tool_names is not None else None
        self.tool_schemas = tool_schemas or {}
        self.reasoning_enabled = reasoning_enabled
        self.reasoning_started = reasoning_started and reasoning_enabled
        self.malformed = 0
        self._id_factory = id_factory or _default_id
        self._next_index = 0
        self._buf = ""
        self._out: list[Event] = []
        self._delims = Delimiters(())
        self._finished = False
        self._framing = drop_framing_whitespace
        self._ws_held = ""
        self._in_text = False  # the current text run has non-whitespace (framing mode only)

    # -- public API -----------------------------------------------------------------------------

    def feed(self, text: str) -> list[Event]:
        """Consume the next chunk of decoded output; return the events it completes."""
        if self._finished:
            raise ValueError("feed() after finish(): create a new parser per stream")
        if text:
            self._buf += text
            self._scan(final=False)
        return self._take()

    def finish(self) -> list[Event]:
        """End of stream: flush what was held back and close what is open."""
        if not self._finished:
            self._scan(final=True)
            self._end_of_stream()
            self._ws_held = ""
            self._finished = True
        return self._take()

    def parse(self, text: str) -> list[Event]:
        """Non-streaming convenience: the events of one complete output."""
        return self.feed(text) + self.finish()

    @property
    def tool_calls(self) -> int:
        """How many valid tool calls were emitted so far."""
        return self._next_index

    # -- hooks for subclasses -------------------------------------------------------------------

    def _content(self, text: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _delimiter(self, delim: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _end_of_stream(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- scanner --------------------------------------------------------------------------------

    def _scan(self, final: bool) -> None:
        while self._buf:
            buf = self._buf
            delims = self._delims
            if not delims.strings:
                self._buf = ""
                self._content(buf)
                return
            at = -1
            found = ""
            for d in delims.strings:
                i = buf.find(d, 0, at + len(d) if at != -1 else len(buf))
                if i != -1 and (at == -1 or i < at):
                    at, found = i, d
            hold = -1
            if not final:
                n = len(buf)
                lo = max(0, n - delims.maxlen + 1)
                stop = at + 1 if at != -1 else n
                prefixes = delims.prefixes
                for c in delims.first:  # usually just "<": str.find, not a Python loop per char
                    j = buf.find(c, lo, stop)
                    while j != -1 and (hold == -1 or j < hold):
                        if buf[j:] in prefixes:
                            hold = j
                            break
                        j = buf.find(c, j + 1, stop)
            if at != -1 and (hold == -1 or at < hold):
                self._buf = buf[at + len(found) :]
                if at:
                    self._content(buf[:at])
                self._delimiter(found)
                continue
            cut = hold if hold != -1 else len(buf)
            self._buf = buf[cut:]
            if cut:
                self._content(buf[:cut])
            return

    def _take(self) -> list[Event]:
        out, self._out = self._out, []
        return out

    # -- emission -------------------------------------------------------------------------------

    def _text(self, text: str) -> None:
        if text and self._framing and not self._in_text:
            if text.isspace():
                self._ws_held += text
                return
            text, self._ws_held, self._in_text = self._ws_held + text, "", True
        if text:
            out = self._out
            if out and type(out[-1]) is TextDelta:
                out[-1] = TextDelta(out[-1].text + text)
            else:
                out.append(TextDelta(text))

    def _structure(self) -> None:
        """Non-text output follows: a held whitespace-only run was framing."""
        self._ws_held = ""
        self._in_text = False

    def _reasoning(self, text: str) -> None:
        if text:
            self._structure()
            out = self._out
            if out and type(out[-1]) is ReasoningDelta:
                out[-1] = ReasoningDelta(out[-1].text + text)
            else:
                out.append(ReasoningDelta(text))

    def _reasoning_end(self) -> None:
        self._structure()
        self._out.append(ReasoningEnd())

    def _malformed(self, raw: str) -> None:
        """The bad-output rule: surface ``raw`` (delimiters included) as text and count it."""
        self.malformed += 1
        self._text(raw)

    def _emit_calls(self, calls: list[ParsedCall] | None, raw: str) -> None:
        """Emit a closed tool-call block, or surface it whole as malformed text.

        A block is all or nothing: it is malformed if it decoded to nothing, or if any call names
        a tool outside ``tool_names``.
        """
        names = self.tool_names
        if not calls or (names is not None and any(c.name not in names for c in calls)):
            self._malformed(raw)
            return
        self._structure()
        out = self._out
        for call in calls:
            index = self._next_index
            self._next_index += 1
            call_id = call.id or self._id_factory(index)
            out.append(ToolCallStart(index, call_id, call.name))
            out.append(ToolCallArgsDelta(index, call.raw_arguments))
            out.append(ToolCallComplete(index, call_id, call.name, call.arguments, call.raw_arguments))


class GapText:
    """Text between structural blocks (between tool calls in a section, between harmony messages).

    Whitespace there is framing and dropped. Anything else is bad output: the gap so far is
    surfaced as text and counted once per gap, and the rest of that gap streams as text. The
    decision depends only on the characters, never on the chunking.
    """

    __slots__ = ("_ws", "_bad")

    def __init__(self) -> None:
        self._ws = ""
        self._bad = False

    def add(self, parser: StreamParser, text: str) -> None:
        if self._bad:
            parser._text(text)
        elif text.isspace():
            self._ws += text
        else:
            self._bad = True
            parser._malformed(self._ws + text)
            self._ws = ""

    def close(self) -> None:
        self._ws = ""
        self._bad = False
