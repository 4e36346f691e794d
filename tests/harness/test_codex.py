"""Codex CLI (`codex exec`, from npm) completes a turn against kvyard's /v1/responses.

Codex speaks only the Responses API; a custom provider in ``$CODEX_HOME/config.toml`` with
``wire_api = "responses"`` points it at kvyard (it ignores ``OPENAI_BASE_URL`` for that). Its
requests carry ``developer`` items, ``prompt_cache_key``, ``include: [reasoning.encrypted_content]``,
function tools plus non-function ones (``web_search``, ``namespace``): kvyard must accept them all.
With random weights the words are noise; the test checks the turn completes (``turn.completed``
in ``--json`` events) with no error event.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.harness.conftest import diagnose, isolated_env, requests_total, run_cli

# The first test here also starts /pd and /harness (5-12 min on 2 busy cores): more than the
# suite's 900 s default, which pytest-timeout counts from fixture setup.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]

# features.plugins = false: otherwise Codex syncs its curated plugin list at startup from
# github.com / api.github.com / chatgpt.com (harmless when refused, but it is internet traffic).
# Retries off: a rejected request fails the turn at once, with kvyard's error in the output.
CONFIG = """\
model = "gpt-5-codex"
model_provider = "kvyard"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[features]
plugins = false

[analytics]
enabled = false

[model_providers.kvyard]
name = "kvyard"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "KVYARD_API_KEY"
request_max_retries = 0
stream_max_retries = 0
"""


def _features(exchanges) -> str:
    models, tool_types, item_types, keys = Counter(), Counter(), Counter(), set()
    for e in exchanges:
        b = e.json()
        models[b.get("model")] += 1
        keys.update(b)
        for t in b.get("tools") or []:
            tool_types[t.get("type")] += 1
        for item in b.get("input") or []:
            item_types[f"{item.get('type')}:{item.get('role', '')}"] += 1
    heads = sorted({k for e in exchanges for k in e.headers if k.lower() in ("session-id", "thread-id", "x-codex-beta-features", "originator")})
    return f"models {dict(models)}; tool types {dict(tool_types)}; input items {dict(item_types)}; fields {sorted(keys)}; headers {heads}"


def test_codex_turn(harness_bins, harness_url, harness_proxy, http, tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    work.mkdir()
    (codex_home / "config.toml").write_text(CONFIG.format(base_url=f"{harness_proxy.url}/harness"))
    before = requests_total(http, "responses")
    env = isolated_env(home, harness_proxy, CODEX_HOME=str(codex_home), KVYARD_API_KEY="kvyard-test")
    argv = [str(harness_bins / "codex"), "exec", "--json", "--skip-git-repo-check", "-C", str(work), "say hi"]
    run = run_cli(argv, env, work)
    context = f"{run.report()}\n{harness_proxy.report()}"

    reason = diagnose(run, harness_proxy, "/v1/responses", "responses")
    if reason:
        pytest.fail(f"{reason}\n{context}", pytrace=False)
    events = []
    for line in run.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    kinds = [e.get("type") for e in events]
    errors = [e for e in events if e.get("type") in ("error", "turn.failed")]
    if any("max_output_tokens" in json.dumps(e) for e in errors):
        pytest.fail(
            "kvyard ended the reply at its output limit (Codex sends no max_output_tokens, so kvyard used "
            "frontend.default_max_tokens) and Codex fails a turn whose response is 'incomplete': "
            f"{errors}\n{context}",
            pytrace=False,
        )
    assert not errors, f"codex reported errors although kvyard answered 2xx: {errors}\n{context}"
    assert "turn.completed" in kinds, f"codex never completed its turn (events: {kinds})\n{context}"
    assert run.returncode == 0, f"codex exited {run.returncode}\n{context}"

    calls = harness_proxy.api_exchanges("/v1/responses")
    counted = requests_total(http, "responses") - before
    assert counted >= len(calls), f"kvyard_requests_total{{api=responses,status=200}} grew by {counted}, expected {len(calls)}"
    usage = next((e.get("usage") for e in events if e.get("type") == "turn.completed"), None)
    print(f"\ncodex turn: {run.seconds:.1f}s, {len(calls)} /v1/responses request(s) "
          f"({', '.join(f'{e.seconds:.1f}s' for e in calls)}); events {kinds}; usage {usage}")  # fmt: skip
    print(f"codex sent: {_features(calls)}")
    print(harness_proxy.report())
