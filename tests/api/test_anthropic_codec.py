"""Anthropic Messages codec: request decoding, and the stream / message built from hand-built event scripts.

Outputs are validated with the official ``anthropic`` SDK types, and replayed through the SDK's
own client (an ``httpx2.MockTransport`` serves the bytes kvyard would send), so what kvyard emits
is what the SDK and Claude Code parse.
"""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx2
import pytest
from anthropic.types import Message as SdkMessage
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from kvyard.api.common import hmac_signer
from kvyard.api import anthropic as codec
from kvyard.conversation import ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from kvyard.errors import InvalidRequest, Overloaded
from kvyard.frontend.generation import Finished, Usage
from kvyard.parsing.events import ReasoningDelta, ReasoningEnd, TextDelta, ToolCallArgsDelta, ToolCallComplete, ToolCallStart

DATA = Path(__file__).parent / "data"
STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)
USAGE = Usage(prompt_tokens=100, completion_tokens=40, cached_tokens=64)


def body(**fields) -> bytes:
    base = {"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def signer(text: str) -> str:
    return f"sig-{len(text)}"


# --- hand-built event scripts ------------------------------------------------------------------


def interleaved_script() -> list:
    """think -> tool_call -> think -> tool_call -> text, as a parser emits it."""
    return [
        ReasoningDelta("Need the "),
        ReasoningDelta("file list."),
        ReasoningEnd(),
        ToolCallStart(0, "call_a", "Bash"),
        ToolCallArgsDelta(0, '{"command": "ls"}'),
        ToolCallComplete(0, "call_a", "Bash", {"command": "ls"}, '{"command": "ls"}'),
        ReasoningDelta("Now read it."),
        ReasoningEnd(),
        ToolCallStart(1, "functions.Read:1", "Read"),
        ToolCallArgsDelta(1, '{"file_path": '),
        ToolCallArgsDelta(1, '"/a"}'),
        ToolCallComplete(1, "functions.Read:1", "Read", {"file_path": "/a"}, '{"file_path": "/a"}'),
        TextDelta("Done"),
        TextDelta("."),
        Finished("stop", USAGE),
    ]


def run_stream(script: list, **kwargs) -> tuple[codec.MessagesEncoder, list[dict]]:
    enc = codec.MessagesEncoder("claude-sonnet-4-5", signer=signer, **kwargs)
    events = enc.start(Usage(prompt_tokens=100, cached_tokens=64))
    for event in script:
        events += enc.encode(event)
    return enc, events


def shape(event: dict) -> tuple:
    if event["type"] == "content_block_start":
        return ("start", event["index"], event["content_block"]["type"])
    if event["type"] == "content_block_delta":
        return ("delta", event["index"], event["delta"]["type"])
    if event["type"] == "content_block_stop":
        return ("stop", event["index"])
    return (event["type"],)


# --- decoding ----------------------------------------------------------------------------------


def test_claude_code_request_decodes():
    req, conv, options = codec.decode_request((DATA / "claude_code_messages.json").read_bytes())
    assert conv.system.startswith("x-anthropic-billing-header: cc_version=2.1.197.c40; cc_entrypoint=sdk-cli;\nYou are Claude Code")
    assert "\n\nYou are an interactive CLI tool" in conv.system  # third block starts with its own "\n"
    assert [t.name for t in conv.tools] == ["Bash", "Read", "Edit"]
    assert conv.tools[0].parameters["required"] == ["command"]
    assert options.max_tokens == 32000
    assert options.template_kwargs == {"enable_thinking": True}
    assert req.metadata["user_id"].startswith("user_")
    assert [m.role for m in conv.messages] == ["user", "assistant", "user"]
    assert [type(p) for p in conv.messages[0].parts] == [TextPart, TextPart]
    assert conv.messages[1].parts == [
        ReasoningPart(text="I should run the tests first.", signature="kv_sig_1"),
        ToolCallPart(id="toolu_01A09q90qw90lq917835lq9", name="Bash", arguments={"command": "make test", "description": "Run the test suite"}),
    ]
    result = conv.messages[2].parts[0]
    assert result == ToolResultPart(tool_call_id="toolu_01A09q90qw90lq917835lq9", content="FAILED tests/test_x.py::test_y - KeyError: 'z'", is_error=True)
    assert isinstance(conv.messages[2].parts[1], TextPart)


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("plain system", "plain system"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": ""}, {"type": "text", "text": "b"}], "a\nb"),
        (None, ""),
    ],
)
def test_system_string_or_blocks(system, expected):
    _, conv, _ = codec.decode_request(body(system=system))
    assert conv.system == expected


def test_content_blocks_map_to_parts_in_order():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "t1", "signature": "s1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "let me look"},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/x"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "line1"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}],
                },
            ],
        },
    ]
    _, conv, _ = codec.decode_request(body(messages=messages))
    assert conv.messages[1].parts == [
        ReasoningPart(text="t1", signature="s1"),
        ReasoningPart(text="", signature="opaque", redacted=True),
        TextPart("let me look"),
        ToolCallPart(id="toolu_1", name="Read", arguments={"file_path": "/x"}),
    ]
    assert conv.messages[2].role == "user"
    assert conv.messages[2].parts == [ToolResultPart(tool_call_id="toolu_1", content="line1\n" + codec.IMAGE_PLACEHOLDER)]


def test_tools_skip_server_tools_and_options_map():
    tools = [
        {"name": "get_weather", "description": "w", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"type": "custom", "name": "other"},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 8},
        {"type": "bash_20250124", "name": "bash"},
    ]
    req, conv, options = codec.decode_request(
        body(tools=tools, stop_sequences=["END"], temperature=0.2, top_p=0.9, top_k=40, thinking={"type": "disabled"}, unknown_field={"x": 1})
    )
    assert [t.name for t in conv.tools] == ["get_weather", "other"]
    assert conv.tools[1].parameters == {"type": "object", "properties": {}}
    assert (options.stop, options.temperature, options.top_p, options.top_k) == (["END"], 0.2, 0.9, 40)
    assert options.template_kwargs == {"enable_thinking": False}
    assert codec.tool_choice(req) == ("auto", None)


@pytest.mark.parametrize(
    ("choice", "expected", "tools_left"),
    [
        ({"type": "auto"}, ("auto", None), 1),
        ({"type": "any"}, ("required", None), 1),
        ({"type": "tool", "name": "f"}, ("required", "f"), 1),
        ({"type": "none"}, ("none", None), 0),
    ],
)
def test_tool_choice(choice, expected, tools_left):
    req, conv, _ = codec.decode_request(body(tools=[{"name": "f", "input_schema": {"type": "object"}}], tool_choice=choice))
    assert codec.tool_choice(req) == expected
    assert len(conv.tools) == tools_left


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"max_tokens": None}, "max_tokens: field required"),
        ({"max_tokens": 0}, "max_tokens: must be at least 1"),
        ({"max_tokens": "many"}, "$.max_tokens"),
        ({"messages": "hi"}, "$.messages"),
        ({"messages": []}, "messages: send at least one message"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "$.messages[0].role"),
        ({"temperature": "hot"}, "$.temperature"),
        ({"system": [{"type": "image"}]}, "system.0.type"),
        ({"thinking": {"type": "sometimes"}}, "$.thinking.type"),
        ({"tool_choice": {"type": "tool", "name": "nope"}, "tools": [{"name": "f"}]}, "tool_choice.name"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "messages.0.content.0: image blocks are not supported"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages.0.content.0.type"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text"),
        ({"messages": [{"role": "user", "content": [{"type": "thinking", "thinking": "x"}]}]}, "messages.0.content.0: a 'thinking' block belongs in a assistant"),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]},
            "messages.0.content.0.id",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_ghost", "content": "x"}]}]},
            "messages.0.content.0.tool_use_id: unexpected `tool_use_id` found in `tool_result` blocks: toolu_ghost",
        ),
    ],
)
def test_invalid_requests_name_the_field(fields, needle):
    with pytest.raises(InvalidRequest) as info:
        codec.decode_request(body(**fields))
    assert needle in info.value.message
    assert info.value.status == 400


def test_unknown_tool_use_id_error_is_anthropic_shaped():
    bad = body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}])
    with pytest.raises(InvalidRequest) as info:
        codec.decode_request(bad)
    err = codec.MessagesEncoder("m").error(info.value)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert "toolu_x" in err["error"]["message"]


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[]"])
def test_malformed_bodies(raw):
    with pytest.raises(InvalidRequest):
        codec.decode_request(raw)


def test_count_tokens_needs_no_max_tokens():
    raw = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "enabled", "budget_tokens": 2048}}).encode()
    _, conv, options = codec.decode_count_tokens(raw)
    assert conv.messages[0].parts == [TextPart("hi")]
    assert options.template_kwargs == {"enable_thinking": True}
    assert codec.count_tokens_response(17) == {"input_tokens": 17}


@pytest.mark.parametrize("call_id", ["call_abc", "toolu_01XYZ", "functions.get_weather:0", "a b/c", "kv_abc"])
def test_tool_use_ids_are_valid_and_map_back(call_id):
    sent = codec.to_anthropic_id(call_id)
    assert codec._ID_OK.match(sent)
    assert codec.from_anthropic_id(sent) == call_id


def test_mapped_ids_replay_as_the_models_own():
    sent = codec.to_anthropic_id("functions.Read:1")
    assert sent != "functions.Read:1"
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": sent, "name": "Read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": sent, "content": "ok"}]},
    ]
    _, conv, _ = codec.decode_request(body(messages=messages))
    assert conv.messages[1].parts[0].id == "functions.Read:1"
    assert conv.messages[2].parts[0].tool_call_id == "functions.Read:1"


# --- encoding: streaming -----------------------------------------------------------------------


def test_interleaved_stream_grammar():
    _, events = run_stream(interleaved_script())
    assert [shape(e) for e in events] == [
        ("message_start",),
        ("ping",),
        ("start", 0, "thinking"),
        ("delta", 0, "thinking_delta"),
        ("delta", 0, "thinking_delta"),
        ("delta", 0, "signature_delta"),
        ("stop", 0),
        ("start", 1, "tool_use"),
        ("delta", 1, "input_json_delta"),
        ("stop", 1),
        ("start", 2, "thinking"),
        ("delta", 2, "thinking_delta"),
        ("delta", 2, "signature_delta"),
        ("stop", 2),
        ("start", 3, "tool_use"),
        ("delta", 3, "input_json_delta"),
        ("delta", 3, "input_json_delta"),
        ("stop", 3),
        ("start", 4, "text"),
        ("delta", 4, "text_delta"),
        ("delta", 4, "text_delta"),
        ("stop", 4),
        ("message_delta",),
        ("message_stop",),
    ]
    for event in events:
        if event["type"] != "ping":
            STREAM_EVENT.validate_python(event)
    start = events[0]["message"]
    assert start["usage"] == {"input_tokens": 36, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 64, "output_tokens": 0}
    assert events[5]["delta"]["signature"] == signer("Need the file list.")
    assert events[7]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "Bash", "input": {}}
    assert codec._ID_OK.match(events[14]["content_block"]["id"])
    delta = events[-2]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 36, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 64, "output_tokens": 40}


def test_tool_use_block_stops_with_tool_call_complete():
    enc = codec.MessagesEncoder("m", signer=signer)
    enc.start()
    assert [shape(e) for e in enc.encode(ReasoningDelta("x"))] == [("start", 0, "thinking"), ("delta", 0, "thinking_delta")]
    # a tool call closes the open thinking block implicitly (signature first)
    assert [shape(e) for e in enc.encode(ToolCallStart(0, "call_1", "f"))] == [("delta", 0, "signature_delta"), ("stop", 0), ("start", 1, "tool_use")]
    assert [shape(e) for e in enc.encode(ToolCallArgsDelta(0, "{}"))] == [("delta", 1, "input_json_delta")]
    assert enc.encode(ToolCallComplete(0, "call_1", "f", {}, "{}")) == [{"type": "content_block_stop", "index": 1}]


def test_empty_reasoning_region_and_empty_deltas_open_no_block():
    _, events = run_stream([ReasoningEnd(), TextDelta(""), TextDelta("hi"), ReasoningEnd(), Finished("stop", USAGE)])
    assert [shape(e) for e in events] == [
        ("message_start",),
        ("ping",),
        ("start", 0, "text"),
        ("delta", 0, "text_delta"),
        ("stop", 0),
        ("message_delta",),
        ("message_stop",),
    ]
    assert events[-2]["delta"]["stop_reason"] == "end_turn"


def test_reasoning_closed_by_the_end_of_the_stream_is_signed():
    enc, events = run_stream([ReasoningDelta("cut"), Finished("length", USAGE)])
    assert [shape(e) for e in events[2:]] == [
        ("start", 0, "thinking"),
        ("delta", 0, "thinking_delta"),
        ("delta", 0, "signature_delta"),
        ("stop", 0),
        ("message_delta",),
        ("message_stop",),
    ]
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    assert enc.response()["content"] == [{"type": "thinking", "thinking": "cut", "signature": signer("cut")}]


class FinishedAtStop(Finished, tag="finished_at_stop"):
    stop_sequence: str | None = None


@pytest.mark.parametrize(
    ("finished", "expected"),
    [
        (Finished("stop", USAGE), ("end_turn", None)),
        (Finished("length", USAGE), ("max_tokens", None)),
        (FinishedAtStop("stop", USAGE, stop_sequence="END"), ("stop_sequence", "END")),
    ],
)
def test_stop_reasons(finished, expected):
    enc, events = run_stream([TextDelta("x"), finished])
    assert (events[-2]["delta"]["stop_reason"], events[-2]["delta"]["stop_sequence"]) == expected
    assert (enc.response()["stop_reason"], enc.response()["stop_sequence"]) == expected


def test_default_signer_is_an_hmac():
    enc = codec.MessagesEncoder("m")
    enc.encode(ReasoningDelta("abc"))
    enc.encode(Finished("stop", USAGE))
    signature = enc.response()["content"][0]["signature"]
    assert signature == codec.process_signer("abc") and len(signature) == 43
    assert hmac_signer(b"k1")("abc") != hmac_signer(b"k2")("abc")


def test_sse_frame_format():
    assert codec.sse({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


# --- encoding: non-streaming -------------------------------------------------------------------


def test_non_streaming_message_has_the_same_blocks_in_order():
    enc = codec.MessagesEncoder("claude-sonnet-4-5", signer=signer, message_id="msg_1")
    for event in interleaved_script():
        enc.encode(event)
    message = enc.response()
    SdkMessage.model_validate(message)
    assert message["content"] == [
        {"type": "thinking", "thinking": "Need the file list.", "signature": signer("Need the file list.")},
        {"type": "tool_use", "id": "call_a", "name": "Bash", "input": {"command": "ls"}},
        {"type": "thinking", "thinking": "Now read it.", "signature": signer("Now read it.")},
        {"type": "tool_use", "id": codec.to_anthropic_id("functions.Read:1"), "name": "Read", "input": {"file_path": "/a"}},
        {"type": "text", "text": "Done."},
    ]
    assert (message["id"], message["stop_reason"], message["role"]) == ("msg_1", "tool_use", "assistant")
    assert message["usage"] == {"input_tokens": 36, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 64, "output_tokens": 40}


# --- through the official SDK client ------------------------------------------------------------


def sdk_client(handler) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="k", base_url="http://kvyard.test", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def serve(script: list, seen: list):
    """A fake /v1/messages: decode what the SDK sent with the codec, answer with the script."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        req, conv, _ = codec.decode_request(request.content)
        seen.append(conv)
        enc = codec.MessagesEncoder(req.model, signer=signer)
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
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {"command": "ls"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "a.txt"}]},
]


def test_sdk_stream_accumulates_to_the_non_streaming_message():
    seen: list = []
    client = sdk_client(serve(interleaved_script(), seen))
    tools = [{"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=TOOL_TURN, tools=tools) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    streamed = final.model_dump(exclude_none=True)
    plain = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=TOOL_TURN, tools=tools).model_dump(exclude_none=True)
    assert streamed["content"] == plain["content"]
    assert [b["type"] for b in streamed["content"]] == ["thinking", "tool_use", "thinking", "tool_use", "text"]
    assert streamed["content"][3]["input"] == {"file_path": "/a"}
    assert streamed["stop_reason"] == plain["stop_reason"] == "tool_use"
    assert streamed["usage"]["cache_read_input_tokens"] == 64 and streamed["usage"]["output_tokens"] == 40
    assert "message_stop" in kinds
    assert seen[0].messages[2].parts == [ToolResultPart(tool_call_id="toolu_9", content="a.txt")]


def test_sdk_raises_on_an_error_event_mid_stream():
    def handler(request: httpx2.Request) -> httpx2.Response:
        enc = codec.MessagesEncoder("m", signer=signer)
        frames = enc.start() + enc.encode(TextDelta("partial")) + [enc.error(Overloaded("the engines are busy; retry"))]
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(codec.sse(f) for f in frames))

    client = sdk_client(handler)
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]) as stream:
            for _ in stream:
                pass
    assert "the engines are busy" in str(info.value)
