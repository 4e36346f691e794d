"""Typing of string-valued tool arguments (Qwen3-Coder's ``<parameter=P>value</parameter>``).

The usual Qwen3-Coder rules (as in Qwen's reference parser and vLLM's): with the tool's JSON schema
known, a value is converted to its declared type, and kept as the string whenever conversion fails:

- ``string``/``str``/``text``/``varchar``/``char``/``enum``: unchanged;
- ``int*``/``uint*``/``long*``/``short*``/``unsigned*``: ``int``;
- ``num*``/``float*``: ``float``, or ``int`` when integral (``"3.0"`` -> ``3``);
- ``boolean``/``bool``/``binary``: ``true``/``false`` (any case);
- ``object``/``array``/``arr``/``dict*``/``list*``: JSON, then a Python literal;
- any other declared type: JSON; ``null`` (any case) is ``None`` for every non-string type.

A parameter the schema does not declare stays a string. Without a schema for the tool, a value is
coerced only when it is JSON that is not a string (a number, ``true``/``false``/``null``, an object
or an array), otherwise it stays the string: pass ``tool_schemas`` for exact typing.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any

_STRING = {"string", "str", "text", "varchar", "char", "enum"}
_INT = ("int", "uint", "long", "short", "unsigned")
_BOOL = {"boolean", "bool", "binary"}
_CONTAINER = {"object", "array", "arr"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


_UNSET = object()


def _json_safe(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists), or ``_UNSET`` if it has no JSON form."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return _UNSET


def _declared_type(spec: Any) -> str:
    kind = spec.get("type", "string") if isinstance(spec, Mapping) else "string"
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return str(kind).strip().lower()


def _coerce_untyped(value: str) -> Any:
    text = value.strip()
    if not text or text[0] not in "{[-0123456789tfn":
        return value
    try:
        parsed = _strict_json(text)
    except ValueError:
        return value
    return value if isinstance(parsed, str) else parsed


def _coerce_typed(value: str, spec: Any) -> Any:
    kind = _declared_type(spec)
    if kind in _STRING:
        return value
    text = value.strip()
    if text.lower() == "null":
        return None
    if kind.startswith(_INT):
        try:
            return int(text)
        except ValueError:
            return value
    if kind.startswith(("num", "float")):
        try:
            number = float(text)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    if kind in _BOOL:
        lowered = text.lower()
        return lowered == "true" if lowered in ("true", "false") else value
    try:
        return _strict_json(text)
    except ValueError:
        pass
    if kind in _CONTAINER or kind.startswith(("dict", "list")):
        try:
            return ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
    return value


def coerce_untyped(value: str) -> Any:
    """No schema: JSON values other than strings are converted, everything else stays text."""
    result = _coerce_untyped(value)
    if result is value:
        return value
    safe = _json_safe(result)
    return value if safe is _UNSET else safe


def coerce_typed(value: str, spec: Any) -> Any:
    """Convert ``value`` to the type ``spec`` (a JSON-schema property) declares, else keep it."""
    result = _coerce_typed(value, spec)
    if result is value:
        return value
    safe = _json_safe(result)
    return value if safe is _UNSET else safe


def coerce_arguments(params: dict[str, str], schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """Type every parameter of one call; ``schema`` is the tool's parameters JSON schema or None."""
    if schema is None:
        return {k: coerce_untyped(v) for k, v in params.items()}
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        properties = {}
    return {k: (coerce_typed(v, properties[k]) if k in properties else v) for k, v in params.items()}
