"""Report statistics, tables and plots on synthetic results."""

from __future__ import annotations

import msgspec
import pytest

from kvyard.bench.records import RequestRecord, RunFooter, RunHeader, write_jsonl
from kvyard.bench.report import Run, markdown, per_turn, percentile, stats, write_report


def header(label):
    return RunHeader(label=label, url="http://x", api="chat", model="m", workload="w.jsonl", source="harness", concurrency=2, replies="live", started_at=0.0, command=f"kvyard bench run --label {label}")


def rec(turn, ttft, *, cached=50, ideal=100, error="", out=10):
    return RequestRecord(
        session="s0", turn=turn, step_kind="tool", t_send_s=turn * 1.0, e2e_s=ttft + 0.5, ttft_s=ttft,
        itl_s=[0.01, 0.03], status=200 if not error else 500, error=error, output_tokens=out,
        prompt_tokens=200, cached_tokens=cached, ideal_cached_tokens=ideal, ideal_prompt_tokens=210,
    )


@pytest.fixture
def runs():
    fast = Run(header("fast"), [rec(0, 0.1, cached=0, ideal=0), rec(1, 0.2), rec(2, 0.3, cached=100), rec(3, 9.0, cached=None, error="HTTP 500: boom")],
               RunFooter(wall_s=10.0, sessions=1, requests=4, errors=1, metrics_before={"vllm:prefix_cache_hits": 5.0}, metrics_after={"vllm:prefix_cache_hits": 155.0}))
    slow = Run(header("slow"), [rec(0, 0.4, cached=0, ideal=0), rec(1, 0.8, cached=10), rec(2, 1.2, cached=20)], RunFooter(wall_s=20.0, sessions=1, requests=3, errors=0))
    return [fast, slow]


def test_percentile_interpolates():
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 90) == 90
    assert percentile([1, 2], 99) == pytest.approx(1.99)


def test_stats(runs):
    s = stats("fast", [runs[0]])
    assert (s.requests, s.errors) == (4, 1)
    assert s.ttft_s[0] == pytest.approx(0.2) and s.ttft_s[2] == pytest.approx(0.298)  # errors excluded
    assert s.itl_s[0] == pytest.approx(0.02)
    assert s.e2e_s[0] == pytest.approx(0.7)
    assert s.output_tps == pytest.approx(3.0) and s.requests_per_s == pytest.approx(0.3)
    assert (s.cached_tokens, s.ideal_tokens) == (150, 200)  # requests without usage are left out
    assert s.reuse_of_ideal == pytest.approx(0.75) and s.cached_fraction == pytest.approx(150 / 600)
    assert s.metrics == {"vllm:prefix_cache_hits": 150.0}
    assert s.top_errors == [("HTTP 500: boom", 1)]


def test_per_turn(runs):
    assert per_turn([runs[1]]) == {0: (200, 0, 0, 210), 1: (200, 10, 100, 210), 2: (200, 20, 100, 210)}
    no_ideal = Run(header("x"), [msgspec.structs.replace(rec(0, 0.1), ideal_cached_tokens=None)], None)
    assert per_turn([no_ideal]) == {0: (200, 50, None, None)}


def test_markdown_tables_and_ratios(runs):
    md = markdown(runs, baseline="slow")
    lines = md.splitlines()
    row = next(ln for ln in lines if ln.startswith("| fast | 4 | 1 |"))
    assert row.endswith("| 150 | 200 | 75.0% | 25.0% |")
    assert "| slow | 3 | 0 | 800 |" in md
    ratio = next(ln for ln in lines if ln.startswith("| fast | 0.25x"))
    assert ratio.endswith("| 5.00x |")  # reuse 0.75 vs 30/200
    assert "vllm:prefix_cache_hits" in md and "`HTTP 500: boom`" in md
    assert "`kvyard bench run --label fast`" in md
    with pytest.raises(ValueError, match="baseline 'nope'"):
        markdown(runs, baseline="nope")


def test_a_run_cut_off_by_its_time_budget_is_called_out(runs):
    cut = Run(header("cold"), [rec(0, 30.0)], RunFooter(wall_s=1500.0, sessions=4, requests=1, errors=0, unsent=9, budget_s=1500.0))
    md = markdown([*runs, cut])
    assert "**`cold` ran out of its time budget of 25 min**: 9 of 10 requests were not sent" in md
    assert "`fast` ran out" not in md and stats("cold", [cut]).unsent == 9


def test_write_report_with_plots(runs, tmp_path):
    paths = []
    for r in runs:
        paths.append(tmp_path / f"{r.header.label}.jsonl")
        write_jsonl(paths[-1], [r.header, *r.records, r.footer])
    md = write_report(paths, tmp_path / "out", baseline="fast", command="kvyard bench report ...")
    text = md.read_text()
    assert text.startswith("# kvyard bench report\n\n```\nkvyard bench report ...\n```")
    for png in ("ttft_cdf.png", "reuse_per_turn.png"):
        data = (tmp_path / "out" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
        assert f"]({png})" in text


def test_write_report_without_plots(runs, tmp_path):
    path = tmp_path / "r.jsonl"
    write_jsonl(path, [runs[0].header, *runs[0].records, runs[0].footer])
    md = write_report([path], tmp_path / "out", plots=False)
    assert "| fast |" in md.read_text() and not (tmp_path / "out" / "ttft_cdf.png").exists()
