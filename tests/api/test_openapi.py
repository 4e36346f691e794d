"""kvyard's OpenAPI description: a valid OpenAPI 3.1 document that matches the routes and structs."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31

from kvyard.api.anthropic import MessagesRequest
from kvyard.api.common import Extensions
from kvyard.api.openai_chat import ChatRequest
from kvyard.api.openapi import document
from kvyard.api.responses import ResponsesRequest

BODIES = {
    "/v1/chat/completions": ChatRequest,
    "/v1/kvyard/route": ChatRequest,
    "/v1/messages": MessagesRequest,
    "/v1/messages/count_tokens": MessagesRequest,
    "/v1/responses": ResponsesRequest,
}
FASTAPI_OWN = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def refs(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def component(ref: str) -> dict[str, Any]:
    return document()["components"]["schemas"][ref.removeprefix("#/components/schemas/")]


def test_is_a_valid_openapi_3_1_document():
    jsonschema.Draft202012Validator(OPENAPI_31).validate(document())  # the OAS 3.1 schema (without schema validation)
    for schema in document()["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)  # OAS 3.1 schemas are JSON Schema 2020-12
    for ref in refs(document()):
        assert ref.startswith("#/components/schemas/") and component(ref) is not None, ref


def test_every_route_is_described_and_every_description_is_a_route():
    from kvyard.deployments.frontend import app

    routes = {
        (method.lower(), route.path.replace(":path}", "}"))
        for route in app.routes
        if route.path not in FASTAPI_OWN
        for method in getattr(route, "methods", ())
        if method != "HEAD"
    }
    described = {(method, path) for path, item in document()["paths"].items() for method in item}
    assert described == routes


@pytest.mark.parametrize("path", sorted(BODIES))
def test_request_bodies_are_the_structs_the_handlers_decode(path):
    operation = document()["paths"][path]["post"]
    schema = component(operation["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert set(schema["properties"]) == set(BODIES[path].__struct_fields__) | set(Extensions.__struct_fields__)
    assert "messages" in schema["required"] or "input" in schema["required"]


@pytest.mark.parametrize("path", sorted(BODIES))
def test_errors_are_described_in_the_apis_own_shape(path):
    shape = "AnthropicError" if path.startswith("/v1/messages") else "OpenAIError"
    responses = document()["paths"][path]["post"]["responses"]
    for status in ("400", "401", "413"):
        assert responses[status]["content"]["application/json"]["schema"]["$ref"] == f"#/components/schemas/{shape}"


def test_anthropic_messages_require_max_tokens_but_count_tokens_does_not():
    assert "max_tokens" in component("#/components/schemas/MessagesRequest")["required"]
    assert "max_tokens" not in component("#/components/schemas/CountTokensRequest")["required"]


def test_keys_are_the_security_except_for_health_and_metrics():
    doc = document()
    assert set(doc["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    for path, item in doc["paths"].items():
        for operation in item.values():
            open_ = path in ("/health", "/metrics")
            assert operation["security"] == ([] if open_ else [{"ApiKey": []}, {"Bearer": []}]), path


def test_the_frontend_serves_it(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == document()
