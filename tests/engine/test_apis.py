"""The three HTTP APIs through the official SDKs against live engines (the /pd app): forced tool
calls valid for their schema, tool-result turns, and an exact interleaved script (the engine is
constrained to it with a regex) coming back in order, streaming and not."""

from __future__ import annotations

import json

import anthropic
import jsonschema
import pytest
from openai import OpenAI

from kvyard.frontend.forcing import escape

pytestmark = pytest.mark.engine

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    # Bounded (a random-weight model would otherwise write an endless string inside the forced
    # call): the forced-call regex enforces maxLength and the integer range.
    "schema": {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 12}, "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "days"]},
}
CLOCK = {"name": "get_time", "description": "The time now", "schema": {"type": "object", "properties": {}}}

SCRIPT = (
    "<think>check the weather</think>\n\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>\n'
    "<think>now the time</think>\n\n"
    '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>\n'
    "All done."
)
EXPECTED_ORDER = ["thinking", "tool_use", "thinking", "tool_use", "text"]


def valid_weather(args: dict) -> bool:
    try:
        jsonschema.validate(args, WEATHER["schema"])
    except jsonschema.ValidationError:
        return False
    return True


@pytest.fixture(scope="module")
def claude(serve_url):
    return anthropic.Anthropic(base_url=f"{serve_url}/pd", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def oai(serve_url):
    return OpenAI(base_url=f"{serve_url}/pd/v1", api_key="unused", max_retries=0)


def anthropic_tools():
    return [{"name": t["name"], "description": t["description"], "input_schema": t["schema"]} for t in (WEATHER, CLOCK)]


def test_anthropic_forced_tool_round_trip(claude):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=200, messages=msgs, tools=anthropic_tools(),
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    calls = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use" and len(calls) == 1
    assert calls[0].name == "get_weather" and valid_weather(calls[0].input)
    msgs += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny"}]},
    ]
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=16, messages=msgs, tools=anthropic_tools()) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert final.usage.input_tokens + final.usage.cache_read_input_tokens > 0
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_interleaved_script_in_order(claude, stream):
    kwargs = dict(
        model="claude-sonnet-4-5", max_tokens=600, tools=anthropic_tools(),
        messages=[{"role": "user", "content": "weather then time"}],
        extra_body={"structured_outputs": {"regex": escape(SCRIPT)}},
    )
    if stream:
        with claude.messages.stream(**kwargs) as s:
            stops = []  # which block each content_block_stop closed, in stream order
            for event in s:
                if event.type == "content_block_stop":
                    stops.append(s.current_message_snapshot.content[event.index].type)
            message = s.get_final_message()
        assert stops == EXPECTED_ORDER
    else:
        message = claude.messages.create(**kwargs)
    assert [b.type for b in message.content] == EXPECTED_ORDER
    assert message.content[0].thinking == "check the weather" and message.content[0].signature
    assert message.content[1].input == {"city": "Paris", "days": 2}
    assert message.content[3].name == "get_time"
    assert message.content[4].text.strip() == "All done."


def responses_tools():
    fn = [{"type": "function", "name": t["name"], "description": t["description"], "parameters": t["schema"]} for t in (WEATHER, CLOCK)]
    return fn + [{"type": "web_search"}]  # Codex sends hosted tools too: they must be ignored, not rejected


def test_responses_forced_call_and_tool_output_turn(oai):
    first = oai.responses.create(
        model="gpt-5-codex", input="weather in Rome?", tools=responses_tools(), tool_choice="required",
        store=False, max_output_tokens=200, temperature=0,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name in ("get_weather", "get_time")
    args = json.loads(calls[0].arguments)
    assert valid_weather(args) if calls[0].name == "get_weather" else args == {}
    follow = [
        {"role": "user", "content": "weather in Rome?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": calls[0].name, "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
    ]
    events = list(oai.responses.create(model="gpt-5-codex", input=follow, tools=responses_tools(), store=False, max_output_tokens=16, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.usage.input_tokens > 0


def test_responses_interleaved_script_streaming(oai):
    events = list(oai.responses.create(
        model="gpt-5-codex", input="weather then time", tools=responses_tools(), store=False, stream=True,
        max_output_tokens=600, extra_body={"structured_outputs": {"regex": escape(SCRIPT)}},
    ))
    done = [e.item.type for e in events if e.type == "response.output_item.done"]
    assert done == ["reasoning", "function_call", "reasoning", "function_call", "message"]
    final = events[-1].response
    assert [o.type for o in final.output] == done
    assert json.loads(final.output[1].arguments) == {"city": "Paris", "days": 2}


def test_chat_forced_named_tool_and_stream_deltas(oai):
    tools = [{"type": "function", "function": {"name": t["name"], "description": t["description"], "parameters": t["schema"]}} for t in (WEATHER, CLOCK)]
    msgs = [{"role": "user", "content": "weather?"}]
    whole = oai.chat.completions.create(
        model="tiny", messages=msgs, tools=tools, tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=200, temperature=0,
    )
    call = whole.choices[0].message.tool_calls[0]
    assert whole.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert valid_weather(json.loads(call.function.arguments))
    stream = oai.chat.completions.create(
        model="tiny", messages=msgs, tools=tools, tool_choice="required", max_tokens=200, temperature=0, stream=True,
    )
    names, args = [], ""
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            if delta.function.name:
                names.append(delta.function.name)
            args += delta.function.arguments or ""
    assert len(names) == 1 and json.loads(args) is not None
    msgs += [whole.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    after = oai.chat.completions.create(model="tiny", messages=msgs, tools=tools, max_tokens=8)
    assert after.usage.prompt_tokens > whole.usage.prompt_tokens
