"""Replay a recorded raw output through a parser: the function behind ``kvyard parse``.

Input: JSON lines, one chunk each, ``{"text": "..."}`` or ``{"token_ids": [...]}`` (the latter
needs the model's tokenizer; ids are detokenized incrementally with special tokens kept, exactly
as the frontend feeds the parser). Blank lines are skipped. Output: one dict per event,
``{"type": tag, ...}``, in order, then a last ``{"type": "stream_end", "malformed": N,
"tool_calls": K}`` record. Tool-call ids are ``call_<index>`` so replays are reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from kvyard.parsing.detokenize import IncrementalDetokenizer
from kvyard.parsing.events import event_to_dict
from kvyard.parsing.registry import check_tokenizer, get_parser


def _chunk(line: str, lineno: int, detok: IncrementalDetokenizer | None) -> str:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"line {lineno}: not JSON ({exc})") from None
    if isinstance(record, dict) and isinstance(record.get("text"), str):
        return record["text"]
    ids = record.get("token_ids") if isinstance(record, dict) else None
    if isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        if detok is None:
            raise ValueError(f"line {lineno}: token_ids need the model's tokenizer (pass --model DIR)")
        return detok.push(ids)
    raise ValueError(f'line {lineno}: expected {{"text": "..."}} or {{"token_ids": [ints]}}')


def replay(
    lines: Iterable[str],
    parser_name: str,
    tokenizer: Any = None,
    *,
    tool_names: set[str] | None = None,
    reasoning_started: bool = False,
    reasoning_enabled: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield the events of the recorded stream ``lines`` as dicts (see the module docstring)."""
    parser_cls = get_parser(parser_name)
    detok = None
    if tokenizer is not None:
        check_tokenizer(parser_cls, tokenizer)
        detok = IncrementalDetokenizer(tokenizer)
    parser = parser_cls(
        tool_names=tool_names,
        reasoning_started=reasoning_started,
        reasoning_enabled=reasoning_enabled,
        id_factory=lambda index: f"call_{index}",
    )
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        for event in parser.feed(_chunk(line, lineno, detok)):
            yield event_to_dict(event)
    tail = parser.feed(detok.flush()) if detok is not None else []
    for event in tail + parser.finish():
        yield event_to_dict(event)
    yield {"type": "stream_end", "malformed": parser.malformed, "tool_calls": parser.tool_calls}
