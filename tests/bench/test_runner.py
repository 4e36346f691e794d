"""The runner against ``FakeSSEServer`` (a loopback fake that only speaks the streaming grammars):
timing, usage, live-reply history, session headers, errors, concurrency, metrics, ideal reuse."""

from __future__ import annotations

import itertools
import json

import pytest

from kvyard.bench.records import (
    Message,
    Session,
    Step,
    Tool,
    ToolCall,
    Workload,
    WorkloadHeader,
)
from kvyard.bench.runner import RunConfig, run
from tests.bench.fake_sse_server import CACHED_TOKENS, PROMPT_TOKENS, FakeSSEServer

DELAY = 0.05
TOOLS = (Tool(name="Bash", description="run a command", parameters={"type": "object", "properties": {"command": {"type": "string"}}}),)


def step(user: str, *, calls: int = 0, kind: str = "task") -> Step:
    tool_calls = tuple(ToolCall(id=f"toolu_script_{user[:4]}_{i}", name="Bash", arguments='{"command": "ls"}') for i in range(calls))
    return Step(
        append=(Message(role="user", content=user),),
        reply=Message(role="assistant", content=f"scripted answer to {user}", reasoning="scripted thought", tool_calls=tool_calls),
        max_tokens=16,
        kind=kind,
        billing=f"x-anthropic-billing-header: cc_version=2.1.332.abc; cc_entrypoint=cli; cch={abs(hash(user)) % 16**5:05x};",
    )


def tool_step(prev: Step) -> Step:
    results = tuple(Message(role="tool", content=f"output {i}", tool_call_id=c.id) for i, c in enumerate(prev.reply.tool_calls))
    return Step(append=results, reply=Message(role="assistant", content="done"), max_tokens=16, kind="tool")


def workload(*sessions: list[Step], concurrency: int = 0, thinking: bool = True) -> Workload:
    header = WorkloadHeader(source="test", concurrency=concurrency, thinking=thinking, systems={"main": "You are a test system. " * 20}, toolsets={"main": TOOLS})
    return Workload(
        header=header,
        sessions=tuple(Session(id=f"s{i}", session_id=f"sess-{i}", steps=tuple(steps), system="main", tools="main") for i, steps in enumerate(sessions)),
    )


@pytest.fixture
def fake():
    with FakeSSEServer(first_delay=DELAY, gap=0.005, deltas=3) as server:
        yield server


async def test_chat_stream_timing_usage_and_live_history(fake):
    w = workload([step("first question"), step("second question")])
    result = await run(w, RunConfig(url=fake.url + "/v1", api="chat", label="fake"))
    recs = result.records
    assert [r.turn for r in recs] == [0, 1] and not any(r.error for r in recs)
    for r in recs:
        assert r.ttft_s is not None and r.ttft_s >= DELAY
        assert r.e2e_s > r.ttft_s
        assert len(r.itl_s) == 3  # reasoning, then 3 text deltas: 4 output events
        assert (r.prompt_tokens, r.cached_tokens, r.output_tokens) == (PROMPT_TOKENS, CACHED_TOKENS, 4)
    assert result.header.model == "fake-model" and result.header.url == fake.url
    body0, body1 = fake.requests[0]["body"], fake.requests[1]["body"]
    assert body0["stream"] is True and body0["stream_options"] == {"include_usage": True}
    assert body0["messages"][0]["content"].startswith("x-anthropic-billing-header: cc_version=2.1.332.abc;")
    assert body0["chat_template_kwargs"] == {"enable_thinking": True} and body0["tools"][0]["function"]["name"] == "Bash"
    # the live reply (not the scripted one) is what the second request carries
    assistant = body1["messages"][2]
    assert assistant["role"] == "assistant" and assistant["content"].startswith("fake reply 1 part 0.")
    assert assistant["reasoning_content"] == "thinking 1"
    assert fake.requests[0]["headers"]["x-session-id"] == "sess-0"


async def test_messages_stream_signature_and_live_tool_ids(fake):
    first = step("TOOLCALL please", calls=1)
    w = workload([first, tool_step(first)])
    result = await run(w, RunConfig(url=fake.url, api="messages", model="claude-x"))
    assert not any(r.error for r in result.records)
    assert all(r.cached_tokens == CACHED_TOKENS and r.prompt_tokens == PROMPT_TOKENS for r in result.records)
    assert all(r.ttft_s >= DELAY for r in result.records)
    req0, req1 = fake.requests
    assert req0["headers"]["x-claude-code-session-id"] == "sess-0" and req0["headers"]["anthropic-version"]
    assert [b["type"] for b in req0["body"]["system"]] == ["text", "text"]
    assert req0["body"]["system"][0]["text"].startswith("x-anthropic-billing-header:")
    assert req0["body"]["thinking"] == {"type": "adaptive"}
    assistant, user = req1["body"]["messages"][1], req1["body"]["messages"][2]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == {"type": "thinking", "thinking": "thinking 1", "signature": "sig1"}
    assert assistant["content"][2] == {"type": "tool_use", "id": "toolu_live_1", "name": "Bash", "input": {"command": "ls"}}
    # the scripted result is bound to the live call id
    assert user["role"] == "user" and user["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_live_1", "content": "output 0"}


async def test_errors_are_recorded_and_the_run_goes_on(fake):
    w = workload(
        [step("FAIL500 now"), step("after the 500")],
        [step("MIDSTREAM please"), step("after the broken stream")],
        [step("fine")],
    )
    result = await run(w, RunConfig(url=fake.url, api="chat"))
    by = {(r.session, r.turn): r for r in result.records}
    assert len(result.records) == 5 and result.footer.errors == 2
    assert by[("s0", 0)].status == 500 and "HTTP 500" in by[("s0", 0)].error and by[("s0", 0)].ttft_s is None
    assert "fake mid-stream failure" in by[("s1", 0)].error and by[("s1", 0)].ttft_s is not None
    assert not by[("s0", 1)].error and not by[("s1", 1)].error and not by[("s2", 0)].error
    # a failed request leaves the scripted reply in the history
    after = next(r["body"] for r in fake.requests if "after the 500" in json.dumps(r["body"]["messages"][-1]))
    assert after["messages"][2]["content"] == "scripted answer to FAIL500 now"


async def test_messages_mid_stream_error_event(fake):
    result = await run(workload([step("MIDSTREAM")]), RunConfig(url=fake.url, api="messages", model="m"))
    (rec,) = result.records
    assert rec.error == "fake mid-stream failure" and rec.ttft_s >= DELAY


async def test_responses_api(fake):
    result = await run(workload([step("hello"), step("again")]), RunConfig(url=fake.url, api="responses", model="m"))
    assert [r.cached_tokens for r in result.records] == [CACHED_TOKENS, CACHED_TOKENS]
    body = fake.requests[1]["body"]
    assert body["prompt_cache_key"] == "sess-0" and body["instructions"].startswith("x-anthropic-billing-header")
    assert body["input"][1]["content"][0]["text"].startswith("fake reply 1")


async def test_concurrency_cap_serializes_sessions(fake):
    w = workload([step("a1"), step("a2")], [step("b1"), step("b2")], [step("c1")], concurrency=1)
    result = await run(w, RunConfig(url=fake.url, api="chat", model="m"))
    spans: dict[str, list[float]] = {}
    for r in result.records:
        lo, hi = spans.get(r.session, [r.t_send_s, 0.0])
        spans[r.session] = [min(lo, r.t_send_s), max(hi, r.t_send_s + r.e2e_s)]
    ordered = sorted(spans.values())
    assert all(a[1] <= b[0] + 1e-3 for a, b in itertools.pairwise(ordered))


async def test_metrics_scrape_and_server_ideal(fake):
    w = workload([step("one"), step("two"), step("three")])
    cfg = RunConfig(url=fake.url, api="chat", model="m", metrics_url=fake.url + "/metrics", return_token_ids=True, block_size=4)
    result = await run(w, cfg)
    f = result.footer
    assert f.metrics_after["vllm:prefix_cache_hits"] - f.metrics_before["vllm:prefix_cache_hits"] == 3 * CACHED_TOKENS
    assert f.metrics_after["vllm:prefix_cache_queries"] - f.metrics_before["vllm:prefix_cache_queries"] == 3 * PROMPT_TOKENS
    assert result.header.ideal_source == "server"
    first, second, _ = result.records
    assert first.ideal_cached_tokens == 0
    # the fake's "token ids" are code points: turn 2 repeats turn 1's system text (after a
    # billing line of the same length) only from where the billing lines differ
    assert second.ideal_prompt_tokens > first.ideal_prompt_tokens
    assert 0 <= second.ideal_cached_tokens < second.ideal_prompt_tokens


class CharTokenizer:
    """Duck-typed tokenizer: one token per character of a plain rendering."""

    def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=True, **kwargs):
        head, rest = messages[:1], messages[1:]
        render = lambda ms: "".join(f"<{m['role']}>{m.get('content') or ''}{m.get('reasoning_content', '')}" for m in ms)
        return render(head) + json.dumps(tools) + render(rest) + "<assistant>"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


async def test_tokenizer_ideal_ignores_the_billing_line(fake):
    w = workload([step("one"), step("two")], [step("three")], concurrency=1)
    result = await run(w, RunConfig(url=fake.url, api="chat", model="m", tokenizer=CharTokenizer(), block_size=8))
    assert result.header.ideal_source == "tokenizer"
    by = {(r.session, r.turn): r for r in result.records}
    assert by[("s0", 0)].ideal_cached_tokens == 0
    # the system prompt is shared once the billing line is out of the ideal's prompts
    system_len = len("<system>" + "You are a test system. " * 20)
    assert by[("s1", 0)].ideal_cached_tokens >= system_len // 8 * 8
    # turn 2 of s0 shares all of turn 1's prompt (the live reply follows it), block-aligned
    assert by[("s0", 1)].ideal_cached_tokens == (by[("s0", 0)].ideal_prompt_tokens - 1) // 8 * 8


async def test_scripted_replies_keep_the_workload_text(fake):
    await run(workload([step("q1"), step("q2")]), RunConfig(url=fake.url, api="chat", model="m", replies="scripted"))
    assert fake.requests[1]["body"]["messages"][2]["content"] == "scripted answer to q1"


async def test_time_budget_stops_sending_and_counts_what_was_not_sent(fake):
    w = workload([step("a1"), step("a2")], [step("b1"), step("b2")], [step("c1"), step("c2")], concurrency=1)
    result = await run(w, RunConfig(url=fake.url, api="chat", model="m", budget_s=0.1))
    f = result.footer
    assert 1 <= f.requests < 6 and f.unsent == 6 - f.requests
    assert all(r.t_send_s < 0.1 for r in result.records)  # nothing starts after the budget; in-flight ones finish
    assert all(not r.error for r in result.records)
    assert f.budget_s == 0.1


async def test_a_run_within_its_budget_sends_everything(fake):
    result = await run(workload([step("a1"), step("a2")]), RunConfig(url=fake.url, api="chat", model="m", budget_s=60))
    assert result.footer.requests == 2 and result.footer.unsent == 0
