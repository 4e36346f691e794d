"""Handmade bad inputs for each API, through the real frontend (tests/api/ingress.py): each gets
a 4xx naming what to fix, in the API's own error shape, never a 5xx."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.api.ingress import API_KEY, MAX_MODEL_LEN, MAX_REQUEST_BYTES, MODEL

AUTH = {"x-api-key": API_KEY}
USER = {"role": "user", "content": "hi"}

# api -> (path, a valid body, its error shape, its output-limit field)
APIS: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "chat": ("/v1/chat/completions", {"model": MODEL, "messages": [USER], "max_tokens": 8}, "openai", "max_tokens"),
    "messages": ("/v1/messages", {"model": MODEL, "messages": [USER], "max_tokens": 8}, "anthropic", "max_tokens"),
    "responses": ("/v1/responses", {"model": MODEL, "input": "hi", "max_output_tokens": 8}, "openai", "max_output_tokens"),
}
ALL = sorted(APIS)


def post(client, api: str, body: Any, headers: dict[str, str] | None = None, **fields: Any):
    path = APIS[api][0]
    if isinstance(body, dict):
        body = json.dumps({**body, **fields})
    return client.post(path, data=body, headers={"content-type": "application/json", **AUTH, **(headers or {})})


def error(api: str, response, status: int) -> dict[str, Any]:
    """The error of a refused request, checked to be in ``api``'s shape; returns its inner object."""
    assert response.status_code == status, response.text
    body = response.json()
    if APIS[api][2] == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    else:
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize("api", ALL)
def test_a_valid_request_is_answered(client, api):
    assert post(client, api, APIS[api][1]).status_code == 200


@pytest.mark.parametrize("api", ALL)
@pytest.mark.parametrize("raw", [b'{"model": ', b"", b"[1, 2", b"\xff\xfe{}", b'{"model": "\xff"}', b"null"])
def test_invalid_json_or_invalid_utf8(client, api, raw):
    err = error(api, post(client, api, raw), 400)
    assert "JSON" in err["message"] or "invalid request" in err["message"]


@pytest.mark.parametrize("api", ALL)
@pytest.mark.parametrize(
    ("field", "value"),
    [("messages", 7), ("model", 7), ("stream", "yes"), ("temperature", "hot"), ("metadata", [1]), ("structured_outputs", {"regex": 1})],
)
def test_wrong_types_name_the_field(client, api, field, value):
    field = "input" if api == "responses" and field == "messages" else field
    err = error(api, post(client, api, APIS[api][1], **{field: value}), 400)
    assert field in err["message"]
    if APIS[api][2] == "openai":
        assert err["param"] is not None and err["param"].startswith(field)


@pytest.mark.parametrize("api", ALL)
def test_a_limit_of_the_wrong_type_or_below_one(client, api):
    limit = APIS[api][3]
    for value in ("8", 0, -1, 1.5):
        assert limit in error(api, post(client, api, APIS[api][1], **{limit: value}), 400)["message"]


@pytest.mark.parametrize("api", ALL)
@pytest.mark.parametrize(
    ("field", "value"), [("temperature", -0.5), ("temperature", 2.5), ("temperature", 1e308), ("top_p", 0), ("top_p", 1.5)]
)
def test_sampling_values_no_engine_takes_are_refused_at_the_edge(client, api, field, value):
    """Regression: the engines refused these, and the frontend answered 502."""
    err = error(api, post(client, api, APIS[api][1], **{field: value}), 400)
    assert field in err["message"]


@pytest.mark.parametrize(("api", "fields"), [("chat", {"top_k": -2}), ("chat", {"seed": 2**64}), ("messages", {"top_k": -1}), ("messages", {"temperature": 1.5})])
def test_api_specific_sampling_limits(client, api, fields):
    err = error(api, post(client, api, APIS[api][1], **fields), 400)
    assert next(iter(fields)) in err["message"]


@pytest.mark.parametrize("api", ALL)
def test_a_body_over_the_limit_is_413(client, api):
    padding = "x" * (MAX_REQUEST_BYTES + 1)
    err = error(api, post(client, api, APIS[api][1], metadata={"pad": padding}), 413)
    assert str(MAX_REQUEST_BYTES) in err["message"]


@pytest.mark.parametrize("api", ALL)
def test_a_streamed_body_over_the_limit_is_413(served, api):
    """No content-length (chunked): the limit holds while the body streams in."""
    import httpx

    async def body():
        yield json.dumps(APIS[api][1]).encode()[:-1]
        for _ in range(MAX_REQUEST_BYTES // 65536 + 1):
            yield b" " * 65536
        yield b"}"

    async def send():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served[0]), base_url="http://testserver") as client:
            response = await client.post(APIS[api][0], content=body(), headers={"content-type": "application/json", **AUTH})
            assert "content-length" not in response.request.headers
            return response

    error(api, asyncio.run(send()), 413)


FREE_FORM = {  # a field each API decodes as any JSON
    "chat": lambda deep: {"chat_template_kwargs": {"a": deep}},
    "messages": lambda deep: {"metadata": {"a": deep}},
    "responses": lambda deep: {"tools": [{"type": "function", "name": "f", "parameters": {"a": deep}}]},
}


@pytest.mark.parametrize("api", ALL)
@pytest.mark.parametrize("where", ["free-form", "extension", "unknown", "typed"])
def test_deep_nesting_is_400_not_a_crash(client, api, where):
    """Regression: 100000 nested arrays raised RecursionError in the decoder (a 502)."""
    marker = "DEEP_MARKER"
    fields = {
        "free-form": FREE_FORM[api](marker),
        "extension": {"structured_outputs": {"json": {"a": marker}}},
        "unknown": {"x_unknown": marker},
        "typed": {"input" if api == "responses" else "messages": marker},
    }[where]
    body = json.dumps({**APIS[api][1], **fields}).replace(f'"{marker}"', "[" * 100_000 + "]" * 100_000)
    err = error(api, post(client, api, body), 400)
    if where != "typed":  # a typed field refuses the first nested array before nesting matters
        assert "nested too deeply" in err["message"]


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_deeply_nested_tool_call_arguments_are_400(client, api):
    """Regression: a tool call's ``arguments`` string is parsed with ``json.loads``, which raised
    RecursionError (a 502) on deep nesting."""
    arguments = "[" * 100_000 + "]" * 100_000
    if api == "chat":
        call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        body = {**APIS[api][1], "messages": [USER, {"role": "assistant", "tool_calls": [call]}]}
    else:
        body = {**APIS[api][1], "input": [USER, {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": arguments}]}
    err = error(api, post(client, api, body), 400)
    assert "arguments" in err["message"] and "nested too deeply" in err["message"]


@pytest.mark.parametrize("api", ALL)
def test_max_tokens_past_the_context_is_clipped_to_it(client, served, api):
    engine = served[1]
    engine.requests.clear()
    assert post(client, api, APIS[api][1], **{APIS[api][3]: 10**9}).status_code == 200
    (request,) = engine.requests
    assert len(request.prompt_token_ids) + request.sampling.max_tokens == MAX_MODEL_LEN


@pytest.mark.parametrize("api", ALL)
def test_a_prompt_past_the_context_is_400(client, api):
    long = "word " * (2 * MAX_MODEL_LEN)
    body = {**APIS[api][1], "input": long} if api == "responses" else {**APIS[api][1], "messages": [{"role": "user", "content": long}]}
    assert "shorten the conversation" in error(api, post(client, api, body), 400)["message"]


@pytest.mark.parametrize("api", ALL)
def test_empty_messages(client, api):
    field = "input" if api == "responses" else "messages"
    err = error(api, post(client, api, APIS[api][1], **{field: []}), 400)
    assert field in err["message"]
    if APIS[api][2] == "openai":
        assert err["param"] == field


@pytest.mark.parametrize(
    ("api", "history", "param"),
    [
        ("chat", [USER, {"role": "tool", "tool_call_id": "call_ghost", "content": "42"}], "messages[1].tool_call_id"),
        ("messages", [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_ghost", "content": "42"}]}], None),
        ("responses", [USER, {"type": "function_call_output", "call_id": "call_ghost", "output": "42"}], "input[1].call_id"),
    ],
)
def test_a_tool_result_for_an_unknown_call(client, api, history, param):
    field = "input" if api == "responses" else "messages"
    err = error(api, post(client, api, APIS[api][1], **{field: history}), 400)
    assert "ghost" in err["message"]
    if param is not None:
        assert err["param"] == param


def test_a_chat_tool_result_for_a_known_call_is_accepted(client):
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    history = [USER, {"role": "assistant", "tool_calls": [call]}, {"role": "tool", "tool_call_id": "call_1", "content": "42"}]
    assert post(client, "chat", APIS["chat"][1], messages=history).status_code == 200


@pytest.mark.parametrize("api", ALL)
@pytest.mark.parametrize("headers", [{"x-api-key": "sk-wrong"}, {"x-api-key": "", "authorization": "Bearer nope"}])
def test_a_wrong_key_is_401(client, api, headers):
    assert error(api, post(client, api, APIS[api][1], headers=headers), 401)["type"] == "authentication_error"


@pytest.mark.parametrize("api", ALL)
def test_an_unknown_model_is_404(client, api):
    assert "not served" in error(api, post(client, api, APIS[api][1], model="gpt-none"), 404)["message"]


@pytest.mark.parametrize(("method", "path", "status", "api"), [("get", "/v1/messages", 405, "messages"), ("get", "/v1/chat/completions", 405, "chat"), ("post", "/v1/nowhere", 404, "chat"), ("get", "/v1/messages/nowhere", 404, "messages")])
def test_routing_errors_are_in_the_apis_shape(client, method, path, status, api):
    """Regression: Starlette's own ``{"detail": ...}`` answered wrong methods and unknown paths."""
    error(api, client.request(method, path, headers=AUTH), status)


def test_a_chat_tool_without_a_name(client):
    """Regression: an empty function name reached tool forcing, which refused it as
    "tool_choice names None"; it is the tool that is wrong."""
    tools = [{"type": "function", "function": {"name": ""}}]
    err = error("chat", post(client, "chat", APIS["chat"][1], tools=tools, tool_choice="required"), 400)
    assert err["param"] == "tools[0].function.name"


@pytest.mark.parametrize("choice", [{"type": "function", "function": {"name": 5}}, {"function": {}}, "any"])
def test_a_chat_tool_choice_that_names_no_function(client, choice):
    """Regression: a non-string name passed for a tool's name."""
    tools = [{"type": "function", "function": {"name": "f"}}]
    err = error("chat", post(client, "chat", APIS["chat"][1], tools=tools, tool_choice=choice), 400)
    assert err["param"] == "tool_choice"


@pytest.mark.parametrize(
    "kwargs",
    [{"tokenize": True}, {"tools": 5}, {"add_generation_prompt": False}, {"chat_template": "{{ raise_exception('x') }}"},
     {"continue_final_message": True}, {"return_dict": True}],
)  # fmt: skip
def test_chat_template_kwargs_that_set_renderer_options_are_refused(client, kwargs):
    err = error("chat", post(client, "chat", APIS["chat"][1], chat_template_kwargs=kwargs), 400)
    assert "chat template" in err["message"] and next(iter(kwargs)) in err["message"]
    assert err["param"] == "chat_template_kwargs"


def test_chat_template_kwargs_reach_the_template(client):
    assert post(client, "chat", APIS["chat"][1], chat_template_kwargs={"enable_thinking": False}).status_code == 200


def test_a_session_id_with_a_line_break_reaches_no_endpoint(client):
    """Routes match path parameters with ``.*``; the description says so (and documents the 404)."""
    error("chat", client.get("/v1/kvyard/sessions/a%0Ab/stability", headers=AUTH), 404)
