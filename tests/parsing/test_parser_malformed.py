"""Bad model output: never an exception, never a lost character.

The rule (``kvyard.parsing.base``): the offending raw text, delimiters included, is emitted as
``TextDelta`` in its place in the stream, and ``malformed`` counts it. Valid structure around it is
unaffected, and tool-call indexes count valid calls only.
"""

from __future__ import annotations

import pytest
from parsing_support import run

from kvyard.parsing import ReasoningDelta, ReasoningEnd, TextDelta, ToolCallComplete, ToolCallStart

DS_BEGIN, DS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
DS_CALL, DS_CALL_END, DS_SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
K_BEGIN, K_END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
K_CALL, K_CALL_END, K_ARG = "<|tool_call_begin|>", "<|tool_call_end|>", "<|tool_call_argument_begin|>"

VALID_QWEN = '<tool_call>{"name": "ok", "arguments": {}}</tool_call>'

# (id, family, kwargs, output, text that must be surfaced, malformed count, valid calls)
CASES = [
    ("qwen3 invalid JSON", "qwen3", {}, '<tool_call>\n{"name": "f", "arguments": {bad}}\n</tool_call>',
     '<tool_call>\n{"name": "f", "arguments": {bad}}\n</tool_call>', 1, 0),
    ("qwen3 unknown tool", "qwen3", {"tool_names": {"g"}}, '<tool_call>{"name": "f", "arguments": {}}</tool_call>',
     '<tool_call>{"name": "f", "arguments": {}}</tool_call>', 1, 0),
    ("qwen3 no tools offered", "qwen3", {"tool_names": set()}, VALID_QWEN, VALID_QWEN, 1, 0),
    ("qwen3 call left open at the end", "qwen3", {}, 'Sure. <tool_call>\n{"name": "f"',
     'Sure. <tool_call>\n{"name": "f"', 1, 0),
    ("qwen3 closing tag without opening", "qwen3", {}, "a</tool_call>b", "a</tool_call>b", 1, 0),
    ("qwen3 </think> without <think>", "qwen3", {}, "a</think>b", "a</think>b", 1, 0),
    ("qwen3 arguments not an object", "qwen3", {}, '<tool_call>{"name": "f", "arguments": [1]}</tool_call>',
     '<tool_call>{"name": "f", "arguments": [1]}</tool_call>', 1, 0),
    ("qwen3 trailing junk after the object", "qwen3", {}, '<tool_call>{"name": "f", "arguments": {}} x</tool_call>',
     '<tool_call>{"name": "f", "arguments": {}} x</tool_call>', 1, 0),
    ("qwen3 bad call, then a valid one gets index 0", "qwen3", {},
     "<tool_call>{}</tool_call>" + VALID_QWEN, "<tool_call>{}</tool_call>", 1, 1),
    ("qwen3_coder text outside parameters", "qwen3_coder", {},
     "<tool_call>\n<function=f>\nstray\n</function>\n</tool_call>",
     "<tool_call>\n<function=f>\nstray\n</function>\n</tool_call>", 1, 0),
    ("qwen3_coder no <function=>", "qwen3_coder", {}, "<tool_call>\n{}\n</tool_call>",
     "<tool_call>\n{}\n</tool_call>", 1, 0),
    ("qwen3_coder function never closed", "qwen3_coder", {},
     "<tool_call><function=f><parameter=a>1</parameter></tool_call>",
     "<tool_call><function=f><parameter=a>1</parameter></tool_call>", 1, 0),
    ("qwen3_coder unknown tool", "qwen3_coder", {"tool_names": {"g"}},
     "<tool_call><function=f></function></tool_call>", "<tool_call><function=f></function></tool_call>", 1, 0),
    ("deepseek invalid JSON", "deepseek_r1", {},
     f"{DS_BEGIN}{DS_CALL}function{DS_SEP}f\n```json\n{{nope}}\n```{DS_CALL_END}{DS_END}",
     f"{DS_CALL}function{DS_SEP}f\n```json\n{{nope}}\n```{DS_CALL_END}", 1, 0),
    ("deepseek missing separator", "deepseek_v3", {}, f"{DS_BEGIN}{DS_CALL}f{{}}{DS_CALL_END}{DS_END}",
     f"{DS_CALL}f{{}}{DS_CALL_END}", 1, 0),
    ("deepseek call outside a section", "deepseek_v3", {}, f"x{DS_CALL}y", f"x{DS_CALL}y", 1, 0),
    ("deepseek stray section end", "deepseek_v3", {}, f"x{DS_END}", f"x{DS_END}", 1, 0),
    ("deepseek call left open", "deepseek_v3", {}, f"{DS_BEGIN}{DS_CALL}f{DS_SEP}{{", f"{DS_CALL}f{DS_SEP}{{", 1, 0),
    ("deepseek junk between calls", "deepseek_v3", {},
     f"{DS_BEGIN}{DS_CALL}f{DS_SEP}{{}}{DS_CALL_END} oops {DS_CALL}g{DS_SEP}{{}}{DS_CALL_END}{DS_END}",
     " oops ", 1, 2),
    ("nemotron empty list", "nemotron", {}, "<TOOLCALL>[]</TOOLCALL>", "<TOOLCALL>[]</TOOLCALL>", 1, 0),
    ("nemotron one bad element spoils the block", "nemotron", {},
     '<TOOLCALL>[{"name": "f", "arguments": {}}, {"arguments": {}}]</TOOLCALL>',
     '<TOOLCALL>[{"name": "f", "arguments": {}}, {"arguments": {}}]</TOOLCALL>', 1, 0),
    ("nemotron stray close", "nemotron", {}, "done</TOOLCALL>", "done</TOOLCALL>", 1, 0),
    ("kimi header without argument marker", "kimi_k2", {},
     f"{K_BEGIN}{K_CALL}functions.f:0 {{}}{K_CALL_END}{K_END}", f"{K_CALL}functions.f:0 {{}}{K_CALL_END}", 1, 0),
    ("kimi unknown tool", "kimi_k2", {"tool_names": {"g"}},
     f"{K_BEGIN}{K_CALL}functions.f:0{K_ARG}{{}}{K_CALL_END}{K_END}",
     f"{K_CALL}functions.f:0{K_ARG}{{}}{K_CALL_END}", 1, 0),
    ("kimi stray call end", "kimi_k2", {}, f"hi{K_CALL_END}", f"hi{K_CALL_END}", 1, 0),
    ("kimi call left open", "kimi_k2", {}, f"{K_BEGIN}{K_CALL}functions.f:0{K_ARG}{{\"a\"",
     f"{K_CALL}functions.f:0{K_ARG}{{\"a\"", 1, 0),
    ("harmony invalid JSON", "harmony", {},
     "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{oops}<|call|>",
     "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{oops}<|call|>", 1, 0),
    ("harmony unknown tool", "harmony", {"tool_names": {"g"}},
     '<|channel|>commentary to=functions.f<|message|>{}<|call|>',
     '<|channel|>commentary to=functions.f<|message|>{}<|call|>', 1, 0),
    ("harmony header cut by <|end|>", "harmony", {}, "<|channel|>analysis<|end|>", "<|channel|>analysis<|end|>", 1, 0),
    ("harmony header left open", "harmony", {}, "<|channel|>fin", "<|channel|>fin", 1, 0),
    ("harmony no header at all", "harmony", {}, "Hello there", "Hello there", 1, 0),
    ("harmony stray <|message|> between messages", "harmony", {},
     "<|channel|>final<|message|>a<|end|><|message|>", "a<|message|>", 1, 0),
    ("harmony junk between messages", "harmony", {},
     "<|channel|>final<|message|>a<|end|> junk <|start|>assistant<|channel|>final<|message|>b",
     "a junk b", 1, 0),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("per_char", [False, True])
def test_bad_output_is_surfaced_as_text_and_counted(case, per_char):
    _, family, kwargs, output, surfaced, malformed, valid = case
    events, parser = run(family, list(output) if per_char else [output], **kwargs)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert surfaced in text
    assert parser.malformed == malformed
    assert sum(isinstance(e, ToolCallComplete) for e in events) == valid
    assert [e.index for e in events if isinstance(e, ToolCallStart)] == list(range(valid))


def test_open_reasoning_at_the_end_is_closed_not_malformed():
    events, parser = run("qwen3", list("<think>cut by max_tokens"))
    assert events == [ReasoningDelta("cut by max_tokens"), ReasoningEnd()]
    assert parser.malformed == 0


def test_malformed_block_keeps_its_place_in_the_order():
    output = "<think>a</think>x<tool_call>{bad}</tool_call>y" + VALID_QWEN + "<think>b</think>z"
    events, parser = run("qwen3", list(output))
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "ReasoningDelta", "ReasoningEnd", "TextDelta", "ToolCallStart", "ToolCallArgsDelta",
        "ToolCallComplete", "ReasoningDelta", "ReasoningEnd", "TextDelta",
    ]
    assert events[2] == TextDelta("x<tool_call>{bad}</tool_call>y")
    assert parser.malformed == 1


def test_feed_after_finish_is_an_error():
    events, parser = run("qwen3", ["x"])
    with pytest.raises(ValueError, match="after finish"):
        parser.feed("y")
    assert parser.finish() == []
