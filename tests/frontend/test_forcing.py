"""Forced tool calls: the numeric range regexes, and the arguments regex of a tool schema, whose
every match must parse as JSON valid for the schema (``jsonschema``, float semantics as Python's
``json`` reads numbers), in the plain dialect vLLM's structured-output backends accept."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvyard.conversation import Tool
from kvyard.errors import InvalidRequest
from kvyard.frontend.forcing import arguments_regex, forced_call_regex
from kvyard.frontend.ranges import EmptyRange, decimal_range_regex, integer_range_regex
from kvyard.parsing import ToolCallComplete, get_parser
from kvyard.policies.profiles import PROFILES

try:
    import llguidance  # vLLM's guidance backend, a dependency of vLLM
except ImportError:  # pragma: no cover - then only the backend check is skipped
    llguidance = None

SETTINGS = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def examples(n: int) -> settings:
    return settings(SETTINGS, max_examples=n)

PLAIN = re.compile(r"[-0-9\[\]{},|()*+?.\\]*")  # what the range regexes are written with


DRAFT4, DRAFT7 = "http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-07/schema#"


def valid(schema: dict, text: str) -> bool:
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema).validate(json.loads(text))
    except jsonschema.ValidationError:
        return False
    return True


def backend_accepts(regex: str) -> bool:
    """llguidance (vLLM's guidance backend, which ``auto`` falls back to) parses the regex."""
    if llguidance is None:
        return True
    return not llguidance.LLMatcher.validate_grammar(llguidance.grammar_from("regex", regex), None)


def assert_matches_valid(schema: dict, n: int = 25) -> str:
    """Strings drawn from the arguments regex all validate against ``schema``."""
    regex = arguments_regex(json.dumps(schema))
    assert backend_accepts(regex)

    @examples(n)
    @given(st.from_regex(re.compile(regex), fullmatch=True))
    def check(text):
        assert valid(schema, text), text

    check()
    return regex


def obj(props: dict, required: list[str] | None = None, **extra) -> dict:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required} | extra


# --- integer ranges -----------------------------------------------------------------------------

BOUNDS = [None, -101, -100, -99, -10, -9, -1, 0, 1, 2, 9, 10, 11, 99, 100, 101, 250]
WINDOW = [*range(-320, 321), 999, 1000, 1001, 10**6, -(10**6)]


@pytest.mark.parametrize("lo", BOUNDS)
def test_integer_range_exhaustive(lo):
    for hi in BOUNDS:
        if lo is not None and hi is not None and lo > hi:
            with pytest.raises(EmptyRange):
                integer_range_regex(lo, hi)
            continue
        regex = integer_range_regex(lo, hi)
        assert PLAIN.fullmatch(regex), regex
        rx = re.compile(regex)
        for n in WINDOW:
            inside = (lo is None or n >= lo) and (hi is None or n <= hi)
            assert bool(rx.fullmatch(str(n))) == inside, (lo, hi, n, regex)
        for other in ("-0", "00", "01", "-01", "+1", "1.0", "1e2", "", "-"):  # only canonical integers
            assert not rx.fullmatch(other), (lo, hi, other)


def test_integer_range_examples():
    assert integer_range_regex(1, 10) == "([1-9]|10)"
    assert integer_range_regex(0, None) == "([0-9]|[1-9][0-9]{1,})"
    assert integer_range_regex(-5, -5) == "-5"


@SETTINGS
@given(st.integers(-(2**70), 2**70), st.integers(0, 2**70), st.lists(st.integers(-(2**12), 2**12), min_size=8, max_size=8))
def test_integer_range_big_bounds(lo, width, offsets):
    hi = lo + width
    rx = re.compile(integer_range_regex(lo, hi))
    for n in [lo, hi] + [lo + k for k in offsets] + [hi + k for k in offsets]:
        assert bool(rx.fullmatch(str(n))) == (lo <= n <= hi), (lo, hi, n)


# --- decimal ranges -----------------------------------------------------------------------------

DEC_BOUNDS = [None, *map(Decimal, ["-12.75", "-1.5", "-1", "-0.25", "-0.00012", "0", "0.001", "0.00105", "0.25", "0.3", "1", "1.5", "9.99", "10", "12.125", "20.5"])]
DEC_WINDOW = sorted(
    {f"{sign}{whole}{frac}" for sign in ("", "-") for whole in range(23) for frac in ("", ".0", ".00", ".5", ".50", ".05", ".1", ".25", ".251", ".249", ".3", ".99", ".999", ".75", ".125")}
    | {f"{sign}0.{'0' * z}{tail}" for sign in ("", "-") for z in range(6) for tail in ("1", "05", "105", "0999", "12", "9")}
)


@pytest.mark.parametrize("lo", DEC_BOUNDS)
def test_decimal_range_exhaustive(lo):
    for hi in DEC_BOUNDS:
        if lo is not None and hi is not None and lo > hi:
            with pytest.raises(EmptyRange):
                decimal_range_regex(lo, hi)
            continue
        regex = decimal_range_regex(lo, hi)
        assert PLAIN.fullmatch(regex), regex
        rx = re.compile(regex)
        for text in DEC_WINDOW:
            x = Decimal(text)
            inside = (lo is None or x >= lo) and (hi is None or x <= hi)
            if text.startswith("-") and x == 0 and lo is not None and lo >= 0:
                inside = False  # negative zero only where negatives are allowed
            assert bool(rx.fullmatch(text)) == inside, (lo, hi, text, regex)
        for other in ("1.", ".5", "01", "1e2", "1E-2", "+1", ""):
            assert not rx.fullmatch(other), (lo, hi, other)


# --- numeric bounds in schemas ------------------------------------------------------------------


def matches(schema: dict, text: str) -> bool:
    return re.fullmatch(arguments_regex(json.dumps(schema)), text) is not None


@pytest.mark.parametrize(
    ("schema", "inside", "outside"),
    [
        ({"type": "integer", "minimum": 0}, ["0", "7", "123456789012345678901"], ["-1", "-0"]),
        ({"type": "integer", "minimum": 1, "maximum": 10}, ["1", "10"], ["0", "11", "-1"]),
        ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}, ["1", "2"], ["0", "3"]),
        ({"$schema": DRAFT4, "type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 5, "exclusiveMaximum": True}, ["1", "4"], ["0", "5"]),
        ({"type": "integer", "minimum": 0.5, "maximum": 2.5}, ["1", "2"], ["0", "3"]),
        ({"type": "integer", "minimum": -3, "exclusiveMinimum": -3}, ["-2", "0"], ["-3"]),  # the tighter bound wins
        ({"type": "number", "minimum": 0}, ["0", "0.0", "3.25", "1000000"], ["-1", "-0.5", "1e5", "-0.0"]),
        ({"type": "number", "minimum": 0, "maximum": 1}, ["0", "0.5", "1", "1.000"], ["1.0001", "2", "-0.1"]),
        ({"type": "number", "minimum": 0.1, "maximum": 2.5}, ["0.1", "0.10", "2.5", "1"], ["0.0999", "2.5001"]),
        ({"type": "number", "exclusiveMinimum": 0}, ["0.5", "0.000001", "7"], ["0", "0.0", "0." + "0" * 400 + "1"]),
        ({"type": "number", "exclusiveMaximum": 1}, ["0.9999999999999999", "-5"], ["1", "0.99999999999999999"]),
        ({"type": "number", "minimum": -90, "maximum": 90}, ["-90", "-0.0", "45.123456", "90.0"], ["-90.5", "90.01"]),
        ({"type": "number", "maximum": 9007199254740993}, ["9007199254740992"], ["9007199254740994"]),
    ],
)
def test_numeric_bounds(schema, inside, outside):
    for text in inside:
        assert matches(schema, text) and valid(schema, text), text
    for text in outside:
        assert not matches(schema, text), text


def test_exclusive_number_bound_counts_rounding():
    # 0.99999999999999999 > 1 - 1e-17 is below 1 as a decimal but parses to the double 1.0, which an
    # exclusive maximum of 1 rejects: the bound sits on the nearest double below instead.
    schema = {"type": "number", "exclusiveMaximum": 1}
    assert not valid(schema, "0.99999999999999999")
    assert_matches_valid(schema, n=30)


def test_empty_interval_is_an_invalid_request():
    tool = Tool(name="f", parameters=obj({"n": {"type": "integer", "minimum": 3, "maximum": 2}}))
    with pytest.raises(InvalidRequest) as err:
        forced_call_regex(PROFILES["qwen3"], [tool], "f")
    assert err.value.param == "tools"
    with pytest.raises(EmptyRange):
        arguments_regex(json.dumps({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}))


# --- what else the rewrite fixes, and what outlines-core already enforces ------------------------

FIXED_CASES = {
    "nested bounds": obj({"o": obj({"i": {"type": "integer", "maximum": 5}, "s": {"type": "string"}}, ["i"])}),
    "array of bounded numbers": obj({"a": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 1, "maxItems": 3}}),
    "ref to bounded def": {"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}, "q": {"$ref": "#/$defs/P"}}, "required": ["p", "q"], "$defs": {"P": {"type": "integer", "minimum": 5, "maximum": 7}}},
    "type list with bounds": obj({"v": {"type": ["integer", "null"], "minimum": 0}}),
    "object or null": obj({"o": {"type": ["object", "null"], "properties": {"a": {"type": "integer", "minimum": 1}}, "required": ["a"]}}),
    "nullable via anyOf": obj({"v": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}}),
    "any value": obj({"a": {}, "b": True, "c": {"description": "anything"}}),
    "required not declared": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a", "b"]},
    "required from additionalProperties": {"type": "object", "required": ["a"], "additionalProperties": {"type": "integer", "maximum": 0}},
    "keys JSON escapes": obj({'q"x\\y': {"type": "integer", "minimum": 1}, "a.b*": {"type": "string"}, "t\tab": {"type": "boolean"}}),
    "draft-7 tuple items": obj({"a": {"type": "array", "items": [{"type": "integer", "minimum": 0}, {"type": "string"}]}}, **{"$schema": DRAFT7}),
    "unsafe and unknown formats": obj({"e": {"type": "string", "format": "email"}, "u": {"type": "string", "format": "uri"}, "t": {"type": "string", "format": "time"}, "h": {"type": "string", "format": "hostname"}}),
    "safe formats": obj({"d": {"type": "string", "format": "date-time"}, "e": {"type": "string", "format": "date"}, "u": {"type": "string", "format": "uuid"}}),
    "patterns": obj({"a": {"type": "string", "pattern": "^[a-z]+$"}, "b": {"type": "string", "pattern": "a|b"}, "c": {"type": "string", "pattern": r"\.py$"}, "d": {"type": "string", "pattern": r"^\d{3}-\w+"}}),
    "strings, enums, const": obj({"s": {"type": "string", "minLength": 2, "maxLength": 4}, "e": {"enum": ["a", 'b"c', "d\\e", 1, None]}, "c": {"const": {"k": [1, 2]}}}),
    "optional and closed": obj({"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}}, ["b"], additionalProperties=False),
    "anyOf": obj({"v": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer", "minimum": 10}]}}),
}


SLOW = {"any value", "required not declared"}  # the any-value regex is long to draw from


@pytest.mark.parametrize("name", FIXED_CASES)
def test_fixed_case_matches_are_valid(name):
    assert_matches_valid(FIXED_CASES[name], n=6 if name in SLOW else 20)


def test_unsafe_patterns_are_dropped_not_broken():
    # A negated class admits '"' and a lookahead is no plain regex: outlines-core would splice
    # either into the regex (invalid JSON, or a regex the backends reject); it is dropped instead.
    for pattern in ("^[^/]+$", "^(?!x)a+$", "^.+$", r"^\S+$", "(?P<n>a)", "a{,3}"):
        regex = arguments_regex(json.dumps(obj({"s": {"type": "string", "pattern": pattern}})))
        assert backend_accepts(regex)
        assert re.fullmatch(regex, '{"s": "x\\"y"}'), pattern


def test_safe_pattern_keeps_its_anchoring():
    schema = obj({"s": {"type": "string", "pattern": r"\.py$"}})
    assert matches(schema, '{"s": "a/b\\"c.py"}')
    assert not matches(schema, '{"s": "main.pyc"}')
    assert not matches(obj({"s": {"type": "string", "pattern": "^(a|b)$"}}), '{"s": "ab"}')


def test_property_order_follows_the_schema():
    schema = obj({"path": {"type": "string"}, "content": {"type": "string"}})
    assert matches(schema, '{"path": "a", "content": "b"}')
    assert not matches(schema, '{"content": "b", "path": "a"}')


def test_arguments_are_always_an_object():
    for schema in ({"description": "anything"}, {"type": ["object", "null"], "properties": {"a": {"type": "integer"}}}):
        regex = arguments_regex(json.dumps(schema))
        assert re.fullmatch(regex, '{"a": 1}') and not re.fullmatch(regex, "null")


def test_uncompilable_schema_falls_back_to_an_object():
    regex = arguments_regex(json.dumps(obj({"v": {"allOf": [{"type": "integer"}, {"minimum": 3}]}})))
    assert re.fullmatch(regex, '{"anything": [1, "x"]}')


# --- random realistic tool schemas ---------------------------------------------------------------

names = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
small_ints = st.integers(-1000, 1000)
num_bounds = st.one_of(st.sampled_from([0, 1, -1, 0.5, 0.1, 2.5, -90, 90, 1e-3, 100, 1e6]), st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False))


@st.composite
def bounded(draw, kind: str):
    values = small_ints if kind == "integer" else num_bounds
    lo, hi = draw(st.none() | values), draw(st.none() | values)
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    schema = {"type": kind}
    exclusive = draw(st.booleans()) and (lo is None or hi is None or hi - lo >= 2)
    if lo is not None:
        schema["exclusiveMinimum" if exclusive else "minimum"] = lo
    if hi is not None:
        schema["exclusiveMaximum" if exclusive and draw(st.booleans()) else "maximum"] = hi
    return schema


# Lengths or a pattern: with both, outlines-core enforces the lengths only (documented).
strings = st.sampled_from(
    [{}, {"minLength": 1}, {"maxLength": 8}, {"minLength": 2, "maxLength": 5}, {"format": "date"}, {"format": "email"}, {"pattern": "^[a-z0-9_]+$"}, {"pattern": r"\.md$"}]
).map(lambda extra: {"type": "string", "description": "a string"} | extra)
enums = st.one_of(
    st.lists(st.text(alphabet='ab"\\ é\n', max_size=4), min_size=1, max_size=4, unique=True).map(lambda v: {"type": "string", "enum": v}),
    st.lists(small_ints, min_size=1, max_size=4, unique=True).map(lambda v: {"enum": v}),
)
leaves = st.one_of(bounded("integer"), bounded("number"), strings, enums, st.just({"type": "boolean"}), st.just({"type": "integer"}))


def arrays(items):
    return st.builds(
        lambda item, lengths: {"type": "array", "items": item} | lengths,
        items,
        st.sampled_from([{}, {"minItems": 1}, {"maxItems": 2}, {"minItems": 1, "maxItems": 3}]),
    )


def nullable(schemas):
    return schemas.map(lambda s: {"anyOf": [s, {"type": "null"}]})


@st.composite
def objects(draw, values):
    props = draw(st.dictionaries(names, values, min_size=1, max_size=4))
    required = [k for k in props if draw(st.booleans())]
    schema = {"type": "object", "properties": props, "required": required}
    if draw(st.booleans()):
        schema["additionalProperties"] = False
    return schema


values = st.one_of(leaves, arrays(leaves), nullable(leaves), objects(st.one_of(leaves, arrays(leaves))))
tool_schemas = objects(values)


@examples(60)
@given(tool_schemas, st.data())
def test_random_tool_schemas_give_valid_arguments(schema, data):
    regex = arguments_regex(json.dumps(schema))
    assert backend_accepts(regex)
    rx = re.compile(regex)
    for _ in range(3):
        text = data.draw(st.from_regex(rx, fullmatch=True))
        assert valid(schema, text), (schema, text)


# --- the call around the arguments --------------------------------------------------------------

WEATHER = Tool(
    name="get_weather",
    parameters=obj({"city": {"type": "string", "enum": ["Paris", "Rome"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}}),
)
CLOCK = Tool(name="get.time", parameters={"type": "object", "properties": {}})
FORMATS = [name for name, p in PROFILES.items() if p.tool_call_format]


def call_text(profile: str, tool: str, args: str) -> str:
    return PROFILES[profile].tool_call_format.replace("{name}", tool).replace("{arguments}", args)


@pytest.mark.parametrize("profile", FORMATS)
def test_forced_call_wraps_the_arguments_in_the_family_format(profile):
    regex = forced_call_regex(PROFILES[profile], [WEATHER, CLOCK], "get_weather")
    assert backend_accepts(regex)
    assert re.fullmatch(regex, call_text(profile, "get_weather", '{"city": "Paris", "days": 7}'))
    assert not re.fullmatch(regex, call_text(profile, "get_weather", '{"city": "Paris", "days": 8}'))
    assert not re.fullmatch(regex, call_text(profile, "get.time", "{}"))

    either = forced_call_regex(PROFILES[profile], [WEATHER, CLOCK], None)
    assert re.fullmatch(either, call_text(profile, "get.time", "{}"))
    assert re.fullmatch(either, call_text(profile, "get_weather", '{"city": "Rome", "days": 1}'))
    assert not re.fullmatch(either, call_text(profile, "getxtime", "{}"))  # the dot is literal


@pytest.mark.parametrize("profile", FORMATS)
def test_forced_call_parses_as_a_valid_call(profile):
    regex = re.compile(forced_call_regex(PROFILES[profile], [WEATHER, CLOCK], None))

    @examples(10)
    @given(st.from_regex(regex, fullmatch=True))
    def check(text):
        parser = get_parser(PROFILES[profile].parser)(tool_names={"get_weather", "get.time"}, reasoning_enabled=False)
        calls = [e for e in parser.parse(text) if isinstance(e, ToolCallComplete)]
        assert len(calls) == 1 and parser.malformed == 0, text
        tool = WEATHER if calls[0].name == WEATHER.name else CLOCK
        jsonschema.validate(calls[0].arguments, tool.parameters)

    check()


def test_forcing_errors():
    with pytest.raises(InvalidRequest):
        forced_call_regex(PROFILES["plain"], [WEATHER], None)
    with pytest.raises(InvalidRequest) as err:
        forced_call_regex(PROFILES["qwen3"], [WEATHER], "nope")
    assert err.value.param == "tool_choice"
