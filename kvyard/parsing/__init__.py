"""Streaming reasoning / tool-call parsing: the one place model output is parsed.

``get_parser(name)(tool_names=..., reasoning_started=...)`` gives a parser; ``feed`` it decoded
text chunk by chunk and ``finish`` it; it returns ``kvyard.parsing.events`` in model order.
"""

from kvyard.parsing.base import ParsedCall, StreamParser
from kvyard.parsing.events import (
    Event,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallComplete,
    ToolCallStart,
    event_tag,
    event_to_dict,
    merge_deltas,
)
from kvyard.parsing.registry import check_tokenizer, get_parser, parser_names
from kvyard.parsing.replay import replay

__all__ = [
    "Event",
    "ParsedCall",
    "ReasoningDelta",
    "ReasoningEnd",
    "StreamParser",
    "TextDelta",
    "ToolCallArgsDelta",
    "ToolCallComplete",
    "ToolCallStart",
    "check_tokenizer",
    "event_tag",
    "event_to_dict",
    "get_parser",
    "merge_deltas",
    "parser_names",
    "replay",
]
