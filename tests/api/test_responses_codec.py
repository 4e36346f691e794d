"""OpenAI Responses codec: request decoding, and the stream / response built from hand-built event scripts.

Outputs are validated with the official ``openai`` SDK types, and replayed through the SDK's own
client (an ``httpx2.MockTransport`` serves the bytes kvyard would send; the SDK's stream helper
checks item identities and ordering), so what kvyard emits is what the SDK and Codex parse.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import openai
import pytest
from openai.types.responses import Response as SdkResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from kvyard.api import responses as codec
from kvyard.conversation import ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from kvyard.errors import EngineFailure, InvalidRequest
from kvyard.frontend.generation import Finished, Usage
from kvyard.parsing.events import ReasoningDelta, ReasoningEnd, TextDelta, ToolCallArgsDelta, ToolCallComplete, ToolCallStart

DATA = Path(__file__).parent / "data"
STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
USAGE = Usage(prompt_tokens=100, completion_tokens=40, cached_tokens=64)
DEFAULT_MAX = 512


def body(**fields) -> bytes:
    base = {"model": "gpt-5-codex", "input": "hi"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def decode(**fields):
    return codec.decode_request(body(**fields), DEFAULT_MAX)


def signer(text: str) -> str:
    return f"sig{len(text)}"


# --- hand-built event scripts ------------------------------------------------------------------


def interleaved_script() -> list:
    """think -> tool_call -> think -> tool_call -> text, as a parser emits it."""
    return [
        ReasoningDelta("Need the "),
        ReasoningDelta("file list."),
        ReasoningEnd(),
        ToolCallStart(0, "call_a", "shell"),
        ToolCallArgsDelta(0, '{"command": ["ls"]}'),
        ToolCallComplete(0, "call_a", "shell", {"command": ["ls"]}, '{"command": ["ls"]}'),
        ReasoningDelta("Now read it."),
        ReasoningEnd(),
        ToolCallStart(1, "call_b", "read"),
        ToolCallArgsDelta(1, '{"path": '),
        ToolCallArgsDelta(1, '"/a"}'),
        ToolCallComplete(1, "call_b", "read", {"path": "/a"}, '{"path": "/a"}'),
        TextDelta("Done"),
        TextDelta("."),
        Finished("stop", USAGE),
    ]


def encoder(**request_fields) -> codec.ResponsesEncoder:
    req = codec.decode_request(body(**request_fields), DEFAULT_MAX)[0] if request_fields else None
    return codec.ResponsesEncoder("gpt-5-codex", req, signer=signer, response_id="resp_1")


def run_stream(script: list, enc: codec.ResponsesEncoder | None = None) -> tuple[codec.ResponsesEncoder, list[dict]]:
    enc = enc or encoder()
    events = enc.start()
    for event in script:
        events += enc.encode(event)
    return enc, events


def shape(event: dict) -> tuple:
    kind = event["type"]
    if kind.startswith("response.output_item."):
        return (kind, event["output_index"], event["item"]["type"])
    if "output_index" in event:
        return (kind, event["output_index"])
    return (kind,)


# --- decoding ----------------------------------------------------------------------------------


def test_codex_request_decodes():
    req, conv, options = codec.decode_request((DATA / "codex_responses.json").read_bytes(), DEFAULT_MAX)
    assert conv.system.startswith("You are Codex, based on GPT-5.")
    assert conv.system.endswith("\n\n<permissions instructions>\nFilesystem sandboxing: workspace-write. Approval policy: never.\n</permissions instructions>")
    assert [t.name for t in conv.tools] == ["shell", "update_plan"]  # custom, web_search, local_shell ignored
    assert conv.tools[0].parameters["required"] == ["command"]
    assert [m.role for m in conv.messages] == ["user", "user", "assistant", "tool"]
    assert conv.messages[1].parts == [TextPart("List the files in this repository.")]
    assert conv.messages[2].parts == [
        ReasoningPart(text="The user wants a listing; run ls."),
        ToolCallPart(id="call_Nx1bY7fG2kQ8", name="shell", arguments={"command": ["ls", "-la"], "workdir": "/home/dev/project"}),
    ]
    assert conv.messages[3].parts == [ToolResultPart(tool_call_id="call_Nx1bY7fG2kQ8", content="README.md\nsrc\ntests\n")]
    assert options.max_tokens == DEFAULT_MAX
    assert options.template_kwargs == {"enable_thinking": True, "reasoning_effort": "medium"}
    assert (req.prompt_cache_key, req.store, req.stream) == ("0199f3a2-7c41-7d62-9a1e-5b8c2d4e6f70", False, True)
    assert codec.tool_choice(req) == ("auto", None)


def test_string_input_and_instructions():
    _, conv, options = decode(instructions="Be brief.", input="hello", max_output_tokens=7, temperature=0.3, top_p=0.8)
    assert conv.system == "Be brief."
    assert [(m.role, m.parts) for m in conv.messages] == [("user", [TextPart("hello")])]
    assert (options.max_tokens, options.temperature, options.top_p, options.template_kwargs) == (7, 0.3, 0.8, {})


def test_items_group_into_messages():
    items = [
        {"role": "system", "content": "sys"},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "s1"}, {"type": "summary_text", "text": "s2"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"x": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "r1"}, {"type": "input_image", "image_url": "data:,"}]},
        {"type": "function_call_output", "call_id": "c2", "output": "r2"},
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAforeign"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "developer", "content": "late"},
    ]
    _, conv, _ = decode(instructions="ins", input=items)
    assert conv.system == "ins\n\nsys\n\ndev"
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "tool", "assistant", "developer"]
    assert conv.messages[0].parts == [TextPart("a"), TextPart("b")]
    assert conv.messages[1].parts == [
        ReasoningPart(text="s1\n\ns2"),
        TextPart("calling"),
        ToolCallPart(id="c1", name="f", arguments={}),
        ToolCallPart(id="c2", name="g", arguments={"x": 1}),
    ]
    assert conv.messages[2].parts == [ToolResultPart(tool_call_id="c1", content="r1\n" + codec.IMAGE_PLACEHOLDER)]
    assert conv.messages[4].parts == [ReasoningPart(text="", signature="gAAAAforeign", redacted=True), TextPart("no")]


@pytest.mark.parametrize(
    ("effort", "kwargs"),
    [
        ("none", {"enable_thinking": False}),
        ("minimal", {"enable_thinking": False}),
        ("low", {"enable_thinking": True, "reasoning_effort": "low"}),
        ("xhigh", {"enable_thinking": True, "reasoning_effort": "high"}),
    ],
)
def test_reasoning_effort(effort, kwargs):
    assert decode(reasoning={"effort": effort}).__getitem__(2).template_kwargs == kwargs


@pytest.mark.parametrize(
    ("choice", "expected", "tools_left"),
    [
        ("auto", ("auto", None), 1),
        ("required", ("required", None), 1),
        ({"type": "function", "name": "f"}, ("required", "f"), 1),
        ({"type": "allowed_tools", "mode": "required", "tools": []}, ("required", None), 1),
        ("none", ("none", None), 0),
    ],
)
def test_tool_choice(choice, expected, tools_left):
    req, conv, _ = decode(tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}, {"type": "web_search"}], tool_choice=choice)
    assert codec.tool_choice(req) == expected
    assert len(conv.tools) == tools_left


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"previous_response_id": "resp_abc"}, "previous_response_id is not supported: kvyard is stateless"),
        ({"conversation": "conv_1"}, "conversation is not supported"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]: item_reference needs stored items"),
        ({"input": [{"type": "function_call_output", "call_id": "ghost", "output": "x"}]}, "input[0].call_id: no function_call with call_id 'ghost'"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id: field required"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{oops"}]}, "input[0].arguments"),
        ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].call_id"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]: input_image is not supported"),
        ({"input": [{"role": "user", "content": [{"type": "video"}]}]}, "input[0].content[0].type"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type: unsupported input item type 'web_search_call'"),
        ({"input": []}, "input: send at least one user message"),
        ({"input": 5}, "$.input"),
        ({"max_output_tokens": "lots"}, "$.max_output_tokens"),
        ({"max_output_tokens": 0}, "max_output_tokens: must be at least 1"),
        ({"temperature": "warm"}, "$.temperature"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tools": [{"name": "f"}]}, "$.tools[0]"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [{"type": "function", "name": "f"}]}, "tool_choice.name"),
        ({"tool_choice": "required", "tools": [{"type": "web_search"}]}, "needs at least one function tool"),
        ({"reasoning": {"effort": "maximal"}}, "$.reasoning.effort"),
    ],
)
def test_invalid_requests_name_the_field(fields, needle):
    with pytest.raises(InvalidRequest) as info:
        decode(**fields)
    assert needle in info.value.message
    assert info.value.status == 400


def test_store_true_is_accepted_statelessly():
    req, _, _ = decode(store=True)
    assert req.store is True
    assert encoder(store=True).response()["store"] is False


# --- encrypted_content round trip -----------------------------------------------------------------


def test_reasoning_round_trips_byte_exact_through_encrypted_content():
    text = "Think: ünïcode, \"quotes\" and\nnewlines. "
    enc = encoder(include=["reasoning.encrypted_content"])
    _, events = run_stream([ReasoningDelta(text), ReasoningEnd(), TextDelta("ok"), Finished("stop", USAGE)], enc)
    item = enc.response()["output"][0]
    assert item["encrypted_content"] == codec.pack_reasoning(text, signer(text))
    done = [e for e in events if e["type"] == "response.output_item.done"][0]
    assert done["item"]["encrypted_content"] == item["encrypted_content"]
    # the client echoes the item with its content dropped: the text comes back from encrypted_content
    echoed = {"type": "reasoning", "summary": [], "encrypted_content": item["encrypted_content"]}
    _, conv, _ = decode(input=[{"role": "user", "content": "q"}, echoed, {"role": "user", "content": "next"}])
    assert conv.messages[1].parts == [ReasoningPart(text=text, signature=signer(text))]


def test_no_encrypted_content_unless_included():
    enc = encoder()
    run_stream([ReasoningDelta("r"), Finished("stop", USAGE)], enc)
    assert "encrypted_content" not in enc.response()["output"][0]
    assert codec.unpack_reasoning("gAAAA-foreign") is None


# --- encoding: streaming -----------------------------------------------------------------------


def test_interleaved_stream_grammar():
    enc, events = run_stream(interleaved_script())
    assert [shape(e) for e in events] == [
        ("response.created",),
        ("response.in_progress",),
        ("response.output_item.added", 0, "reasoning"),
        ("response.content_part.added", 0),
        ("response.reasoning_text.delta", 0),
        ("response.reasoning_text.delta", 0),
        ("response.reasoning_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0, "reasoning"),
        ("response.output_item.added", 1, "function_call"),
        ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1, "function_call"),
        ("response.output_item.added", 2, "reasoning"),
        ("response.content_part.added", 2),
        ("response.reasoning_text.delta", 2),
        ("response.reasoning_text.done", 2),
        ("response.content_part.done", 2),
        ("response.output_item.done", 2, "reasoning"),
        ("response.output_item.added", 3, "function_call"),
        ("response.function_call_arguments.delta", 3),
        ("response.function_call_arguments.delta", 3),
        ("response.function_call_arguments.done", 3),
        ("response.output_item.done", 3, "function_call"),
        ("response.output_item.added", 4, "message"),
        ("response.content_part.added", 4),
        ("response.output_text.delta", 4),
        ("response.output_text.delta", 4),
        ("response.output_text.done", 4),
        ("response.content_part.done", 4),
        ("response.output_item.done", 4, "message"),
        ("response.completed",),
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        STREAM_EVENT.validate_python(event)
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert events[11]["arguments"] == '{"command": ["ls"]}'
    assert events[12]["item"] == {"id": events[9]["item"]["id"], "type": "function_call", "call_id": "call_a", "name": "shell", "arguments": '{"command": ["ls"]}', "status": "completed"}
    assert events[28]["text"] == "Done."
    completed = events[-1]["response"]
    assert completed["status"] == "completed"
    assert completed["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
        "output_tokens": 40,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 140,
    }


def test_function_call_item_is_done_the_moment_the_call_completes():
    enc = encoder()
    enc.start()
    enc.encode(TextDelta("let me check"))
    opened = enc.encode(ToolCallStart(0, "call_1", "f"))
    assert [shape(e) for e in opened] == [
        ("response.output_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0, "message"),
        ("response.output_item.added", 1, "function_call"),
    ]
    enc.encode(ToolCallArgsDelta(0, '{"a": 1}'))
    done = enc.encode(ToolCallComplete(0, "call_1", "f", {"a": 1}, '{"a": 1}'))
    assert [shape(e) for e in done] == [("response.function_call_arguments.done", 1), ("response.output_item.done", 1, "function_call")]
    assert done[1]["item"]["arguments"] == '{"a": 1}'


def test_length_ends_incomplete():
    enc, events = run_stream([TextDelta("cut"), Finished("length", USAGE)])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    STREAM_EVENT.validate_python(events[-1])
    assert enc.response()["status"] == "incomplete"


def test_failure_mid_stream_is_response_failed():
    enc = encoder()
    events = enc.start() + enc.encode(TextDelta("partial"))
    failed = enc.failed(EngineFailure("the engine ended the request with 'abort'"))
    assert [e["type"] for e in failed] == ["response.failed"]
    assert failed[0]["sequence_number"] == events[-1]["sequence_number"] + 1
    assert failed[0]["response"]["error"] == {"code": "server_error", "message": "the engine ended the request with 'abort'"}
    STREAM_EVENT.validate_python(failed[0])


def test_reasoning_tokens_are_recounted():
    enc = codec.ResponsesEncoder("m", count_tokens=lambda text: len(text.split()))
    for event in interleaved_script():
        enc.encode(event)
    assert enc.response()["usage"]["output_tokens_details"]["reasoning_tokens"] == 7  # 4 + 3 words
    greedy = codec.ResponsesEncoder("m", count_tokens=lambda text: 1000)
    for event in interleaved_script():
        greedy.encode(event)
    assert greedy.response()["usage"]["output_tokens_details"]["reasoning_tokens"] == 40  # never above output_tokens


def test_sse_frame_format():
    assert codec.sse({"type": "response.completed", "sequence_number": 3}) == b'event: response.completed\ndata: {"type":"response.completed","sequence_number":3}\n\n'


# --- encoding: non-streaming -------------------------------------------------------------------


def test_non_streaming_response_has_the_same_items_in_order():
    enc = encoder(tools=[{"type": "function", "name": "shell"}, {"type": "web_search"}], tool_choice="auto", instructions="ins", prompt_cache_key="k")
    for event in interleaved_script():
        enc.encode(event)
    response = enc.response()
    SdkResponse.model_validate(response)
    output = response["output"]
    assert [item["type"] for item in output] == ["reasoning", "function_call", "reasoning", "function_call", "message"]
    assert output[0]["content"] == [{"type": "reasoning_text", "text": "Need the file list."}]
    assert [(o["call_id"], o["name"], o["arguments"]) for o in output if o["type"] == "function_call"] == [
        ("call_a", "shell", '{"command": ["ls"]}'),
        ("call_b", "read", '{"path": "/a"}'),
    ]
    assert output[4]["content"] == [{"type": "output_text", "text": "Done.", "annotations": [], "logprobs": []}]
    assert all(item["status"] == "completed" for item in output)
    assert [t["name"] for t in response["tools"]] == ["shell"]
    assert (response["id"], response["status"], response["instructions"], response["prompt_cache_key"]) == ("resp_1", "completed", "ins", "k")


# --- through the official SDK client ------------------------------------------------------------


def serve(script: list, seen: list):
    """A fake /v1/responses: decode what the SDK sent with the codec, answer with the script."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        req, conv, _ = codec.decode_request(request.content, DEFAULT_MAX)
        seen.append(conv)
        enc = codec.ResponsesEncoder(req.model or "m", req, signer=signer)
        if not req.stream:
            for event in script:
                enc.encode(event)
            return httpx2.Response(200, json=enc.response())
        frames = enc.start()
        for event in script:
            frames += enc.encode(event)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(codec.sse(f) for f in frames))

    return handler


TOOL_TURN = [
    {"role": "user", "content": "list files"},
    {"type": "function_call", "call_id": "call_9", "name": "shell", "arguments": '{"command": ["ls"]}'},
    {"type": "function_call_output", "call_id": "call_9", "output": "a.txt"},
]
TOOLS = [{"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}, "strict": False}, {"type": "web_search"}]


def sdk_client(handler) -> openai.OpenAI:
    return openai.OpenAI(api_key="k", base_url="http://kvyard.test/v1", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def test_sdk_stream_accumulates_to_the_non_streaming_response():
    seen: list = []
    client = sdk_client(serve(interleaved_script(), seen))
    with client.responses.stream(model="gpt-5-codex", input=TOOL_TURN, tools=TOOLS, store=False) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    plain = client.responses.create(model="gpt-5-codex", input=TOOL_TURN, tools=TOOLS, store=False)
    assert [i.type for i in final.output] == [i.type for i in plain.output] == ["reasoning", "function_call", "reasoning", "function_call", "message"]
    assert final.output_text == plain.output_text == "Done."
    assert final.usage.input_tokens_details.cached_tokens == 64
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert seen[0].messages[2].parts == [ToolResultPart(tool_call_id="call_9", content="a.txt")]
    assert [t.name for t in seen[0].tools] == ["shell"]


def test_sdk_raw_stream_parses_every_event():
    client = sdk_client(serve(interleaved_script(), []))
    events = list(client.responses.create(model="gpt-5-codex", input="hi", stream=True))
    assert [type(e).__name__ for e in events][:3] == ["ResponseCreatedEvent", "ResponseInProgressEvent", "ResponseOutputItemAddedEvent"]
    assert type(events[-1]).__name__ == "ResponseCompletedEvent"
    assert not any(type(e).__name__ == "dict" for e in events)
