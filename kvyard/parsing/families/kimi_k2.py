"""Moonshot Kimi K2 / K2-Thinking: ``<think>`` and a tool-call section of native-id calls::

    <|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Tokyo"}<|tool_call_end|><|tool_calls_section_end|>

The header before ``<|tool_call_argument_begin|>`` is Kimi's own call id and is kept as the event
``id`` (Kimi's template renders it back verbatim; ``id_factory`` is not used); the name is the id
without ``functions.`` and ``:N``. ``<|tool_calls_section_begin|>`` inside reasoning ends the
reasoning implicitly (K2-Thinking may open tools without ``</think>``, as vLLM also accepts).
"""

from __future__ import annotations

from kvyard.parsing.base import ParsedCall
from kvyard.parsing.jsoncalls import decode_arguments
from kvyard.parsing.tagged import TaggedParser

SECTION_BEGIN = "<|tool_calls_section_begin|>"
SECTION_END = "<|tool_calls_section_end|>"
CALL_BEGIN = "<|tool_call_begin|>"
CALL_END = "<|tool_call_end|>"
ARG_BEGIN = "<|tool_call_argument_begin|>"


def decode_kimi_call(body: str) -> list[ParsedCall] | None:
    header, sep, args = body.partition(ARG_BEGIN)
    call_id = header.strip()
    if not sep or ARG_BEGIN in args or not call_id or any(c.isspace() for c in call_id):
        return None
    name = call_id
    head, colon, tail = call_id.rpartition(":")
    if colon and tail.isdigit():
        name = head
    name = name.removeprefix("functions.")
    return decode_arguments(name, args, call_id)


class KimiK2Parser(TaggedParser):
    name = "kimi_k2"
    special_tokens = (SECTION_BEGIN, SECTION_END, CALL_BEGIN, CALL_END, ARG_BEGIN)
    think = ("<think>", "</think>")
    section = (SECTION_BEGIN, SECTION_END)
    call = (CALL_BEGIN, CALL_END)
    reasoning_exits = (SECTION_BEGIN,)

    def decode_body(self, body: str) -> list[ParsedCall] | None:
        return decode_kimi_call(body)
