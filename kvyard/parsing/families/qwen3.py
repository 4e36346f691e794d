"""Qwen3 / Qwen2.5 / QwQ (Hermes-style): ``<think>…</think>`` and JSON tool calls.

Output as the model writes it (``reasoning_started=True`` when the template already opened
``<think>``, as Qwen3-2507-Thinking's does)::

    <think>\\nreasoning\\n</think>\\n\\ntext\\n<tool_call>\\n{"name": "f", "arguments": {"a": 1}}\\n</tool_call>

All four tags are single special tokens in the Qwen vocabulary. ``<tool_call>`` inside reasoning is
reasoning text (only ``</think>`` ends reasoning), as in vLLM's Qwen3 reasoning parser.
"""

from __future__ import annotations

from kvyard.parsing.base import ParsedCall
from kvyard.parsing.jsoncalls import decode_call_object
from kvyard.parsing.tagged import TaggedParser


class Qwen3Parser(TaggedParser):
    name = "qwen3"
    special_tokens = ("<think>", "</think>", "<tool_call>", "</tool_call>")
    think = ("<think>", "</think>")
    call = ("<tool_call>", "</tool_call>")

    def decode_body(self, body: str) -> list[ParsedCall] | None:
        return decode_call_object(body)
