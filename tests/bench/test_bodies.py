"""Request bodies per API, the live/scripted history rules, the stream folds and the
Prometheus selectors (pure functions, no server)."""

from __future__ import annotations

import json

import pytest

from kvyard.bench import prom
from kvyard.bench.bodies import (
    Prompt,
    chat_body,
    messages_body,
    responses_body,
    template_messages,
)
from kvyard.bench.conversation import (
    NO_OUTPUT,
    ORPHAN_PREFIX,
    bind_results,
    messages_for,
    reply_for_history,
)
from kvyard.bench.records import Message, Step, Tool, ToolCall
from kvyard.bench.streams import ChatFold, MessagesFold, SSEDecoder

BILL = "x-anthropic-billing-header: cc_version=2.1.332.abc; cc_entrypoint=cli; cch=0a1b2;"
TOOL = Tool(name="Bash", description="run", parameters={"type": "object", "properties": {"command": {"type": "string"}}})
CALL = ToolCall(id="toolu_1", name="Bash", arguments='{"command": "ls"}')
HISTORY = (
    Message(role="user", content="list files"),
    Message(role="assistant", content="", reasoning="I should run ls", tool_calls=(CALL,)),
    Message(role="tool", content="a.py b.py", tool_call_id="toolu_1"),
    Message(role="user", content="now explain"),
)
PROMPT = Prompt(system="You are a CLI.", messages=HISTORY, max_tokens=2000, tools=(TOOL,), billing=BILL, thinking=True, session_id="sess")


def test_chat_body():
    body = chat_body(PROMPT, "m")
    assert body["messages"][0] == {"role": "system", "content": BILL + "\nYou are a CLI."}
    assert body["messages"][2] == {"role": "assistant", "content": None, "reasoning_content": "I should run ls", "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}]}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "a.py b.py"}
    assert body["max_tokens"] == 2000 and body["stream"] and body["tools"][0]["function"]["parameters"] == TOOL.parameters


def test_messages_body_alternates_roles_and_splits_the_billing_block():
    body = messages_body(PROMPT, "m")
    assert body["system"][0] == {"type": "text", "text": BILL}
    assert body["system"][1]["text"] == "You are a CLI."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "I should run ls", "signature": ""},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.py b.py"},
        {"type": "text", "text": "now explain"},
    ]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1999}
    assert body["tools"] == [{"name": "Bash", "description": "run", "input_schema": TOOL.parameters}]


def test_responses_body():
    body = responses_body(PROMPT, "m")
    assert body["instructions"].startswith(BILL) and body["prompt_cache_key"] == "sess" and body["store"] is False
    assert [i["type"] for i in body["input"]] == ["message", "function_call", "function_call_output", "message"]


def test_template_messages_drop_the_billing_line_and_parse_arguments():
    msgs, tools = template_messages(PROMPT)
    assert msgs[0]["content"] == "You are a CLI."
    assert msgs[2]["tool_calls"][0]["function"]["arguments"] == {"command": "ls"}
    assert tools[0]["function"]["name"] == "Bash"
    assert template_messages(PROMPT, keep_billing=True)[0][0]["content"].startswith(BILL)


def byte_tokenizer():
    """A real transformers tokenizer with kvyard's test-model chat template and an untrained
    byte-level vocabulary (one token per byte: no training, so it builds instantly)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from kvyard.models.tokenizer import CHAT_TEMPLATE, CHAT_TOKENS, EOS_TOKEN

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHAT_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def test_real_chat_template_renders_a_growing_prefix():
    from kvyard.bench.runner import render_ids

    tok = byte_tokenizer()
    turn1 = Prompt(system="You are a CLI.", messages=HISTORY[:1], max_tokens=8, tools=(TOOL,), billing=BILL)
    turn2 = Prompt(system="You are a CLI.", messages=HISTORY[:3], max_tokens=8, tools=(TOOL,), billing=BILL.replace("0a1b2", "ffff0"))
    a, b = render_ids(tok, turn1, {}), render_ids(tok, turn2, {})
    header = len(b"<|im_start|>assistant\n") - len("<|im_start|>") + 1
    assert b[: len(a) - header] == a[: len(a) - header]  # all but the generation prompt
    text = tok.decode(b)
    # the template's own reasoning rule applies (kept after the last user message)
    assert "x-anthropic-billing-header" not in text and '"command": "ls"' in text and "I should run ls" in text


# -- conversation -------------------------------------------------------------------------------

SCRIPTED = Message(role="assistant", content="scripted", tool_calls=(CALL, ToolCall(id="toolu_2", name="Bash", arguments="{}")))
RESULTS = (Message(role="tool", content="r1", tool_call_id="toolu_1"), Message(role="tool", content="r2", tool_call_id="toolu_2"))


def test_scripted_reply_keeps_results_as_they_are():
    assert bind_results(RESULTS, SCRIPTED) == list(RESULTS)


def test_live_reply_without_calls_gets_results_as_user_text():
    live = Message(role="assistant", content="live text")
    assert bind_results(RESULTS, live) == [Message(role="user", content=ORPHAN_PREFIX + "r1"), Message(role="user", content=ORPHAN_PREFIX + "r2")]


def test_live_reply_with_more_calls_answers_every_call():
    live = Message(role="assistant", tool_calls=(ToolCall("L1", "Bash", "{}"), ToolCall("L2", "Bash", "{}"), ToolCall("L3", "Bash", "{}")))
    out = bind_results(RESULTS + (Message(role="user", content="next"),), live)
    assert [(m.role, m.content, m.tool_call_id) for m in out] == [("tool", "r1", "L1"), ("tool", "r2", "L2"), ("tool", NO_OUTPUT, "L3"), ("user", "next", "")]


def test_messages_for_fills_subagent_results_and_reset():
    step = Step(append=RESULTS, reply=SCRIPTED, max_tokens=1)
    history = [Message(role="user", content="go"), SCRIPTED]
    out = messages_for(history, step, ["sub one", "sub two"])
    assert [m.content for m in out[2:]] == ["sub one", "sub two"]
    reset = Step(append=(Message(role="user", content="task"),), reply=SCRIPTED, max_tokens=1, reset=True, summary_prefix="Summary: ")
    assert [m.content for m in messages_for(history, reset)] == ["Summary: scripted", "task"]
    assert reply_for_history(step, None, "live") is SCRIPTED
    assert reply_for_history(step, history[0], "scripted") is SCRIPTED


# -- streams ------------------------------------------------------------------------------------


def events(text: str):
    dec = SSEDecoder()
    out = [e for line in text.split("\n") if (e := dec.feed(line))]
    if tail := dec.flush():
        out.append(tail)
    return out


def test_sse_framing():
    text = ": comment\nevent: a\ndata: {\"x\":\ndata: 1}\n\ndata:plain\n\n\ndata: last"
    assert events(text) == [("a", '{"x":\n1}'), ("message", "plain"), ("message", "last")]


def test_chat_fold_tool_calls_usage_and_error():
    fold = ChatFold()
    chunks = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}], "prompt_token_ids": [1, 2, 3]},
        {"choices": [{"delta": {"reasoning_content": "hm", "reasoning": "hm"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "Bash", "arguments": '{"comm'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'and": 1}'}}]}}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 8}}},
    ]
    assert [fold.feed("message", json.dumps(c)) for c in chunks] == [False, True, True, True, False]
    fold.feed("message", "[DONE]")
    reply = fold.reply()
    assert fold.done and reply.reasoning == "hm" and reply.tool_calls == (ToolCall("c1", "Bash", '{"command": 1}'),)
    assert (fold.prompt_tokens, fold.cached_tokens, fold.output_tokens, fold.prompt_token_ids) == (9, 8, 4, [1, 2, 3])
    bad = ChatFold()
    bad.feed("message", '{"object": "error", "message": "too long"}')
    assert bad.error == "too long" and bad.done


def test_messages_fold_usage_adds_cache_reads():
    fold = MessagesFold()
    fold.feed("message_start", json.dumps({"type": "message_start", "message": {"usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 5}}}))
    fold.feed("message_delta", json.dumps({"type": "message_delta", "usage": {"output_tokens": 7}}))
    assert (fold.prompt_tokens, fold.cached_tokens, fold.output_tokens) == (105, 90, 7)
    no_cache = MessagesFold()
    no_cache.feed("message_start", json.dumps({"type": "message_start", "message": {"usage": {"input_tokens": 10}}}))
    assert no_cache.cached_tokens is None and no_cache.prompt_tokens == 10


# -- prometheus ---------------------------------------------------------------------------------

EXPOSITION = """# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 10.0
vllm:prefix_cache_hits_total{engine="1",model_name="m"} 5.0
vllm:prefix_cache_hits_created{engine="0",model_name="m"} 1.7e9
# TYPE kvyard_prefix_cache_hit_tokens_total counter
kvyard_prefix_cache_hit_tokens_total{pool="prefill"} 100.0
kvyard_prefix_cache_hit_tokens_total{pool="decode"} 3.0
"""


def test_prometheus_selectors():
    sel = ["vllm:prefix_cache_hits", 'kvyard_prefix_cache_hit_tokens_total{pool="prefill"}', "vllm:absent"]
    assert prom.select(EXPOSITION, sel) == {"vllm:prefix_cache_hits": 15.0, sel[1]: 100.0}
    assert prom.parse_selector('a:b{x="1", y="two"}') == ("a:b", {"x": "1", "y": "two"})
    assert prom.delta({"a": 1.0}, {"a": 4.0, "b": 2.0}) == {"a": 3.0, "b": 2.0}
    with pytest.raises(ValueError, match="bad metric selector"):
        prom.parse_selector("not a selector!")
