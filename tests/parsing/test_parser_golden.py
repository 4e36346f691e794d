"""Golden tests: realistic outputs in each family's real format, streamed and not.

Every case runs three ways (one chunk, one character per chunk, and ~token-sized chunks) and must
give exactly the listed events, with no malformed output.
"""

from __future__ import annotations

import pytest
from parsing_support import run

from kvyard.parsing import (
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallComplete,
    ToolCallStart,
)


def call(index, name, args, raw, call_id=None):
    call_id = call_id or f"call_{index}"
    return [
        ToolCallStart(index, call_id, name),
        ToolCallArgsDelta(index, raw),
        ToolCallComplete(index, call_id, name, args, raw),
    ]


R, RE, T = ReasoningDelta, ReasoningEnd(), TextDelta

DS_CALL = "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{}\n```<｜tool▁call▁end｜>"

CASES = [
    (
        "qwen3 thinking template (reasoning opened in the prompt), text, two calls",
        "qwen3",
        {"reasoning_started": True},
        "Okay, the user wants the weather in Tokyo.\n</think>\n\nI'll check.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "celsius"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"tz":"Asia/Tokyo"}}\n</tool_call>',
        [
            R("Okay, the user wants the weather in Tokyo.\n"),
            RE,
            T("\n\nI'll check.\n"),
            *call(0, "get_weather", {"city": "Tokyo", "unit": "celsius"}, '{"city": "Tokyo", "unit": "celsius"}'),
            T("\n"),
            *call(1, "get_time", {"tz": "Asia/Tokyo"}, '{"tz":"Asia/Tokyo"}'),
        ],
    ),
    (
        "qwen3 interleaved: think, call, think again, answer (a > b stays text)",
        "qwen3",
        {},
        "<think>\nNeed the file.\n</think>\n\n<tool_call>\n"
        '{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>'
        "<think>\nIt defines f; a > b.\n</think>\n\nThe file defines `f` (a > b).",
        [
            R("\nNeed the file.\n"),
            RE,
            T("\n\n"),
            *call(0, "read_file", {"path": "a.py"}, '{"path": "a.py"}'),
            R("\nIt defines f; a > b.\n"),
            RE,
            T("\n\nThe file defines `f` (a > b)."),
        ],
    ),
    (
        "qwen3 <tool_call> mentioned inside reasoning stays reasoning",
        "qwen3",
        {"reasoning_started": True},
        "I should emit <tool_call> tags.</think>Done.",
        [R("I should emit <tool_call> tags."), RE, T("Done.")],
    ),
    (
        "qwen3 model repeats <think> after the template opened it",
        "qwen3",
        {"reasoning_started": True},
        "<think>\nhmm\n</think>\n\nHi",
        [R("\nhmm\n"), RE, T("\n\nHi")],
    ),
    (
        "qwen3_coder: Qwen3.5 opens the call inside reasoning, no </think>",
        "qwen3_coder",
        {"reasoning_started": True},
        "The user wants a listing. Let me run ls.\n<tool_call>\n<function=run_shell>\n"
        "<parameter=command>\nls -la /tmp\n</parameter>\n<parameter=timeout>\n30\n</parameter>\n"
        "</function>\n</tool_call>",
        [
            R("The user wants a listing. Let me run ls.\n"),
            RE,
            *call(
                0, "run_shell", {"command": "ls -la /tmp", "timeout": 30}, '{"command": "ls -la /tmp", "timeout": 30}'
            ),
        ],
    ),
    (
        "qwen3_coder: multi-line value containing </function>, then text",
        "qwen3_coder",
        {},
        "<think>\nwrite it\n</think>\n\n<tool_call>\n<function=write_file>\n<parameter=path>\na.py\n"
        "</parameter>\n<parameter=content>\ndef f():\n    return \"</function>\"\n</parameter>\n"
        "</function>\n</tool_call>\nWritten.",
        [
            R("\nwrite it\n"),
            RE,
            T("\n\n"),
            *call(
                0,
                "write_file",
                {"path": "a.py", "content": 'def f():\n    return "</function>"'},
                '{"path": "a.py", "content": "def f():\\n    return \\"</function>\\""}',
            ),
            T("\nWritten."),
        ],
    ),
    (
        "qwen3_coder: a bare <tool_call> mentioned in reasoning stays reasoning",
        "qwen3_coder",
        {"reasoning_started": True},
        "Wrap it in <tool_call> tags.\n</think>\n\nOK",
        [R("Wrap it in <tool_call> tags.\n"), RE, T("\n\nOK")],
    ),
    (
        "deepseek_r1: R1-0528 template opens <think>; two calls in one section",
        "deepseek_r1",
        {"reasoning_started": True},
        "The user asks about two cities.\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function"
        '<｜tool▁sep｜>get_weather\n```json\n{"city": "Beijing"}\n```<｜tool▁call▁end｜>\n'
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
        '{"city": "Shanghai"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        [
            R("The user asks about two cities.\n"),
            RE,
            T("\n\n"),
            *call(0, "get_weather", {"city": "Beijing"}, '{"city": "Beijing"}'),
            *call(1, "get_weather", {"city": "Shanghai"}, '{"city": "Shanghai"}'),
        ],
    ),
    (
        "deepseek_v3: V3.1 form (name before the separator, no fence), text before",
        "deepseek_v3",
        {},
        'Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}'
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        [T("Let me check."), *call(0, "get_weather", {"city": "Paris"}, '{"city": "Paris"}')],
    ),
    (
        "nemotron: two calls in one block",
        "nemotron",
        {},
        "<think>\nNeed two calls.\n</think>\n\n<TOOLCALL>[{\"name\": \"get_weather\", \"arguments\": "
        '{"city": "Paris"}}, {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}]</TOOLCALL>',
        [
            R("\nNeed two calls.\n"),
            RE,
            T("\n\n"),
            *call(0, "get_weather", {"city": "Paris"}, '{"city": "Paris"}'),
            *call(1, "get_time", {"tz": "Europe/Paris"}, '{"tz": "Europe/Paris"}'),
        ],
    ),
    (
        "harmony: analysis then a function call",
        "harmony",
        {},
        "<|channel|>analysis<|message|>User asks weather. Use tool.<|end|><|start|>assistant<|channel|>"
        'commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"San Francisco"}<|call|>',
        [
            R("User asks weather. Use tool."),
            RE,
            *call(0, "get_weather", {"location": "San Francisco"}, '{"location":"San Francisco"}'),
        ],
    ),
    (
        "harmony: analysis, preamble, final answer",
        "harmony",
        {},
        "<|channel|>analysis<|message|>Got the data.<|end|><|start|>assistant<|channel|>commentary"
        "<|message|>Checking. <|end|><|start|>assistant<|channel|>final<|message|>It is 20°C.<|return|>",
        [R("Got the data."), RE, T("Checking. It is 20°C.")],
    ),
    (
        "harmony: recipient in the role header, first in the output; <|call|> stripped as stop token",
        "harmony",
        {},
        ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Oslo"}',
        [*call(0, "get_weather", {"city": "Oslo"}, '{"city": "Oslo"}')],
    ),
    (
        "harmony: <|channel|> right after <|end|> without <|start|>",
        "harmony",
        {},
        "<|channel|>analysis<|message|>x<|end|><|channel|>final<|message|>y",
        [R("x"), RE, T("y")],
    ),
    (
        "kimi_k2: think, text, two calls with Kimi's own ids",
        "kimi_k2",
        {},
        "<think>The user wants weather.</think>I'll look it up.<|tool_calls_section_begin|>"
        '<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Beijing"}'
        '<|tool_call_end|><|tool_call_begin|>functions.get_weather:1<|tool_call_argument_begin|>'
        '{"city": "Shanghai"}<|tool_call_end|><|tool_calls_section_end|>',
        [
            R("The user wants weather."),
            RE,
            T("I'll look it up."),
            *call(0, "get_weather", {"city": "Beijing"}, '{"city": "Beijing"}', "functions.get_weather:0"),
            *call(1, "get_weather", {"city": "Shanghai"}, '{"city": "Shanghai"}', "functions.get_weather:1"),
        ],
    ),
    (
        "kimi_k2: K2-Thinking opens the tool section inside reasoning",
        "kimi_k2",
        {"reasoning_started": True},
        "Need weather.<|tool_calls_section_begin|><|tool_call_begin|> functions.get_weather:3 "
        '<|tool_call_argument_begin|> {"city":"Tokyo"} <|tool_call_end|><|tool_calls_section_end|>Done.',
        [
            R("Need weather."),
            RE,
            *call(0, "get_weather", {"city": "Tokyo"}, '{"city":"Tokyo"}', "functions.get_weather:3"),
            T("Done."),
        ],
    ),
    (
        "plain: SmolLM2, everything is text",
        "plain",
        {},
        "The capital of France is Paris. <think> is just text here.",
        [T("The capital of France is Paris. <think> is just text here.")],
    ),
    (
        "reasoning disabled: <think> is verbatim text, tools still parse",
        "qwen3",
        {"reasoning_enabled": False, "reasoning_started": True},
        '<think>x</think>Hi<tool_call>{"name": "f", "arguments": {}}</tool_call>',
        [T("<think>x</think>Hi"), *call(0, "f", {}, "{}")],
    ),
]


def _token_sized(text: str) -> list[str]:
    return [text[i : i + 3] for i in range(0, len(text), 3)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("chunking", ["whole", "per_char", "token_sized"])
def test_golden(case, chunking):
    _, family, kwargs, text, expected = case
    chunks = {"whole": [text], "per_char": list(text), "token_sized": _token_sized(text)}[chunking]
    events, parser = run(family, chunks, **kwargs)
    assert events == expected
    assert parser.malformed == 0
    assert parser.tool_calls == sum(isinstance(e, ToolCallComplete) for e in expected)


def test_framing_whitespace_dropped_between_structure():
    text = (
        "<think>\nplan\n</think>\n\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>\n"
    )
    events, _ = run("qwen3", list(text), drop_framing_whitespace=True)
    assert events == [R("\nplan\n"), RE, *call(0, "a", {}, "{}"), *call(1, "b", {}, "{}")]
    # Leading whitespace of a real text run is kept with it.
    events, _ = run("qwen3", list("<think>x</think>\n\nAnswer\n"), drop_framing_whitespace=True)
    assert events == [R("x"), RE, T("\n\nAnswer\n")]
