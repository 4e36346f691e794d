"""Shared helpers for the parser tests: feeding, chunking, and rendering scripts per family.

A *script* is a list of segments, ``("think", text)``, ``("text", text)``, ``("tool", name, args)``,
rendered into one family's real output format together with the events a correct parser must
produce. Content is drawn without ``>``: every delimiter of every family contains ``>``, so content
can never form a delimiter by accident, while delimiter prefixes (``<tool_call``) still appear.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from kvyard.parsing import (
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallComplete,
    ToolCallStart,
    get_parser,
    merge_deltas,
)

FAMILIES = ["qwen3", "qwen3_coder", "deepseek_r1", "deepseek_v3", "nemotron", "harmony", "kimi_k2", "plain"]
TOOLS = ["get_weather", "read_file", "run_shell"]

# The delimiter that completes a tool call, per family (streaming dispatch happens there).
CALL_CLOSE = {
    "qwen3": ("</tool_call>",),
    "qwen3_coder": ("</tool_call>",),
    "deepseek_r1": ("<｜tool▁call▁end｜>",),
    "deepseek_v3": ("<｜tool▁call▁end｜>",),
    "nemotron": ("</TOOLCALL>",),
    "harmony": ("<|call|>",),
    "kimi_k2": ("<|tool_call_end|>",),
    "plain": (),
}

FRAGMENTS = [
    "<think", "</think", "<tool_call", "</tool_call", "<TOOLCALL", "</TOOLCALL", "<function=",
    "<parameter", "<｜tool▁calls▁begin｜", "<｜tool▁call▁end｜", "<|tool_calls_section_begin|",
    "<|tool_call_end|", "<|start|", "<|channel|", "<|end|", "<|call|", "<|message|", "<", "</",
    "<|", "\n", "  ", "{", "}", '"', "\\", "é", "東京",
]
content = st.lists(
    st.one_of(st.text(alphabet="ab <|/\n{}\":,._-", max_size=6), st.sampled_from(FRAGMENTS)),
    max_size=5,
).map("".join)
json_value = st.one_of(
    content, st.integers(-5, 10**6), st.booleans(), st.none(), st.lists(st.integers(0, 9), max_size=3)
)
json_args = st.dictionaries(st.text(alphabet="abcxyz_", min_size=1, max_size=5), json_value, max_size=3)
# Qwen3-Coder values are strings; a leading "v" keeps untyped coercion from turning them into JSON.
xml_args = st.dictionaries(
    st.text(alphabet="abcxyz_", min_size=1, max_size=5),
    content.map(lambda s: "v" + s).filter(lambda s: "<parameter=" not in s and "<function=" not in s),
    max_size=3,
)


def segments_for(family: str):
    text = st.tuples(st.just("text"), content)
    if family == "plain":
        return st.lists(text, max_size=5)
    think = st.tuples(st.just("think"), content)
    args = xml_args if family == "qwen3_coder" else json_args
    tool = st.tuples(st.just("tool"), st.sampled_from(TOOLS), args)
    return st.lists(st.one_of(think, text, tool), max_size=6)


def feed_chunks(parser, chunks: list[str]) -> list[list[Any]]:
    """Per-feed outputs; the last list is ``finish()``'s."""
    outs = [parser.feed(c) for c in chunks]
    outs.append(parser.finish())
    return outs


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c for c in cuts if 0 < c < len(text)})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def make(family: str, **kwargs):
    kwargs.setdefault("id_factory", lambda i: f"call_{i}")
    return get_parser(family)(**kwargs)


def run(family: str, chunks: list[str], **kwargs) -> tuple[list[Any], Any]:
    parser = make(family, **kwargs)
    events = [e for out in feed_chunks(parser, chunks) for e in out]
    return merge_deltas(events), parser


def parse_all(family: str, text: str, **kwargs) -> tuple[list[Any], Any]:
    return run(family, [text], **kwargs)


def _tool_events(index: int, call_id: str, name: str, args: dict, raw: str) -> list[Any]:
    return [
        ToolCallStart(index, call_id, name),
        ToolCallArgsDelta(index, raw),
        ToolCallComplete(index, call_id, name, args, raw),
    ]


def render(family: str, segments: list[tuple], reasoning_started: bool = False) -> tuple[str, list[Any]]:
    """The output text of ``segments`` in ``family``'s format and the merged events expected."""
    if family == "harmony":
        return _render_harmony(segments)
    out: list[str] = []
    events: list[Any] = []
    index = 0
    in_section = False
    for pos, seg in enumerate(segments):
        kind = seg[0]
        if kind != "tool" and in_section:
            out.append(_SECTION[family][1])
            in_section = False
        if kind == "think":
            opener = "" if (pos == 0 and reasoning_started) else "<think>"
            out.append(f"{opener}{seg[1]}</think>")
            if seg[1]:
                events.append(ReasoningDelta(seg[1]))
            events.append(ReasoningEnd())
        elif kind == "text":
            out.append(seg[1])
            if seg[1]:
                events.append(TextDelta(seg[1]))
        else:
            _, name, args = seg
            if family in _SECTION and not in_section:
                out.append(_SECTION[family][0])
                in_section = True
            elif family in _SECTION:
                out.append("\n")  # framing between calls
            text, raw, call_id = _render_call(family, name, args, index)
            out.append(text)
            events += _tool_events(index, call_id, name, args, raw)
            index += 1
    if in_section:
        out.append(_SECTION[family][1])
    return "".join(out), merge_deltas(events)


_SECTION = {
    "deepseek_r1": ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
    "deepseek_v3": ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
    "kimi_k2": ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"),
}


def _render_call(family: str, name: str, args: dict, index: int) -> tuple[str, str, str]:
    raw = json.dumps(args, ensure_ascii=False)
    call_id = f"call_{index}"
    if family == "qwen3":
        body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
        return f"<tool_call>\n{body}\n</tool_call>", raw, call_id
    if family == "nemotron":
        body = json.dumps([{"name": name, "arguments": args}], ensure_ascii=False)
        return f"<TOOLCALL>{body}</TOOLCALL>", raw, call_id
    if family == "qwen3_coder":
        params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
        return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>", raw, call_id
    if family in ("deepseek_r1", "deepseek_v3"):
        return (
            f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{raw}\n```<｜tool▁call▁end｜>",
            raw,
            call_id,
        )
    if family == "kimi_k2":
        call_id = f"functions.{name}:{index}"
        return f"<|tool_call_begin|>{call_id}<|tool_call_argument_begin|>{raw}<|tool_call_end|>", raw, call_id
    raise ValueError(family)


def _render_harmony(segments: list[tuple]) -> tuple[str, list[Any]]:
    out: list[str] = []
    events: list[Any] = []
    index = 0
    for pos, seg in enumerate(segments):
        start = "" if pos == 0 else "<|start|>assistant"
        if seg[0] == "think":
            out.append(f"{start}<|channel|>analysis<|message|>{seg[1]}<|end|>")
            if seg[1]:
                events.append(ReasoningDelta(seg[1]))
            events.append(ReasoningEnd())
        elif seg[0] == "text":
            out.append(f"{start}<|channel|>final<|message|>{seg[1]}<|end|>")
            if seg[1]:
                events.append(TextDelta(seg[1]))
        else:
            _, name, args = seg
            raw = json.dumps(args, ensure_ascii=False)
            out.append(f"{start}<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{raw}<|call|>")
            events += _tool_events(index, f"call_{index}", name, args, raw)
            index += 1
    return "".join(out), merge_deltas(events)


def is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(ch in it for ch in small)


def streamed_text(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, (TextDelta, ReasoningDelta)))
