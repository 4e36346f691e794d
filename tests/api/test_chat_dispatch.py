"""Chat Completions streaming tool dispatch: with dispatch asked for, a complete call goes out as
`event: tool_call_dispatch` in the same step as its closing delimiter; without it, nothing extra."""

import json

from kvyard.api.openai_chat import ChatRequest
from kvyard.api.streams import ChatExchange
from kvyard.parsing.registry import get_parser


def frames_per_feed(dispatch: bool, chunks: list[str]) -> list[list[bytes]]:
    exchange = ChatExchange(ChatRequest(messages=[], stream=True), "m", dispatch)
    parser = get_parser("qwen3")(tool_names={"ls", "cat"})
    return [[f for e in parser.feed(chunk) for f in exchange.frames(e)] for chunk in chunks]


CHUNKS = ['<tool_call>\n{"name": "ls", "arguments": {"path": "."}}\n</tool', '_call>\n', '<tool_call>\n{"name": "cat", "arguments": {}}\n</tool_call>', "done"]


def test_dispatch_event_at_the_closing_chunk():
    steps = frames_per_feed(True, CHUNKS)
    dispatched = [[f for f in step if f.startswith(b"event: tool_call_dispatch")] for step in steps]
    assert [len(d) for d in dispatched] == [0, 1, 1, 0]
    first = json.loads(dispatched[1][0].split(b"data: ", 1)[1])
    assert first["choice_index"] == 0
    assert first["tool_call"]["function"] == {"name": "ls", "arguments": '{"path": "."}'}
    assert json.loads(dispatched[2][0].split(b"data: ", 1)[1])["tool_call"]["index"] == 1


def test_no_dispatch_events_unless_asked():
    assert not any(f.startswith(b"event:") for step in frames_per_feed(False, CHUNKS) for f in step)
