"""Qwen3-Coder argument typing, with and without the tool's schema."""

from __future__ import annotations

import pytest
from parsing_support import parse_all

from kvyard.parsing import ToolCallComplete
from kvyard.parsing.coerce import coerce_arguments, coerce_typed, coerce_untyped

SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "force": {"type": "boolean"},
        "tags": {"type": "array"},
        "opts": {"type": "object"},
        "maybe": {"type": ["integer", "null"]},
    },
}


@pytest.mark.parametrize(
    "value,spec,expected",
    [
        ("42", {"type": "string"}, "42"),
        ("42", {"type": "integer"}, 42),
        ("4x", {"type": "integer"}, "4x"),
        ("3.0", {"type": "number"}, 3),
        ("2.5", {"type": "number"}, 2.5),
        ("inf", {"type": "number"}, "inf"),
        ("TRUE", {"type": "boolean"}, True),
        ("false", {"type": "boolean"}, False),
        ("maybe", {"type": "boolean"}, "maybe"),
        ('["a", 1]', {"type": "array"}, ["a", 1]),
        ("['a', (1, 2)]", {"type": "array"}, ["a", [1, 2]]),
        ("{'k': {1, 2}}", {"type": "object"}, "{'k': {1, 2}}"),  # a set has no JSON form
        ("null", {"type": "object"}, None),
        ("null", {"type": "string"}, "null"),
        ("7", {"type": ["integer", "null"]}, 7),
        ("{bad", {"type": "object"}, "{bad"),
    ],
)
def test_typed(value, spec, expected):
    assert coerce_typed(value, spec) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        ("42", 42),
        ("-1.5", -1.5),
        ("true", True),
        ("null", None),
        ('{"a": [1]}', {"a": [1]}),
        ('"quoted"', '"quoted"'),
        ("hello", "hello"),
        ("NaN", "NaN"),
        ("1e999", "1e999"),
        ("src/main.py", "src/main.py"),
    ],
)
def test_untyped(value, expected):
    assert coerce_untyped(value) == expected


def test_params_the_schema_does_not_declare_stay_strings():
    assert coerce_arguments({"count": "3", "extra": "3"}, SCHEMA) == {"count": 3, "extra": "3"}


def test_schema_drives_the_parser():
    body = (
        "<tool_call>\n<function=edit>\n<parameter=path>\n42\n</parameter>\n<parameter=count>\n3\n"
        "</parameter>\n<parameter=tags>\n[\"x\"]\n</parameter>\n</function>\n</tool_call>"
    )
    typed, _ = parse_all("qwen3_coder", body, tool_schemas={"edit": SCHEMA})
    untyped, _ = parse_all("qwen3_coder", body)
    (done_typed,) = [e for e in typed if isinstance(e, ToolCallComplete)]
    (done_untyped,) = [e for e in untyped if isinstance(e, ToolCallComplete)]
    assert done_typed.arguments == {"path": "42", "count": 3, "tags": ["x"]}
    assert done_typed.raw_arguments == '{"path": "42", "count": 3, "tags": ["x"]}'
    assert done_untyped.arguments == {"path": 42, "count": 3, "tags": ["x"]}


def test_missing_parameter_close_ends_at_next_parameter():
    body = "<tool_call><function=f><parameter=a>\none\n<parameter=b>two</parameter></function></tool_call>"
    events, parser = parse_all("qwen3_coder", body)
    (done,) = [e for e in events if isinstance(e, ToolCallComplete)]
    assert done.arguments == {"a": "one", "b": "two"} and parser.malformed == 0
