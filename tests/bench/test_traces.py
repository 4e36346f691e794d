"""Mooncake and vLLM multi-turn traces as workloads."""

from __future__ import annotations

import json

import pytest

from kvyard.bench.filler import CHARS_PER_TOKEN
from kvyard.bench.traces import block_text, mooncake, vllm_multi_turn

BLOCK_CHARS = 512 * CHARS_PER_TOKEN


@pytest.fixture
def trace(tmp_path):
    rows = [
        {"timestamp": 1000, "input_length": 1500, "output_length": 20, "hash_ids": [1, 2, 3]},
        {"timestamp": 1500, "input_length": 1100, "output_length": 7, "hash_ids": [1, 2, 9]},
        {"timestamp": 4000, "input_length": 2000, "output_length": 1, "hash_ids": [5, 6]},  # shorter than its length
        {"timestamp": 4200, "input_length": 300, "output_length": 3, "hash_ids": [1]},
    ]
    path = tmp_path / "mooncake.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def prompt(w, i):
    return w.sessions[i].steps[0].append[0].content


def test_equal_hash_ids_give_equal_prefix_text(trace):
    w = mooncake(trace)
    a, b, d = prompt(w, 0), prompt(w, 1), prompt(w, 3)
    assert a[: 2 * BLOCK_CHARS] == b[: 2 * BLOCK_CHARS]
    assert a[2 * BLOCK_CHARS : 2 * BLOCK_CHARS + 200] != b[2 * BLOCK_CHARS : 2 * BLOCK_CHARS + 200]
    assert a.startswith(d) and d == block_text(1)[: 300 * CHARS_PER_TOKEN]
    assert prompt(w, 2)[:BLOCK_CHARS] != a[:BLOCK_CHARS]


def test_lengths_arrivals_and_outputs(trace):
    w = mooncake(trace)
    assert [len(prompt(w, i)) // CHARS_PER_TOKEN for i in range(4)] == [1500, 1100, 2000, 300]
    assert [s.arrival_s for s in w.sessions] == [0.0, 0.5, 3.0, 3.2]
    assert [s.steps[0].max_tokens for s in w.sessions] == [20, 7, 1, 3]
    assert w.header.source == "mooncake" and w.header.concurrency == 0
    assert len(mooncake(trace, limit=2).sessions) == 2


def test_block_text_is_deterministic_and_sized():
    assert block_text(42) == block_text(42) and len(block_text(42)) == BLOCK_CHARS
    assert block_text(42) != block_text(43) and block_text(42, seed=1) != block_text(42)


def test_not_a_mooncake_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 1}\n')
    with pytest.raises(ValueError, match="missing hash_ids, input_length, output_length"):
        mooncake(bad)


def test_vllm_multi_turn(tmp_path):
    convs = [
        {"id": "c1", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "x" * 400},
            {"role": "user", "content": "more"},
        ]},
        {"id": "c2", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "ok"}]},
        {"id": "empty", "messages": []},
    ]
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(convs))
    w = vllm_multi_turn(path, output_tokens=33, max_output_tokens=50, rate=1.0, concurrency=2)
    assert [s.id for s in w.sessions] == ["c1", "c2"]
    c1, c2 = w.sessions
    assert w.system_text(c1) == "Be brief." and w.system_text(c2) == ""
    assert [st.append[0].content for st in c1.steps] == ["hi", "more"]
    assert c1.steps[0].reply.content == "x" * 400 and c1.steps[0].max_tokens == 50  # 100 approx tokens, capped
    assert c1.steps[1].max_tokens == 33
    assert [m.content for m in c2.steps[0].append] == ["a", "b"] and c2.steps[0].max_tokens == 1
    assert c1.arrival_s == 0 and c2.arrival_s > 0 and w.header.concurrency == 2
