"""Smoke test of the parser benchmark (``benchmarks/parsers.py``): its case table, kvyard side only.

Every family × case × chunking of the benchmark runs through kvyard's parser (quick mode, no
timing, no vLLM import) and must keep the script's interleaving and recover every tool call. The
judge itself is checked against outputs shaped like the failures the benchmark reports for vLLM,
so a vacuous judge would fail here too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kvyard.parsing import parser_names

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "parsers.py"


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("kvyard_benchmark_parsers", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the body runs
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()
CELLS_IDS = [(f.name, case, k) for f in bench.FAMILIES for case in bench.CASES for k in bench.CHUNKINGS]


@pytest.fixture(scope="module")
def cells():
    run = bench.run_benchmark(quick=True, with_vllm=False, samples=0)
    return {(c.family, c.case, c.chunking): c for c in run.cells}


def test_case_table_covers_every_family():
    assert {f.name for f in bench.FAMILIES} == set(parser_names()) - {"plain"}
    shapes = {name: bench.signature(bench.expected_segments(case)) for name, case in bench.CASES.items()}
    assert shapes["interleaved"] == "R T(read_file) R T(run_shell) R X"
    assert shapes["parallel calls"] == "R T(get_weather) T(get_weather)"


@pytest.mark.parametrize(("family", "case", "chunking"), CELLS_IDS, ids=["/".join(i) for i in CELLS_IDS])
def test_kvyard_keeps_order_and_calls(cells, family, case, chunking):
    cell = cells[(family, case, chunking)]
    verdict = cell.verdict
    assert verdict.order, f"{family} {case} {chunking}: {verdict.note}"
    assert verdict.calls_ok == verdict.calls_total, f"{family} {case} {chunking}: {verdict.note}"
    assert cell.chunks >= 1


def _interleaved():
    case = bench.CASES["interleaved"]
    return case, bench.expected_segments(case)


def test_judge_accepts_the_script():
    case, expected = _interleaved()
    verdict = bench.judge(case, bench.Result(list(expected)))
    assert verdict.order and verdict.calls_ok == verdict.calls_total == 2 and not verdict.note


def test_judge_rejects_resumed_reasoning_as_text():
    case, expected = _interleaved()
    got = [("text", s[1]) if s[0] == "reasoning" and i > 0 else s for i, s in enumerate(expected)]
    verdict = bench.judge(case, bench.Result(got))
    assert not verdict.order
    assert verdict.calls_ok == 2
    assert "R2 → text" in verdict.note


def test_judge_rejects_dropped_segments_and_calls():
    case, expected = _interleaved()
    verdict = bench.judge(case, bench.Result(expected[:2]))
    assert not verdict.order
    assert verdict.calls_ok == 1
    assert "R2 lost" in verdict.note and "T2 lost" in verdict.note
    assert bench.judge(case, bench.Result([])).note == "nothing returned"


def test_judge_rejects_wrong_arguments_and_markup():
    case, expected = _interleaved()
    got = [("tool", s[1], {**s[2], "extra": 1}) if s[0] == "tool" else s for s in expected]
    got[-1] = ("text", "<think>" + got[-1][1])
    verdict = bench.judge(case, bench.Result(got))
    assert verdict.calls_ok == 0
    assert not verdict.order
    assert "markup in output: `<think>`" in verdict.note
    broken = bench.judge(case, bench.Result([*expected[:1], ("tool", "read_file", '{"path": "src/cl')]))
    assert "arguments not JSON" in broken.note


def test_vllm_deltas_become_segments_in_arrival_order():
    def delta(reasoning=None, content=None, calls=()):
        tool_calls = [
            SimpleNamespace(index=i, function=SimpleNamespace(name=name, arguments=args)) for i, name, args in calls
        ]
        return SimpleNamespace(reasoning=reasoning, content=content, tool_calls=tool_calls)

    messages = [
        delta(reasoning="think"),
        None,
        delta(calls=[(0, "read_file", None)]),
        delta(calls=[(0, None, '{"path": ')]),
        delta(content="\n\n", calls=[(0, None, '"a"}')]),
        delta(reasoning="more", content="done"),
    ]
    segments = bench.normalize(bench.vllm_segments(messages))
    assert segments == [
        ("reasoning", "think"),
        ("tool", "read_file", {"path": "a"}),
        ("reasoning", "more"),
        ("text", "done"),
    ]
