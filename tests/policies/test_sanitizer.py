"""Sanitizer: the Claude Code billing-header rule, custom rules and scopes, config validation."""

from __future__ import annotations

import logging

import msgspec
import pytest

from kvyard.conversation import (
    Conversation,
    Message,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
)
from kvyard.policies.sanitizer import (
    BILLING_RULE_NAME,
    SanitizerConfig,
    SanitizerRule,
    compile_rules,
    sanitize,
)

REST = "You are Claude Code, Anthropic's official CLI for Claude.\n\nTools follow."
V197 = "x-anthropic-billing-header: cc_version=2.1.197.c40; cc_entrypoint=sdk-cli;"


def _system(text: str) -> Conversation:
    return Conversation(
        system=text,
        messages=[Message(role="user", parts=[TextPart(text="hi")])],
        tools=[Tool(name="Read", description="read a file")],
    )


# -- the default rule: variants that are dropped -------------------------------------------

HEADER_VARIANTS = [
    pytest.param(V197, id="2.1.197"),
    pytest.param(
        "x-anthropic-billing-header: cc_version=2.1.197.c40; cc_entrypoint=sdk-cli",
        id="no-trailing-semicolon",
    ),
    pytest.param(
        "x-anthropic-billing-header: cc_version=2.1.14.a1f; cc_entrypoint=cli; cch=9f3a2;", id="with-cch"
    ),
    pytest.param(
        "x-anthropic-billing-header: cch=00ab1; cc_version=2.1.14.a1f; cc_entrypoint=cli;", id="cch-first"
    ),
    pytest.param(
        "x-anthropic-billing-header: cc_entrypoint=sdk-ts; cc_version=2.1.197.c40;", id="entrypoint-first"
    ),
    pytest.param(
        "x-anthropic-billing-header: cc_version=2.1.197.c40; cc_entrypoint=sdk-cli; cc_workload=subagent;",
        id="with-workload",
    ),
    pytest.param(
        "x-anthropic-billing-header: cc_workload=compact; cch=abcde; cc_entrypoint=cli; "
        "cc_version=2.1.90.123",
        id="four-fields-any-order",
    ),
    pytest.param("x-anthropic-billing-header:cc_version=2.1.197.c40;cc_entrypoint=sdk-cli;", id="no-spaces"),
    pytest.param(
        "x-anthropic-billing-header: cc_version=2.1.197.c40; cc_entrypoint=sdk-cli;  \t", id="trailing-blanks"
    ),
]


@pytest.mark.parametrize("header", HEADER_VARIANTS)
def test_header_line_then_newline_is_dropped_with_exactly_one_newline(header: str) -> None:
    conv = _system(header + "\n" + REST)
    out, fired = sanitize(conv)
    assert out.system == REST
    assert fired == {BILLING_RULE_NAME: 1}


@pytest.mark.parametrize("header", HEADER_VARIANTS)
def test_header_line_then_crlf_drops_both_bytes(header: str) -> None:
    out, fired = sanitize(_system(header + "\r\n" + REST.replace("\n", "\r\n")))
    assert out.system == REST.replace("\n", "\r\n")
    assert fired == {BILLING_RULE_NAME: 1}


@pytest.mark.parametrize("header", HEADER_VARIANTS)
def test_header_as_the_whole_system_block_leaves_empty_system(header: str) -> None:
    out, fired = sanitize(_system(header))
    assert out.system == ""
    assert fired == {BILLING_RULE_NAME: 1}


def test_only_one_line_terminator_is_removed_blank_lines_after_it_stay() -> None:
    out, _ = sanitize(_system(V197 + "\n\n" + REST))
    assert out.system == "\n" + REST
    out, _ = sanitize(_system(V197 + "\r\n\r\n" + REST))
    assert out.system == "\r\n" + REST


def test_leading_whitespace_of_the_following_text_is_kept() -> None:
    out, _ = sanitize(_system(V197 + "\n   indented first line\n"))
    assert out.system == "   indented first line\n"


def test_header_glued_to_the_next_block_after_semicolon_is_dropped() -> None:
    # A decoder that joins system blocks with "" (vLLM's Anthropic endpoint does) glues them.
    out, fired = sanitize(_system(V197 + REST))
    assert out.system == REST
    assert fired == {BILLING_RULE_NAME: 1}


def test_two_requests_differing_only_in_the_billing_line_sanitize_equal() -> None:
    a = _system("x-anthropic-billing-header: cc_version=2.1.197.c40; cc_entrypoint=cli; cch=11111;\n" + REST)
    b = _system("x-anthropic-billing-header: cc_version=2.1.197.9be; cc_entrypoint=cli; cch=fffff;\n" + REST)
    assert sanitize(a)[0] == sanitize(b)[0]


def test_header_in_a_leading_system_message_is_dropped_when_system_is_empty() -> None:
    conv = Conversation(
        messages=[
            Message(role="system", parts=[TextPart(text=V197 + "\n" + REST), TextPart(text=V197)]),
            Message(role="user", parts=[TextPart(text=V197)]),
        ]
    )
    out, fired = sanitize(conv)
    assert fired == {BILLING_RULE_NAME: 1}
    assert out.messages[0].parts == [TextPart(text=REST), TextPart(text=V197)]
    assert out.messages[1] == conv.messages[1]
    assert conv.messages[0].parts[0] == TextPart(text=V197 + "\n" + REST)  # input untouched


# -- the default rule: what stays ----------------------------------------------------------

STAYS = [
    pytest.param(REST + "\n" + V197 + "\n", id="later-in-system"),
    pytest.param(" " + V197 + "\n" + REST, id="leading-space"),
    pytest.param("\n" + V197 + "\n" + REST, id="leading-newline"),
    pytest.param(V197 + " You are Claude Code.\n", id="prose-after-semicolon-on-same-line"),
    pytest.param("x-anthropic-billing-header: cc_version=2.1.197 You are\n", id="prose-after-value"),
    pytest.param("x-anthropic-billing-header: this is not a field list\n" + REST, id="not-fields"),
    pytest.param("x-anthropic-billing-header:\n" + REST, id="no-fields"),
    pytest.param("X-Anthropic-Billing-Header: cc_version=1;\n" + REST, id="other-case"),
    pytest.param("x-anthropic-billing-headers: cc_version=1;\n" + REST, id="other-name"),
    pytest.param(REST, id="absent"),
]


@pytest.mark.parametrize("text", STAYS)
def test_text_that_is_not_a_leading_billing_line_stays_byte_exact(text: str) -> None:
    conv = _system(text)
    out, fired = sanitize(conv)
    assert out == conv
    assert out.system == text
    assert fired == {}


def test_billing_line_in_user_message_and_tool_result_stays() -> None:
    conv = Conversation(
        system=REST,
        messages=[
            Message(role="user", parts=[TextPart(text=V197 + "\nplease explain this line")]),
            Message(role="assistant", parts=[ToolCallPart(id="t1", name="Read", arguments={"p": "x"})]),
            Message(role="tool", parts=[ToolResultPart(tool_call_id="t1", content=V197 + "\n")]),
        ],
    )
    out, fired = sanitize(conv)
    assert out == conv
    assert fired == {}


def test_system_message_after_a_user_turn_is_not_the_head() -> None:
    conv = Conversation(
        messages=[
            Message(role="user", parts=[TextPart(text="hi")]),
            Message(role="system", parts=[TextPart(text=V197 + "\n" + REST)]),
        ]
    )
    out, fired = sanitize(conv)
    assert out == conv and fired == {}


def test_no_op_returns_an_equal_new_conversation_and_empty_fired() -> None:
    conv = _system(REST)
    out, fired = sanitize(conv)
    assert out == conv
    assert out is not conv
    assert fired == {}


def test_input_conversation_is_not_mutated() -> None:
    conv = _system(V197 + "\n" + REST)
    before = msgspec.msgpack.encode(conv)
    sanitize(conv)
    assert msgspec.msgpack.encode(conv) == before


def test_default_rules_can_be_disabled() -> None:
    conv = _system(V197 + "\n" + REST)
    out, fired = sanitize(conv, SanitizerConfig(default_rules=False))
    assert out == conv and fired == {}


def test_prompt_text_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "TOP-SECRET-PROMPT-TEXT"
    config = SanitizerConfig(rules=[SanitizerRule(name="r", regex="SECRET", replacement="x", scope="all")])
    with caplog.at_level(logging.DEBUG):
        sanitize(_system(V197 + "\n" + secret), config)
    assert secret not in caplog.text


# -- custom rules and scopes ----------------------------------------------------------------


def _everywhere(token: str) -> Conversation:
    return Conversation(
        system=f"sys {token}",
        messages=[
            Message(role="developer", parts=[TextPart(text=f"dev {token}")]),
            Message(role="user", parts=[TextPart(text=f"user {token}"), TextPart(text=f"user2 {token}")]),
            Message(
                role="assistant",
                parts=[
                    ReasoningPart(text=f"think {token}"),
                    TextPart(text=f"asst {token}"),
                    ToolCallPart(id="c1", name="Read", arguments={"path": token}),
                ],
            ),
            Message(role="tool", parts=[ToolResultPart(tool_call_id="c1", content=f"result {token}")]),
        ],
        tools=[Tool(name="Read", description=f"tool {token}")],
    )


def _texts(conv: Conversation) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"system": [conv.system], "tools": [t.description for t in conv.tools]}
    for message in conv.messages:
        for part in message.parts:
            if isinstance(part, TextPart | ReasoningPart):
                out.setdefault(f"{message.role}:{type(part).__name__}", []).append(part.text)
            elif isinstance(part, ToolResultPart):
                out.setdefault("tool_result", []).append(part.content)
            elif isinstance(part, ToolCallPart):
                out.setdefault("tool_call", []).append(part.arguments["path"])
    return out


@pytest.mark.parametrize(
    ("scope", "changed", "count"),
    [
        ("system", {"system", "developer:TextPart"}, 2),
        ("system_head", {"system"}, 1),
        ("user", {"user:TextPart"}, 2),
        ("assistant", {"assistant:TextPart"}, 1),
        ("tool_result", {"tool_result"}, 1),
        ("all", {"system", "developer:TextPart", "user:TextPart", "assistant:TextPart", "tool_result"}, 6),
    ],
)
def test_scope_selects_exactly_its_texts(scope: str, changed: set[str], count: int) -> None:
    conv = _everywhere("TOKEN")
    rules = compile_rules(
        SanitizerConfig(rules=[SanitizerRule(name="tok", regex="TOKEN", replacement="T", scope=scope)])
    )
    out, fired = sanitize(conv, rules)
    assert fired == {"tok": count}
    before, after = _texts(conv), _texts(out)
    for key in before:
        if key in changed:
            assert all(t.endswith(" T") for t in after[key]), key
        else:
            assert after[key] == before[key], key  # reasoning, tool calls, tools never rewritten


def test_rules_run_in_order_after_the_default_rule_and_count_each_firing() -> None:
    config = SanitizerConfig(
        rules=[
            SanitizerRule(
                name="date", regex=r"Today's date is \d{4}-\d{2}-\d{2}\.", replacement="", scope="system"
            ),
            SanitizerRule(name="cwd", regex=r"(?m)^cwd: (\S+)$", replacement=r"cwd: <\1>", scope="system"),
            SanitizerRule(name="second", regex=r"<(/work)>", replacement=r"[\1]", scope="system"),
        ]
    )
    conv = _system(V197 + "\nHello. Today's date is 2026-12-01.\ncwd: /work\ncwd: /work")
    out, fired = sanitize(conv, config)
    assert out.system == "Hello. \ncwd: [/work]\ncwd: [/work]"
    assert fired == {BILLING_RULE_NAME: 1, "date": 1, "cwd": 2, "second": 2}


def test_a_custom_rule_can_target_the_head_only() -> None:
    config = SanitizerConfig(
        rules=[SanitizerRule(name="head", regex=r"\A<volatile \d+>", scope="system_head")]
    )
    out, fired = sanitize(_system("<volatile 123>stable <volatile 9>"), config)
    assert out.system == "stable <volatile 9>"
    assert fired == {"head": 1}


# -- config validation -----------------------------------------------------------------------


def test_invalid_regex_is_a_clear_value_error_at_load() -> None:
    with pytest.raises(ValueError, match=r"invalid regex '\(unclosed'"):
        SanitizerConfig.model_validate({"rules": [{"name": "bad", "regex": "(unclosed"}]})


def test_invalid_group_reference_in_replacement_fails_at_load() -> None:
    with pytest.raises(ValueError, match="invalid replacement"):
        SanitizerRule(name="bad", regex="abc", replacement=r"\2")


def test_regex_matching_the_empty_string_is_rejected() -> None:
    with pytest.raises(ValueError, match="matches the empty string"):
        SanitizerRule(name="bad", regex="x*")


def test_unknown_fields_scope_and_duplicate_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="extra"):
        SanitizerRule.model_validate({"name": "r", "regex": "a", "flags": "i"})
    with pytest.raises(ValueError, match="scope"):
        SanitizerRule(name="r", regex="a", scope="tools")
    with pytest.raises(ValueError, match="duplicate"):
        SanitizerConfig(rules=[SanitizerRule(name="r", regex="a"), SanitizerRule(name="r", regex="b")])
    with pytest.raises(ValueError, match="duplicate"):
        SanitizerConfig(rules=[SanitizerRule(name=BILLING_RULE_NAME, regex="a")])
    # without the defaults, the built-in name is free to reuse
    SanitizerConfig(default_rules=False, rules=[SanitizerRule(name=BILLING_RULE_NAME, regex="a")])


def test_every_config_field_is_described() -> None:
    for model in (SanitizerRule, SanitizerConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
