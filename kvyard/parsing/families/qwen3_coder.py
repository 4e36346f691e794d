"""Qwen3-Coder / Qwen3.5 XML tool calls (with Qwen3's ``<think>``)::

    <tool_call>
    <function=read_file>
    <parameter=path>
    src/main.py
    </parameter>
    </function>
    </tool_call>

Values are strings; one leading and one trailing newline (template markup) are trimmed and the
value is typed by ``kvyard.parsing.coerce`` (``tool_schemas`` gives exact types). A missing
``</parameter>`` ends at the next ``<parameter=`` or ``</function>`` (as Qwen's parser allows);
several ``<function=…>`` in one block are several calls; any other text in the block is bad.
``raw_arguments`` is ``json.dumps(arguments, ensure_ascii=False)``.

Qwen3.5 may open a tool call inside reasoning without ``</think>``: ``<tool_call>`` directly
followed by ``<function=`` (optionally after one newline) ends reasoning; a bare ``<tool_call>``
mentioned in reasoning stays reasoning text (vLLM's Qwen3 reasoning parser uses the same lookahead).
"""

from __future__ import annotations

import json

from kvyard.parsing.base import ParsedCall
from kvyard.parsing.coerce import coerce_arguments
from kvyard.parsing.tagged import TaggedParser

FUNC = "<function="
FUNC_END = "</function>"
PARAM = "<parameter="
PARAM_END = "</parameter>"


def _trim_newlines(value: str) -> str:
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def parse_functions(body: str) -> list[tuple[str, dict[str, str]]] | None:
    """``[(name, {param: raw string})]`` for every ``<function=…>`` in ``body``; None if bad."""
    functions: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(body)
    while True:
        while i < n and body[i].isspace():
            i += 1
        if i == n:
            return functions or None
        if not body.startswith(FUNC, i):
            return None
        close = body.find(">", i)
        name = body[i + len(FUNC) : close].strip() if close != -1 else ""
        if not name:
            return None
        i = close + 1
        params: dict[str, str] = {}
        while True:
            while i < n and body[i].isspace():
                i += 1
            if body.startswith(FUNC_END, i):
                i += len(FUNC_END)
                break
            if not body.startswith(PARAM, i):
                return None
            close = body.find(">", i)
            pname = body[i + len(PARAM) : close].strip() if close != -1 else ""
            if not pname:
                return None
            start = close + 1
            end = body.find(PARAM_END, start)
            nxt = body.find(PARAM, start)
            if end != -1 and (nxt == -1 or end < nxt):
                params[pname] = _trim_newlines(body[start:end])
                i = end + len(PARAM_END)
                continue
            fend = body.find(FUNC_END, start)
            stops = [p for p in (nxt, fend) if p != -1]
            if not stops:
                return None
            i = min(stops)
            params[pname] = _trim_newlines(body[start:i])
        functions.append((name, params))


class Qwen3CoderParser(TaggedParser):
    name = "qwen3_coder"
    special_tokens = ("<think>", "</think>", "<tool_call>", "</tool_call>")
    think = ("<think>", "</think>")
    call = ("<tool_call>", "</tool_call>")
    reasoning_exits = ("<tool_call>" + FUNC, "<tool_call>\n" + FUNC)

    def decode_body(self, body: str) -> list[ParsedCall] | None:
        functions = parse_functions(body)
        if functions is None:
            return None
        calls = []
        for name, params in functions:
            arguments = coerce_arguments(params, self.tool_schemas.get(name))
            calls.append(ParsedCall(name, arguments, json.dumps(arguments, ensure_ascii=False)))
        return calls
