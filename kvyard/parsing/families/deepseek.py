"""DeepSeek-R1 / DeepSeek-V3 / V3.1: ``<think>`` and DeepSeek's tool-call special tokens.

V3 / R1-0528 form (one section, one or more calls, ``\\n`` between calls is framing)::

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
    ```json
    {"a": 1}
    ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>

V3.1 drops the type and the fence: ``<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{"a": 1}<｜tool▁call▁end｜>``;
both are accepted. Each call completes at its own ``<｜tool▁call▁end｜>``. ``deepseek_r1`` and
``deepseek_v3`` share the grammar; they differ only in which tokens the tokenizer must have (V3
vocabularies need not carry the think tags). Strip the ``<｜end▁of▁sentence｜>`` stop token before
feeding, as for every family.
"""

from __future__ import annotations

from kvyard.parsing.base import ParsedCall
from kvyard.parsing.jsoncalls import decode_arguments
from kvyard.parsing.tagged import TaggedParser

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"


def decode_deepseek_call(body: str) -> list[ParsedCall] | None:
    left, sep, right = body.partition(SEP)
    if not sep or SEP in right:
        return None
    kind = left.strip()
    if kind == "function" and not right.lstrip().startswith("{"):
        name, newline, rest = right.partition("\n")
        if not newline:
            return None
        rest = rest.strip()
        if rest.startswith("```json"):
            rest = rest[7:]
        elif rest.startswith("```"):
            rest = rest[3:]
        if rest.endswith("```"):
            rest = rest[:-3]
        return decode_arguments(name.strip(), rest)
    return decode_arguments(kind, right)


class DeepSeekR1Parser(TaggedParser):
    name = "deepseek_r1"
    special_tokens = ("<think>", "</think>", CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP)
    think = ("<think>", "</think>")
    section = (CALLS_BEGIN, CALLS_END)
    call = (CALL_BEGIN, CALL_END)

    def decode_body(self, body: str) -> list[ParsedCall] | None:
        return decode_deepseek_call(body)


class DeepSeekV3Parser(DeepSeekR1Parser):
    name = "deepseek_v3"
    special_tokens = (CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP)
