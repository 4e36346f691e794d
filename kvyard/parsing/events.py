"""The events a stream parser emits, in the order the model produced them.

Every API encoder consumes this one vocabulary. Each event is a frozen msgspec struct tagged in the
``type`` field (``msgspec.to_builtins(event)`` gives ``{"type": "text_delta", "text": ...}``).

Ordering and chunking contract (see ``kvyard.parsing.base``):

- Deltas of one kind may arrive split differently for different chunkings of the same output;
  once adjacent ``TextDelta``s, adjacent ``ReasoningDelta``s and adjacent ``ToolCallArgsDelta``s of
  one index are merged, the sequence is the same for every chunking.
- ``ReasoningEnd`` closes every reasoning region: explicit close, implicit close (a tool call that
  ends reasoning), or the end of the stream. It may follow an empty region.
- A valid tool call is emitted as ``ToolCallStart``, ``ToolCallArgsDelta`` (the whole JSON text of
  the arguments) and ``ToolCallComplete``, all by the ``feed()`` whose chunk holds the call's closing
  delimiter. Concatenated ``ToolCallArgsDelta.delta``s of an index equal ``raw_arguments``.
"""

from __future__ import annotations

from typing import Any

import msgspec


class ReasoningDelta(msgspec.Struct, frozen=True, tag="reasoning_delta"):
    """A piece of reasoning (thinking) text."""

    text: str


class ReasoningEnd(msgspec.Struct, frozen=True, tag="reasoning_end"):
    """The current reasoning region closed."""


class TextDelta(msgspec.Struct, frozen=True, tag="text_delta"):
    """A piece of user-visible answer text (also the carrier of surfaced malformed output)."""

    text: str


class ToolCallStart(msgspec.Struct, frozen=True, tag="tool_call_start"):
    """A tool call begins; ``index`` counts valid tool calls in this stream from 0."""

    index: int
    id: str
    name: str


class ToolCallArgsDelta(msgspec.Struct, frozen=True, tag="tool_call_args_delta"):
    """A piece of the JSON text of the arguments of tool call ``index``."""

    index: int
    delta: str


class ToolCallComplete(msgspec.Struct, frozen=True, tag="tool_call_complete"):
    """Tool call ``index`` is complete and can be dispatched now.

    ``arguments`` is the parsed JSON object; ``raw_arguments`` is its JSON text: exactly as the model
    wrote it where the format carries a JSON span (Qwen3, Nemotron, DeepSeek, Kimi, harmony), or
    ``json.dumps(arguments, ensure_ascii=False)`` where it does not (Qwen3-Coder XML parameters).
    """

    index: int
    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str


Event = ReasoningDelta | ReasoningEnd | TextDelta | ToolCallStart | ToolCallArgsDelta | ToolCallComplete

DELTA_TYPES = (ReasoningDelta, TextDelta, ToolCallArgsDelta)


def event_tag(event: Event) -> str:
    """The ``type`` tag of ``event`` (``"text_delta"``, ...)."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]


def event_to_dict(event: Event) -> dict[str, Any]:
    """``{"type": tag, **fields}``: the JSON-ready form used by ``kvyard parse``."""
    return msgspec.to_builtins(event)


def merge_deltas(events: list[Event]) -> list[Event]:
    """Merge adjacent deltas of one kind (and one tool index): the chunking-invariant form."""
    merged: list[Event] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta):
            merged[-1] = TextDelta(last.text + event.text)
        elif isinstance(event, ReasoningDelta) and isinstance(last, ReasoningDelta):
            merged[-1] = ReasoningDelta(last.text + event.text)
        elif isinstance(event, ToolCallArgsDelta) and isinstance(last, ToolCallArgsDelta) and last.index == event.index:
            merged[-1] = ToolCallArgsDelta(event.index, last.delta + event.delta)
        else:
            merged.append(event)
    return merged
