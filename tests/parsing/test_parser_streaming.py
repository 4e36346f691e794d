"""Streaming behaviour: what each feed returns, and when.

Only a suffix that could still become a delimiter is held back; a tool call is complete in the
feed that receives the end of its closing delimiter; reasoning options change the start state.
"""

from __future__ import annotations

from parsing_support import make

from kvyard.parsing import (
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallComplete,
    ToolCallStart,
)


def test_text_is_released_at_once_except_a_possible_delimiter_prefix():
    p = make("qwen3")
    assert p.feed("Hello wor") == [TextDelta("Hello wor")]
    assert p.feed("ld <tool_") == [TextDelta("ld ")]
    assert p.feed("chest") == [TextDelta("<tool_chest")]  # not a delimiter after all
    assert p.feed("<") == []
    assert p.feed("/") == []
    assert p.feed("b>") == [TextDelta("</b>")]
    assert p.feed("x<thi") == [TextDelta("x")]
    assert p.finish() == [TextDelta("<thi")]


def test_reasoning_streams_per_feed():
    p = make("qwen3", reasoning_started=True)
    assert p.feed("Let me") == [ReasoningDelta("Let me")]
    assert p.feed(" think</th") == [ReasoningDelta(" think")]
    assert p.feed("ink>") == [ReasoningEnd()]
    assert p.feed("\n\nOK") == [TextDelta("\n\nOK")]


def test_tool_call_is_dispatched_by_the_feed_that_closes_it():
    p = make("qwen3")
    assert p.feed('<tool_call>\n{"name": "run_shell", "arguments": {"cmd": "ls"}}\n</tool_') == []
    out = p.feed("call>")
    assert out == [
        ToolCallStart(0, "call_0", "run_shell"),
        ToolCallArgsDelta(0, '{"cmd": "ls"}'),
        ToolCallComplete(0, "call_0", "run_shell", {"cmd": "ls"}, '{"cmd": "ls"}'),
    ]
    assert p.feed("\nMore") == [TextDelta("\nMore")]


def test_each_call_of_a_section_is_dispatched_at_its_own_end():
    p = make("deepseek_v3")
    first = '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{"a": 1}<｜tool▁call▁end｜>'
    out = p.feed(first)
    assert [type(e) for e in out] == [ToolCallStart, ToolCallArgsDelta, ToolCallComplete]
    out = p.feed('\n<｜tool▁call▁begin｜>g<｜tool▁sep｜>{}<｜tool▁call▁end｜>')
    assert out[-1] == ToolCallComplete(1, "call_1", "g", {}, "{}")
    assert p.feed("<｜tool▁calls▁end｜>") == []
    assert p.finish() == []


def test_harmony_call_dispatched_at_call_token():
    p = make("harmony")
    assert p.feed("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"x\": 1}") == []
    out = p.feed("<|call|>")
    assert out[-1] == ToolCallComplete(0, "call_0", "f", {"x": 1}, '{"x": 1}')


def test_reasoning_started_begins_inside_reasoning():
    p = make("deepseek_r1", reasoning_started=True)
    assert p.feed("thinking") == [ReasoningDelta("thinking")]
    assert p.finish() == [ReasoningEnd()]


def test_reasoning_disabled_keeps_think_tags_as_text():
    p = make("qwen3", reasoning_enabled=False, reasoning_started=True)
    assert p.feed("<think>a</think>b") == [TextDelta("<think>a</think>b")]
    assert p.malformed == 0


def test_empty_reasoning_region_still_closes():
    p = make("qwen3")
    assert p.feed("<think></think>hi") == [ReasoningEnd(), TextDelta("hi")]


def test_think_inside_reasoning_after_content_is_text_of_the_reasoning():
    p = make("qwen3", reasoning_started=True)
    assert p.feed("a<think>b</think>") == [ReasoningDelta("a<think>b"), ReasoningEnd()]


def test_plain_never_holds_anything():
    p = make("plain")
    assert p.feed("<") == [TextDelta("<")]
    assert p.feed("think>") == [TextDelta("think>")]
    assert p.finish() == []


def test_default_ids_are_unique_openai_style():
    from kvyard.parsing import get_parser

    p = get_parser("qwen3")()
    events = p.parse('<tool_call>{"name": "a", "arguments": {}}</tool_call>' * 2)
    ids = [e.id for e in events if isinstance(e, ToolCallStart)]
    assert len(set(ids)) == 2 and all(i.startswith("call_") and len(i) == 29 for i in ids)


def test_framing_whitespace_waits_only_for_its_fate():
    p = make("qwen3", drop_framing_whitespace=True)
    assert p.feed("</think>") == [TextDelta("</think>")]  # stray: text (malformed), not framing
    p = make("qwen3", drop_framing_whitespace=True, reasoning_started=True)
    assert p.feed("x</think>\n\n") == [ReasoningDelta("x"), ReasoningEnd()]
    assert p.feed("Hi") == [TextDelta("\n\nHi")]
    assert p.feed("\n") == [TextDelta("\n")]  # inside a text run: streamed at once
