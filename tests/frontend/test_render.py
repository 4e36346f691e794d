"""Rendering a neutral Conversation through a real chat template (the tiny Qwen3-style model's)."""

import pytest

from kvyard.conversation import Conversation, Message, ReasoningPart, TextPart, Tool, ToolCallPart, ToolResultPart
from kvyard.errors import InvalidRequest
from kvyard.frontend.render import render_prompt, to_template_messages


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


CONV = Conversation(
    system="You are terse.",
    messages=[
        Message("user", [TextPart("list files")]),
        Message("assistant", [ReasoningPart("use ls"), ToolCallPart(id="c1", name="ls", arguments={"path": "."})]),
        Message("tool", [ToolResultPart(tool_call_id="c1", content="a.txt")]),
    ],
    tools=[Tool(name="ls", description="list", parameters={"type": "object", "properties": {"path": {"type": "string"}}})],
)


def test_template_messages_shape():
    msgs = to_template_messages(CONV)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[2]["tool_calls"][0]["function"] == {"name": "ls", "arguments": {"path": "."}}
    assert msgs[2]["reasoning_content"] == "use ls"
    assert msgs[3] == {"role": "tool", "tool_call_id": "c1", "content": "a.txt"}


def test_render_prompt_through_real_template(tokenizer):
    ids = render_prompt(tokenizer, CONV)
    text = tokenizer.decode(ids)
    # the system prompt lists the tools (mentioning <tool_call>); the replayed call comes after the user turn
    assert text.index("You are terse.") < text.index("list files") < text.rindex("<tool_call>") < text.index("a.txt")
    assert '"ls"' in text and text.rstrip().endswith("assistant")
    assert tokenizer.convert_tokens_to_ids("<tool_call>") in ids  # special tokens are single ids, not re-split


def test_empty_conversation_is_a_client_error(tokenizer):
    with pytest.raises(InvalidRequest):
        render_prompt(tokenizer, Conversation())
