"""NVIDIA Nemotron (Llama-Nemotron, Nemotron-Nano v2): ``<think>`` and a JSON array per block::

    <think>\\nreasoning\\n</think>\\n\\n<TOOLCALL>[{"name": "f", "arguments": {"a": 1}}, {...}]</TOOLCALL>

All calls of one ``<TOOLCALL>`` block complete at its ``</TOOLCALL>``; the block is valid only if
every element is. ``<TOOLCALL>`` is a single token in some Nemotron vocabularies and plain text in
others (Llama-3 based ones), so no special token is required of the tokenizer.
"""

from __future__ import annotations

from kvyard.parsing.base import ParsedCall
from kvyard.parsing.jsoncalls import decode_call_array
from kvyard.parsing.tagged import TaggedParser


class NemotronParser(TaggedParser):
    name = "nemotron"
    special_tokens = ()
    think = ("<think>", "</think>")
    call = ("<TOOLCALL>", "</TOOLCALL>")

    def decode_body(self, body: str) -> list[ParsedCall] | None:
        return decode_call_array(body)
