"""The OpenAPI 3.1 description of kvyard's HTTP API, served at ``GET /openapi.json``.

Request bodies are the msgspec structs the handlers decode (``msgspec.json.schema_components``),
so the description cannot drift from what is accepted. On top of the structs it records the
checks decoding makes in code (``_DECODING_RULES``: required ``max_tokens`` for Messages, at least
one message, ``n`` = 1, limits ≥ 1) and the extensions every API accepts (``Extensions``). Errors
are documented in each API's own shape: OpenAI ``{"error": {message, type, param, code}}``,
Anthropic ``{"type": "error", "error": {type, message}}``.

FastAPI's own description has no request bodies (the handlers read the raw request), so the
frontend replaces it with ``document()``.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import msgspec

from kvyard.api.anthropic import MessagesRequest
from kvyard.api.common import Extensions
from kvyard.api.openai_chat import ChatRequest
from kvyard.api.responses import ResponsesRequest
from kvyard.frontend.render import RENDERER_OPTIONS
from kvyard.policies.replay import POLICIES, REPLAY_HEADER

REF = "#/components/schemas/{name}"

# Component names msgspec qualifies by module (two structs share a name) get the API's prefix.
_PREFIXES = {"kvyard.api.openai_chat.": "Chat", "kvyard.api.anthropic.": "Messages", "kvyard.api.responses.": "Responses"}

_LIMIT = {"type": "integer", "minimum": 1}
_OPTIONAL_LIMIT = {"anyOf": [_LIMIT, {"type": "null"}], "default": None}

_MODES = {"enum": ["none", "auto", "required"]}
_NAME = {"type": "string", "minLength": 1}

# What decoding checks in code, beyond the structs' types: component -> property -> its schema.
_DECODING_RULES: dict[str, dict[str, Any]] = {
    "ChatRequest": {
        "max_tokens": _OPTIONAL_LIMIT,
        "max_completion_tokens": _OPTIONAL_LIMIT,
        "n": {"type": "integer", "const": 1, "default": 1},
        "chat_template_kwargs": {
            "anyOf": [{"type": "object", "propertyNames": {"not": {"enum": sorted(RENDERER_OPTIONS)}}}, {"type": "null"}],
            "default": None,
            "description": "Variables for the model's chat template (not the renderer's own options).",
        },
        "tool_choice": {
            "anyOf": [
                _MODES,
                {"type": "object", "required": ["function"], "properties": {"function": {"type": "object", "required": ["name"], "properties": {"name": _NAME}}}},
                {"type": "null"},
            ],
            "default": None,
        },
    },
    "ChatToolDef": {"type": {"const": "function", "default": "function"}, "function": {"$ref": REF.format(name="FunctionDef")}},
    "FunctionDef": {"name": _NAME},
    "MessagesRequest": {"max_tokens": _LIMIT},
    "ResponsesRequest": {
        "max_output_tokens": _OPTIONAL_LIMIT,
        "tool_choice": {
            "anyOf": [
                _MODES,
                {"type": "object", "required": ["type", "name"], "properties": {"type": {"const": "function"}, "name": _NAME}},
                {"type": "object", "required": ["type"], "properties": {"type": {"const": "allowed_tools"}, "mode": {"enum": ["auto", "required"]}}},
                {"type": "null"},
            ],
            "default": None,
        },
    },
}
_NON_EMPTY = {"ChatRequest": "messages", "MessagesRequest": "messages", "CountTokensRequest": "messages"}
_REQUIRED = {"MessagesRequest": ["max_tokens"], "ChatToolDef": ["function"]}
"""Anthropic requires ``max_tokens`` in Messages (not in count_tokens, whose body is the same struct)."""


OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string", "minLength": 1},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["integer", "string", "null"]},
            },
        }
    },
}

ANTHROPIC_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string", "minLength": 1}},
        },
    },
}

_ERRORS = {
    "400": "Invalid request: the message says what to fix (and `param` names the field, where known).",
    "401": "Missing or invalid API key (`x-api-key` or `Authorization: Bearer`).",
    "404": "The model is not served here, or no endpoint has this path.",
    "413": "The body is larger than `frontend.max_request_bytes`.",
    "429": "This API key has its limit of requests in flight.",
    "502": "An engine failed while serving the request; retry it.",
}

SECURITY = [{"ApiKey": []}, {"Bearer": []}]

SSE_EVENT = {
    "type": "object",
    "description": "One server-sent event: `data` is a JSON payload in the API's streaming grammar (or `[DONE]`).",
    "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(shape: str, *statuses: str) -> dict[str, Any]:
    return {status: _json({"$ref": REF.format(name=shape)}, _ERRORS[status]) for status in statuses}


def _header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description, "schema": schema or {"type": "string"}}


_GENERATION_HEADERS = [
    _header("x-claude-code-session-id", "Session id for routing affinity (Claude Code)."),
    _header("session-id", "Session id for routing affinity (Codex CLI)."),
    _header("x-session-id", "Session id for routing affinity (generic)."),
    _header(REPLAY_HEADER, "Reasoning-replay policy for this request.", {"type": "string", "enum": list(POLICIES)}),
]


def _rename(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (names.get(v, v) if k == "$ref" else _rename(v, names)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rename(v, names) for v in node]
    return node


def _components() -> dict[str, Any]:
    """Request schemas from the msgspec structs, with the extensions and decoding rules."""
    _, schemas = msgspec.json.schema_components([ChatRequest, MessagesRequest, ResponsesRequest, Extensions], ref_template=REF)
    names: dict[str, str] = {}
    for name in list(schemas):
        for prefix, api in _PREFIXES.items():
            if name.startswith(prefix):
                names[name] = api + name[len(prefix) :]
    refs = {REF.format(name=old): REF.format(name=new) for old, new in names.items()}
    schemas = {names.get(name, name): _rename(schema, refs) for name, schema in schemas.items()}
    for new in names.values():
        schemas[new]["title"] = new
    extensions = schemas.pop("Extensions")
    schemas["CountTokensRequest"] = copy.deepcopy(schemas["MessagesRequest"]) | {"title": "CountTokensRequest"}
    for name in ("ChatRequest", "MessagesRequest", "CountTokensRequest", "ResponsesRequest"):
        for field, extension in extensions["properties"].items():
            schemas[name]["properties"].setdefault(field, extension)  # an API's own field wins (decoded first)
    for name, rules in _DECODING_RULES.items():
        schemas[name]["properties"].update(rules)
    for name, field in _NON_EMPTY.items():
        schemas[name]["properties"][field] = schemas[name]["properties"][field] | {"minItems": 1}
    for name, fields in _REQUIRED.items():
        schemas[name]["required"] = [*schemas[name].get("required", []), *fields]
    schemas["OpenAIError"] = OPENAI_ERROR
    schemas["AnthropicError"] = ANTHROPIC_ERROR
    return schemas


def _generation(summary: str, body: str, shape: str, *, stream: bool = True, statuses=("400", "401", "404", "413", "429", "502"), headers=()):
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if stream:
        content["text/event-stream"] = {"schema": SSE_EVENT}
    return {
        "post": {
            "summary": summary,
            "security": SECURITY,
            "parameters": list(headers),
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(name=body)}}}},
            "responses": {
                "200": {"description": "The result (an SSE stream when `stream` is true).", "content": content},
                **_errors(shape, *statuses),
            },
        }
    }


def _get(summary: str, responses: dict[str, Any], *, secured: bool = True, parameters=()) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "security": SECURITY if secured else [], "responses": responses}
    if parameters:
        operation["parameters"] = list(parameters)
    return {"get": operation}


MODEL = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by", "max_model_len"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
        "max_model_len": {"type": "integer"},
    },
}


def _paths() -> dict[str, Any]:
    # Routes match path parameters with `.*`: an id with a line break reaches no endpoint (404).
    one_line = {"type": "string", "pattern": r"^[^\n]*$"}
    model_id = {"name": "model_id", "in": "path", "required": True, "description": "A model id (may contain `/`).", "schema": one_line}
    session = {"name": "session", "in": "path", "required": True, "description": "The session id.", "schema": one_line}
    dispatch = _header("x-kvyard-tool-dispatch", "`1`/`true`: also send `event: tool_call_dispatch` with each complete tool call.")
    return {
        "/v1/chat/completions": _generation(
            "OpenAI Chat Completions", "ChatRequest", "OpenAIError", headers=[*_GENERATION_HEADERS, dispatch]
        ),
        "/v1/messages": _generation("Anthropic Messages", "MessagesRequest", "AnthropicError", headers=_GENERATION_HEADERS),
        "/v1/messages/count_tokens": _generation(
            "Anthropic token counting: the sanitized, rendered prompt's token count",
            "CountTokensRequest",
            "AnthropicError",
            stream=False,
            statuses=("400", "401", "404", "413"),
        ),
        "/v1/responses": _generation("OpenAI Responses (stateless)", "ResponsesRequest", "OpenAIError", headers=_GENERATION_HEADERS),
        "/v1/kvyard/route": _generation(
            "Score a Chat Completions body against every live worker without running it (router.policy kv_aware)",
            "ChatRequest",
            "OpenAIError",
            stream=False,
            statuses=("400", "401", "413", "502"),
        ),
        "/v1/models": _get(
            "The served model",
            {
                "200": _json(
                    {"type": "object", "required": ["object", "data"], "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": MODEL}}},
                    "The model list.",
                ),
                **_errors("OpenAIError", "401"),
            },
        ),
        "/v1/models/{model_id}": _get(
            "One model", {"200": _json(MODEL, "The model card."), **_errors("OpenAIError", "401", "404")}, parameters=[model_id]
        ),
        "/v1/kvyard/sessions/{session}/stability": _get(
            "Where this session's consecutive prompts stopped sharing a prefix (this frontend replica's view)",
            {
                "200": _json(
                    {"type": "object", "required": ["session", "frontend", "requests"], "properties": {"requests": {"type": "array"}}},
                    "The session's prefix-stability reports.",
                ),
                **_errors("OpenAIError", "401", "404"),
            },
            parameters=[session],
        ),
        "/health": _get(
            "Liveness", {"200": _json({"type": "object", "properties": {"status": {"const": "ok"}}}, "Alive.")}, secured=False
        ),
        "/metrics": _get(
            "Prometheus metrics",
            {"200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            secured=False,
        ),
    }


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once; do not modify the returned dict)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kvyard",
            "version": "0.1.0",
            "description": "OpenAI Chat Completions, Anthropic Messages and OpenAI Responses APIs over disaggregated vLLM engines.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "One of `frontend.api_keys` (when set)."},
                "Bearer": {"type": "http", "scheme": "bearer", "description": "The same key as `Authorization: Bearer`."},
            },
        },
    }
