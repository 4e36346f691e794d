"""Prompt stability end to end on real engines (runs before test_pd, which kills prefill): the billing-line sanitizer keeps Claude Code's
cache, and a tool loop's turns reuse the previous turn token for token (replay policy + exact
history), or stop reusing exactly where the `drop` policy changes the prompt."""

from __future__ import annotations

import pytest

from kvyard.frontend.forcing import escape
from tests.conftest import MODEL_CACHE, TINY_QWEN3
from tests.engine_support import app_config, deploy

pytestmark = pytest.mark.engine
BLOCK = 32
SYSTEM = "You are a coding agent. Follow the repository conventions and explain briefly. " * 30  # ~1.1k tokens
LONG_SYSTEM = SYSTEM * 2  # ~2.2k tokens: a partial last block stays under 2% of a turn


@pytest.fixture(scope="module")
def agg_url(serve_url):
    """One aggregated engine with a 4k context (it caches prompt and output alike)."""
    from ray import serve

    from kvyard.models import build_model

    model = build_model("random", MODEL_CACHE / "tiny-qwen3-4k", **{**TINY_QWEN3, "max_model_len": 4096})
    cfg = app_config(model, "aggregated")
    cfg["model"]["max_model_len"] = 4096
    deploy("stab", cfg)
    yield "/stab"
    serve.delete("stab")


def test_billing_line_does_not_break_the_cache(http):
    def ask(billing: str):
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 4,
            "system": [{"type": "text", "text": billing}, {"type": "text", "text": SYSTEM}],
            "messages": [{"role": "user", "content": "List the files."}],
        }
        resp = http.post("/pd/v1/messages", json=body, headers={"x-claude-code-session-id": "billing-1"})
        assert resp.status_code == 200, resp.text
        return resp.json()["usage"]

    ask("x-anthropic-billing-header: cc_version=2.1.197.c40; cc_entrypoint=sdk-cli; cch=1a2b3;")
    usage = ask("x-anthropic-billing-header: cc_version=2.1.197.f9e; cc_entrypoint=sdk-cli; cch=9f8e7;")
    prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
    assert usage["cache_read_input_tokens"] >= 0.95 * prompt, usage


def lcp(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tool_loop(http, url: str, policy: str, turns: int = 5):
    """Each turn the engine must answer `<think>…</think>` + a tool call; the tool result follows."""
    tools = [{"type": "function", "function": {"name": "run", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}}]
    messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "Fix the failing test."}]
    history = []
    for turn in range(turns):
        script = f'<think>step {turn}: inspect</think>\n\n<tool_call>\n{{"name": "run", "arguments": {{"cmd": "ls {turn}"}}}}\n</tool_call>'
        resp = http.post(f"{url}/v1/chat/completions", json={
            "model": "tiny", "messages": messages, "tools": tools, "max_tokens": 200, "return_token_ids": True,
            "chat_template_kwargs": {"kvyard_replay": policy}, "structured_outputs": {"regex": escape(script)},
        })
        assert resp.status_code == 200, resp.text
        body = resp.json()
        msg = body["choices"][0]["message"]
        assert msg["tool_calls"] and msg["reasoning_content"] == f"step {turn}: inspect"
        history.append((body["prompt_token_ids"], body["choices"][0]["token_ids"], body["usage"]["prompt_tokens_details"]["cached_tokens"]))
        messages.append({k: msg[k] for k in ("role", "content", "tool_calls", "reasoning_content")})
        messages.append({"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": f"output {turn}"})
    return history


def test_keep_policy_reuses_previous_turn_token_for_token(http, agg_url):
    history = tool_loop(http, agg_url, "keep_all")
    for (prev_prompt, prev_out, _), (prompt, _, cached) in zip(history, history[1:]):
        previous = prev_prompt + prev_out
        assert prompt[: len(previous)] == previous  # turn N+1 starts with turn N's exact tokens
        assert cached >= 0.98 * len(previous), (cached, len(previous))


def test_drop_policy_reuse_ends_where_reasoning_was_dropped(http, agg_url):
    history = tool_loop(http, agg_url, "drop")
    for (prev_prompt, prev_out, _), (prompt, _, cached) in zip(history, history[1:]):
        shared = lcp(prompt, prev_prompt + prev_out)
        assert shared < len(prev_prompt) + len(prev_out)  # the dropped reasoning changed the prompt
        assert prompt[shared:] and shared >= len(prev_prompt) - BLOCK  # ...inside the last assistant turn
        assert shared // BLOCK * BLOCK - BLOCK <= cached <= shared, (cached, shared)
