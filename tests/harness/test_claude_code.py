"""Claude Code (`claude -p`, from npm) completes a turn against kvyard's /v1/messages.

The model has random weights, so the words are noise and a tool call is unlikely to parse; what
is tested is the protocol: every request Claude Code sends (its real system prompt, ~20 tools,
adaptive thinking, betas, a mid-conversation ``system`` message) is accepted, the SSE stream is
one Claude Code consumes, and the CLI ends its turn with a result and no API error.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.harness.conftest import diagnose, isolated_env, requests_total, run_cli

# The first test here also starts /pd and /harness (5-12 min on 2 busy cores): more than the
# suite's 900 s default, which pytest-timeout counts from fixture setup.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]

# Everything Claude Code would fetch besides the model API: auto-update, telemetry (Statsig /
# Datadog), error reports (Sentry), feedback. NONESSENTIAL_TRAFFIC implies the other four; they
# are spelled out for older versions. The test proxy refuses whatever still tries.
QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
}


def _features(exchanges) -> str:
    models, betas, thinking, roles, tools, max_tokens = Counter(), set(), set(), set(), set(), set()
    for e in exchanges:
        b = e.json()
        models[b.get("model")] += 1
        betas.update(x.strip() for x in e.headers.get("anthropic-beta", "").split(",") if x.strip())
        thinking.add(json.dumps(b.get("thinking"), sort_keys=True))
        roles.update(m.get("role") for m in b.get("messages") or [])
        tools.add(len(b.get("tools") or []))
        max_tokens.add(b.get("max_tokens"))
    return (
        f"models {dict(models)}; tools per request {sorted(tools)}; max_tokens {sorted(max_tokens, key=str)}; "
        f"thinking {sorted(thinking)}; message roles {sorted(roles, key=str)}; betas {sorted(betas)}"
    )


def test_claude_code_turn(harness_bins, harness_url, harness_proxy, http, tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    before = requests_total(http, "messages")
    env = isolated_env(
        home,
        harness_proxy,
        ANTHROPIC_BASE_URL=f"{harness_proxy.url}/harness",
        ANTHROPIC_API_KEY="kvyard-test",
        **QUIET,
    )
    run = run_cli([str(harness_bins / "claude"), "-p", "say hi", "--output-format", "json", "--max-turns", "1"], env, work)
    context = f"{run.report()}\n{harness_proxy.report()}"

    reason = diagnose(run, harness_proxy, "/v1/messages", "messages")
    if reason:
        pytest.fail(f"{reason}\n{context}", pytrace=False)
    lines = [line for line in run.stdout.splitlines() if line.strip().startswith("{")]
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        pytest.fail(f"claude printed no result JSON although kvyard answered every request\n{context}", pytrace=False)
    # A random model may emit something that parses as a tool call: with --max-turns 1 the CLI
    # then stops with error_max_turns, which is a completed turn, not a protocol error.
    api_error = result.get("api_error_status") or result.get("terminal_reason") == "api_error" or str(result.get("result", "")).startswith("API Error")
    assert not api_error, f"claude reported an API error although kvyard answered 2xx: {result}\n{context}"
    assert result.get("subtype") in ("success", "error_max_turns"), f"unexpected result {result}\n{context}"
    assert run.returncode == 0 or result.get("subtype") == "error_max_turns", f"claude exited {run.returncode}\n{context}"

    messages = harness_proxy.api_exchanges("/v1/messages")
    counted = requests_total(http, "messages") - before
    assert counted >= len(messages), f"kvyard_requests_total{{api=messages,status=200}} grew by {counted}, expected {len(messages)}"
    print(f"\nclaude turn: {run.seconds:.1f}s, {len(messages)} /v1/messages request(s) "
          f"({', '.join(f'{e.seconds:.1f}s' for e in messages)}); result subtype {result.get('subtype')}, "
          f"stop_reason {result.get('stop_reason')}, usage {result.get('usage', {}).get('input_tokens')} in / "
          f"{result.get('usage', {}).get('output_tokens')} out")  # fmt: skip
    print(f"claude sent: {_features(messages)}")
    print(harness_proxy.report())
