"""The harness-like generator: determinism, the billing line, the shared prefix, subagents,
compaction, arrivals, and the workload file round trip."""

from __future__ import annotations

import re

import msgspec
import pytest
from kvyard.policies.sanitizer import BILLING_HEADER_REGEX

from kvyard.bench.bodies import Prompt, chat_body, messages_body
from kvyard.bench.conversation import messages_for
from kvyard.bench.records import read_workload, write_workload
from kvyard.bench.workload import (
    CONTINUATION_PREFIX,
    HarnessParams,
    generate,
    iter_sessions,
)

SMALL = {
    "sessions": 5, "system_tokens": 400, "tools_tokens": 300, "n_tools": 6, "tasks": 3, "tool_loops": (1, 3),
    "user_tokens": 20, "tool_result_tokens": 40, "subagent_prob": 0.5, "compact_at_tokens": 300, "summary_tokens": 30,
}  # fmt: skip
BILLING = re.compile(r"^x-anthropic-billing-header: cc_version=2\.1\.332\.([0-9a-f]{3}); cc_entrypoint=cli; cch=([0-9a-f]{5});$")


@pytest.fixture(scope="module")
def workload():
    return generate(HarnessParams(**SMALL))


def all_steps(w):
    return [(s, st) for s in iter_sessions(w.sessions) for st in s.steps]


def test_same_params_same_bytes_other_seed_other_text(workload):
    enc = msgspec.json.encode
    again = generate(HarnessParams(**SMALL))
    assert enc(again.header) == enc(workload.header) and enc(again.sessions) == enc(workload.sessions)
    other = generate(HarnessParams(**{**SMALL, "seed": 1}))
    assert other.header.systems["main"] != workload.header.systems["main"]


def test_billing_line_varies_per_request_and_per_session(workload):
    lines = [(s, st.billing) for s, st in all_steps(workload)]
    assert all(BILLING.match(b) for _, b in lines)
    assert len({b for _, b in lines}) == len(lines), "cch must change on every request"
    versions = {}
    for s, b in lines:
        top = s.parent or s.id
        versions.setdefault(top, set()).add(BILLING.match(b).group(1))
    assert all(len(v) == 1 for v in versions.values()), "one cc_version per session (subagents share it)"
    assert len({next(iter(v)) for v in versions.values()}) > 1, "sessions differ in cc_version"
    # kvyard's sanitizer recognizes the line as it leads the chat system message
    s, st = all_steps(workload)[0]
    system = chat_body(Prompt(system=workload.system_text(s), messages=(), max_tokens=1, billing=st.billing), "m")["messages"][0]["content"]
    assert re.match(BILLING_HEADER_REGEX, system)


def test_billing_off_changes_nothing_else():
    on, off = generate(HarnessParams(**SMALL)), generate(HarnessParams(**SMALL, billing=False))
    assert all(st.billing == "" for _, st in all_steps(off))
    strip = lambda w: [msgspec.structs.replace(st, billing="", subagents=()) for _, st in all_steps(w)]
    assert strip(on) == strip(off)


def test_shared_prefix_identical_across_sessions_and_subagents(workload):
    everything = list(iter_sessions(workload.sessions))
    assert any(s.parent for s in everything), "expected subagents at subagent_prob=0.5"
    firsts = set()
    for s in everything:
        prompt = Prompt(system=workload.system_text(s), messages=tuple(s.steps[0].append), max_tokens=8, tools=workload.tools_of(s), billing=s.steps[0].billing)
        chat = chat_body(prompt, "m")
        anth = messages_body(prompt, "m")
        # without the billing line, the system prompt and tools are the same bytes everywhere
        firsts.add(msgspec.json.encode([chat["messages"][0]["content"].split("\n", 1)[1], chat["tools"], anth["system"][1:], anth["tools"]]))
    assert len(firsts) == 1
    assert workload.tools_of(everything[0])[0].name == "Task"


def test_subagents_share_system_but_start_differently(workload):
    for s in workload.sessions:
        for i, st in enumerate(s.steps):
            for sub in st.subagents:
                assert sub.parent == s.id and sub.session_id == s.session_id and sub.system == s.system and sub.tools == s.tools
                assert sub.steps[0].append[0].content != s.steps[0].append[0].content
                assert sub.steps[0].append[0].content.startswith("Subagent task:")
            if st.subagents:
                calls = s.steps[i - 1].reply.tool_calls
                assert [c.name for c in calls] == ["Task"] * len(st.subagents)
                assert [msgspec.json.decode(c.arguments)["prompt"] for c in calls] == [sub.steps[0].append[0].content for sub in st.subagents]
                assert [m.content for m in st.append] == [sub.steps[-1].reply.content for sub in st.subagents]


def test_tool_loops_answer_every_call(workload):
    for s in iter_sessions(workload.sessions):
        for prev, st in zip(s.steps, s.steps[1:]):
            if prev.reply.tool_calls:
                assert [m.tool_call_id for m in st.append] == [c.id for c in prev.reply.tool_calls]
                assert prev.reply.reasoning
            else:
                assert [m.role for m in st.append] == ["user"]


def test_compaction_resets_history_to_the_summary(workload):
    compacted = [(s, i) for s in workload.sessions for i, st in enumerate(s.steps) if st.reset]
    assert compacted, "expected compaction at compact_at_tokens=300"
    for s, i in compacted:
        assert s.steps[i - 1].kind == "summarize" and s.steps[i].kind == "compacted"
        history = []
        for st in s.steps[:i]:
            history = messages_for(history, st) + [st.reply]
        sent = messages_for(history, s.steps[i])
        assert sent[0].content == CONTINUATION_PREFIX + s.steps[i - 1].reply.content
        assert len(sent) == 1 + len(s.steps[i].append) < len(history)


def test_poisson_arrivals_and_file_round_trip(tmp_path):
    w = generate(HarnessParams(**{**SMALL, "rate": 2.0, "sessions": 40, "subagent_prob": 0.0}))
    times = [s.arrival_s for s in w.sessions]
    assert times[0] == 0 and times == sorted(times) and 5 < times[-1] < 60  # mean gap 0.5 s
    path = tmp_path / "w.jsonl"
    assert write_workload(path, w) == 40
    assert read_workload(path) == w


def test_bad_params_say_what_to_fix():
    with pytest.raises(ValueError, match="tool_loops"):
        HarnessParams(tool_loops=(3, 1))
