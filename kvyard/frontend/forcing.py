"""Forced tool calls (Anthropic ``any``/``tool``, OpenAI ``required``/named function), enforced in
the engine: a regex of the model family's own tool-call format around a regex compiled from the
tool's JSON schema, so the arguments are JSON valid for that schema whatever the model, and the
one stream parser reads the call like any other.

outlines-core compiles the schema after ``_rewrite`` has replaced what it gets wrong. Each
replaced subschema becomes a string constant with a placeholder name (a prefix absent from the
schema's text, then a counter), which outlines-core writes as ``"name"``; that text is then
swapped for our own regex. What is enforced, exactly:

* integer ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` (draft-4 boolean
  exclusives too; fractional bounds round inwards): canonical integers in the interval
  (``ranges.integer_range_regex``); outlines-core itself ignores numeric bounds.
* number bounds, in the float semantics validators use (the JSON text is read as a double): a
  bounded number is written without exponent, and each bound becomes the nearest double on its
  inner side (past it, via ``nextafter``, for an exclusive bound), so every decimal between the
  two parses to a double inside the bounds (rounding is monotonic). Left out are only decimals
  closer to a bound than that double (valid by rounding alone) and ``-0`` forms unless the lower
  bound is negative.
* ``{}``, ``true`` and annotation-only subschemas (``{"description": …}``): any JSON value.
  outlines-core rejects the latter (the whole tool fell back to a generic object) and emits the
  former without a group, so its alternation swallowed the surrounding regex (invalid JSON).
* a type list (``["integer", "null"]``) becomes ``anyOf`` of one branch per type with that
  type's keywords, so bounds apply and ``["object", "null"]`` keeps its ``null``.
* ``required`` names missing from ``properties`` are added as any-value properties.
* property names with ``"``, ``\\`` or control characters are written JSON-escaped
  (outlines-core writes them raw).
* draft-7 tuple ``items: [...]`` is read as ``prefixItems`` (outlines-core rejected it).
* ``format``: only ``date-time``, ``date`` and ``uuid`` are kept; outlines-core's ``email``,
  ``uri`` and ``time`` regexes admit unescaped quotes, backslashes or control characters
  (invalid JSON) and any other format made it reject the whole schema.
* ``pattern`` is kept only when ``_safe_pattern`` holds (plain regex whose every character may
  stand unescaped in a JSON string); it is then anchored as the keyword means (unanchored sides
  take any JSON string text). Otherwise it is dropped: the string is unconstrained.

Already enforced by outlines-core (verified in tests/frontend/test_forcing.py): object
``properties`` and ``required`` (written in the schema's order, optional ones may be left out,
no other keys are ever written),
nested objects, ``enum``, ``const``, string ``minLength``/``maxLength``, array ``items``,
``prefixItems``, ``minItems``/``maxItems``, ``anyOf``, ``$ref`` into ``$defs``/``definitions``
(recursion cut at a fixed depth), ``additionalProperties`` schemas of property-less objects.

Not enforced (a call may still fail validation): ``uniqueItems``; ``oneOf`` exclusivity (it is
read as ``anyOf``); ``multipleOf``; ``not``, ``if``/``then``/``else``, ``dependentRequired``,
``dependentSchemas``, ``minProperties``/``maxProperties``, ``patternProperties``,
``propertyNames``, ``contains``; a ``pattern`` dropped as above, or ignored by outlines-core
when ``minLength``/``maxLength`` is also given; ``enum``/``const`` are written as listed, without
the node's other keywords; number bounds beyond the double range. (Uniqueness is no regular
language; ``oneOf`` and ``not`` need a regex complement, far too large in this plain dialect;
the rest tie properties to each other.) A schema outlines-core still cannot compile (``allOf``
of partial schemas such as ``[{"type": "integer"}, {"minimum": 3}]``, ``false`` subschemas
other than ``additionalProperties``/``items``) falls back to a generic JSON object. A numeric
interval with no value (``minimum`` > ``maximum``) makes the request invalid (400). The arguments
are always an object: an annotation-only root or a root type list with ``object`` is read as
an object.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from functools import lru_cache
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

from kvyard.conversation import Tool
from kvyard.errors import InvalidRequest
from kvyard.frontend.ranges import EmptyRange, decimal_range_regex, integer_range_regex
from kvyard.policies.profiles import ModelProfile

GENERIC_OBJECT = {"type": "object"}
_META = set(".^$*+?{}[]\\|()/")
_ANNOTATIONS = {"description", "title", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly", "$schema", "$id"}
_SAFE_FORMATS = {"date-time", "date", "uuid"}
_TYPE_KEYWORDS = {
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "string": {"minLength", "maxLength", "pattern", "format"},
    "array": {"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains"},
    "object": {"properties", "required", "additionalProperties", "patternProperties", "minProperties", "maxProperties", "propertyNames"},
}
_TYPE_KEYWORDS["number"] = _TYPE_KEYWORDS["integer"]
# The subschema keywords outlines-core reads (the rest it ignores, so they are left as they are).
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties")
# Any JSON text of a string's content: what an unanchored pattern side may add.
_STRING_TEXT = r'([^"\\\x00-\x1F\x7F-\x9F]|\\["\\/bfnrt])*'


def escape(text: str) -> str:
    """A regex matching ``text`` literally, in the plain dialect every structured-output backend reads."""
    return "".join("\\n" if c == "\n" else "\\t" if c == "\t" else "\\" + c if c in _META else c for c in text)


def forced_call_regex(profile: ModelProfile, tools: list[Tool], name: str | None) -> str:
    """The regex the engine must follow: one call to ``name``, or to any of ``tools`` when None."""
    if profile.tool_call_format is None:
        raise InvalidRequest(f"this model (profile {profile.name!r}) has no tool-call format, so a tool call cannot be forced")
    chosen = [t for t in tools if name is None or t.name == name]
    if not chosen:
        raise InvalidRequest(f"tool_choice names {name!r}, which is not among the request's tools", param="tool_choice")
    alternatives = []
    for tool in chosen:
        head, tail = profile.tool_call_format.split("{arguments}")
        head = head.replace("{name}", json.dumps(tool.name)[1:-1])
        try:
            args = arguments_regex(json.dumps(tool.parameters or GENERIC_OBJECT))
        except EmptyRange as e:
            raise InvalidRequest(f"tool {tool.name!r} cannot be called: its input schema allows no value ({e})", param="tools") from None
        alternatives.append(f"{escape(head)}{args}{escape(tail)}")
    return alternatives[0] if len(alternatives) == 1 else "(" + "|".join(f"({a})" for a in alternatives) + ")"


@lru_cache(maxsize=256)
def arguments_regex(schema_json: str) -> str:
    """The regex of a tool's arguments: ``_rewrite``, outlines-core, then each placeholder ``"name"``
    swapped for its regex. Raises ``EmptyRange``; any other failure gives a generic JSON object."""
    from outlines_core.json_schema import build_regex_from_schema

    prefix = "kvyardslot"
    while prefix in schema_json:
        prefix += "x"
    slots: dict[str, str] = {}
    try:
        regex = build_regex_from_schema(json.dumps(_rewrite(_as_object(json.loads(schema_json)), _Slots(prefix, slots))))
    except EmptyRange:
        raise
    except Exception:  # a schema outlines cannot compile still gets a well-formed JSON object
        return build_regex_from_schema(json.dumps(GENERIC_OBJECT))
    for slot, sub in slots.items():
        regex = regex.replace(f'"{slot}"', f"({sub})")
    return regex


def _as_object(schema: Any) -> Any:
    """The root schema, narrowed to objects where it would admit other values by type."""
    if schema is True or (isinstance(schema, dict) and schema.keys() <= _ANNOTATIONS):
        return GENERIC_OBJECT
    if isinstance(schema, dict) and isinstance(schema.get("type"), list) and "object" in schema["type"]:
        return schema | {"type": "object"}
    return schema


class _Slots:
    """Hands out placeholder names (``prefix`` + a counter) and records the regex each stands for."""

    def __init__(self, prefix: str, table: dict[str, str]):
        self.prefix, self.table = prefix, table

    def name(self, regex: str) -> str:
        """A fresh placeholder; outlines-core writes it as ``"<name>"``, later replaced by ``(regex)``."""
        slot = f"{self.prefix}{len(self.table)}"
        self.table[slot] = regex
        return slot

    def const(self, regex: str) -> dict[str, str]:
        """A subschema standing for ``regex``."""
        return {"const": self.name(regex)}


@lru_cache(maxsize=1)
def _any_value_regex() -> str:
    from outlines_core.json_schema import build_regex_from_schema

    return build_regex_from_schema("{}")


def _rewrite(node: Any, slots: _Slots) -> Any:
    """A copy of schema ``node`` that outlines-core compiles to what the module docstring promises."""
    if node is True or (isinstance(node, dict) and node.keys() <= _ANNOTATIONS):
        return slots.const(_any_value_regex())
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if isinstance(node.get("items"), list):
        node["prefixItems"] = node.pop("items")
        node.pop("additionalItems", None)
    if "format" in node and node["format"] not in _SAFE_FORMATS:
        del node["format"]
    if "pattern" in node:
        pattern = node.pop("pattern")
        if _safe_pattern(pattern):
            node["pattern"] = _anchored(pattern)
    if not node.keys() & {"enum", "const", "anyOf", "oneOf", "allOf", "$ref"}:
        if isinstance(node.get("type"), list):
            return _rewrite(_split_types(node), slots)
        numeric = _numeric_regex(node)
        if numeric is not None:
            return slots.const(numeric)
    if (node.get("type") == "object" or "properties" in node) and ("properties" in node or "required" in node):
        node.update(_object_properties(node, slots))
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            node[key] = {k: _rewrite(v, slots) for k, v in node[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            node[key] = [_rewrite(v, slots) for v in node[key]]
    for key in _SCHEMA_ONE:
        if isinstance(node.get(key), dict) or (node.get(key) is True and key != "additionalProperties"):
            node[key] = _rewrite(node[key], slots)
    return node


def _split_types(node: dict) -> dict:
    """``{"type": [t, …], kw…}`` as ``{"anyOf": [{"type": t, t's kw…}, …], other kw…}``."""
    typed = set().union(*_TYPE_KEYWORDS.values())
    branches = [{"type": t} | {k: v for k, v in node.items() if k in _TYPE_KEYWORDS.get(t, ())} for t in node["type"]]
    return {k: v for k, v in node.items() if k != "type" and k not in typed} | {"anyOf": branches}


def _object_properties(node: dict, slots: _Slots) -> dict:
    """``properties`` holding every ``required`` name (one not declared gets the node's
    ``additionalProperties`` schema, or any value), names that JSON escapes renamed to placeholders
    standing for the escaped name, and ``required`` renamed alike."""
    props = dict(node.get("properties") or {})
    required = [r for r in node.get("required", []) if isinstance(r, str)]
    extra = node.get("additionalProperties")
    for name in required:
        props.setdefault(name, extra if isinstance(extra, dict) else True)
    renamed = {}
    for name in props:
        written = json.dumps(name, ensure_ascii=False)
        if written[1:-1] != name:
            renamed[name] = slots.name(escape(written))
    out = {"properties": {renamed.get(k, k): v for k, v in props.items()}}
    if required:
        out["required"] = [renamed.get(r, r) for r in required]
    return out


def _numeric_regex(node: dict) -> str | None:
    """Our regex for an integer or number node with bounds; None when it has none."""
    kind = node.get("type")
    if kind not in ("integer", "number"):
        return None
    whole = kind == "integer"
    lo = _tightest(node, "minimum", "exclusiveMinimum", _integer_lower if whole else _double_lower, max)
    hi = _tightest(node, "maximum", "exclusiveMaximum", _integer_upper if whole else _double_upper, min)
    if lo is None and hi is None:
        return None
    return integer_range_regex(lo, hi) if whole else decimal_range_regex(lo, hi)


def _tightest(node: dict, inclusive: str, exclusive: str, convert, pick):
    """The tightest of the node's bounds on one side, each ``convert``ed (value, is_exclusive)."""
    flag = node.get(exclusive)
    bounds = [(node.get(inclusive), flag is True), (flag, True)]
    converted = [convert(v, x) for v, x in bounds if _finite_number(v)]
    converted = [c for c in converted if c is not None]
    return pick(converted) if converted else None


def _finite_number(v: Any) -> bool:
    return not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and math.isfinite(v)))


def _integer_lower(v: float, exclusive: bool) -> int:
    return math.floor(v) + 1 if exclusive else math.ceil(v)


def _integer_upper(v: float, exclusive: bool) -> int:
    return math.ceil(v) - 1 if exclusive else math.floor(v)


def _double_lower(v: float, exclusive: bool) -> Decimal | None:
    """The least double f with f >= v (f > v when exclusive), exactly; None beyond the double range."""
    try:
        f = float(v)
    except OverflowError:
        return None
    if f < v or (exclusive and f == v):
        f = math.nextafter(f, math.inf)
    return Decimal(repr(f)) if math.isfinite(f) else None


def _double_upper(v: float, exclusive: bool) -> Decimal | None:
    """The greatest double f with f <= v (f < v when exclusive), exactly; None beyond the double range."""
    try:
        f = float(v)
    except OverflowError:
        return None
    if f > v or (exclusive and f == v):
        f = math.nextafter(f, -math.inf)
    return Decimal(repr(f)) if math.isfinite(f) else None


def _safe_pattern(pattern: Any) -> bool:
    """Whether ``pattern`` may be spliced into a JSON string's regex: it parses, uses only plain
    constructs (literals, positive classes, ``\\d``/``\\w``, groups without names or flags, greedy
    repeats, ``|``, ``^`` first and ``$`` last), and none of its characters is ``"``, ``\\`` or a
    control character, so its text is the string's JSON text unchanged."""
    if not isinstance(pattern, str) or "{," in pattern:
        return False
    try:
        parsed = _parser.parse(pattern)
    except (re.error, RecursionError):
        return False
    if parsed.state.groupdict or parsed.state.flags & ~re.UNICODE:
        return False
    items = list(parsed)
    if items[:1] == [(sre.AT, sre.AT_BEGINNING)]:
        items = items[1:]
    if items[-1:] == [(sre.AT, sre.AT_END)]:
        items = items[:-1]
    return _plain(items)


def _plain(items: list) -> bool:
    """The parsed items use only the constructs and characters ``_safe_pattern`` allows."""
    for op, arg in items:
        if op == sre.LITERAL:
            ok = _json_safe(arg, arg)
        elif op == sre.IN:
            ok = all(_class_item_safe(o, a) for o, a in arg)
        elif op == sre.BRANCH:
            ok = all(_plain(list(branch)) for branch in arg[1])
        elif op == sre.SUBPATTERN:
            ok = arg[1] == arg[2] == 0 and _plain(list(arg[3]))
        elif op == sre.MAX_REPEAT:
            ok = _plain(list(arg[2]))
        else:  # ANY, NOT_LITERAL, AT, ASSERT*, GROUPREF*, MIN_/POSSESSIVE_REPEAT, ATOMIC_GROUP
            ok = False
        if not ok:
            return False
    return True


def _class_item_safe(op, arg) -> bool:
    if op == sre.LITERAL:
        return _json_safe(arg, arg)
    if op == sre.RANGE:
        return _json_safe(*arg)
    return op == sre.CATEGORY and arg in (sre.CATEGORY_DIGIT, sre.CATEGORY_WORD)  # NEGATE and \s, \S, \D, \W are not


def _json_safe(first: int, last: int) -> bool:
    """No character in [first, last] needs escaping in a JSON string."""
    return first >= 0x20 and not first <= ord('"') <= last and not first <= ord("\\") <= last


def _anchored(pattern: str) -> str:
    """``pattern`` (safe) as ``^…$`` (the form outlines-core unwraps), its core grouped so a ``|``
    stays inside; an unanchored side takes any JSON string text, as the keyword matches anywhere."""
    starts, ends = pattern.startswith("^"), list(_parser.parse(pattern))[-1:] == [(sre.AT, sre.AT_END)]
    core = pattern[1 if starts else 0 : len(pattern) - 1 if ends else len(pattern)]
    return "^" + ("" if starts else _STRING_TEXT) + f"({core})" + ("" if ends else _STRING_TEXT) + "$"
