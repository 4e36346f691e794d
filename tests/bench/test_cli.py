"""``kvyard bench workload | run | report`` end to end against ``FakeSSEServer``."""

from __future__ import annotations

from kvyard.bench.records import read_results, read_workload
from kvyard.cli import main
from tests.bench.fake_sse_server import FakeSSEServer

SMALL = ["--sessions", "3", "--system-tokens", "300", "--tools-tokens", "200", "--n-tools", "4", "--tasks", "1", "--tool-loops", "1:2", "--subagent-prob", "0.5", "--user-tokens", "10", "--tool-result-tokens", "20", "--concurrency", "2"]


def test_workload_run_report(tmp_path, capsys):
    wl = tmp_path / "w.jsonl"
    assert main(["bench", "workload", "harness", "--out", str(wl), *SMALL]) == 0
    assert "3 sessions" in capsys.readouterr().out
    n_requests = sum(len(s.steps) for s in _all(read_workload(wl).sessions))
    results = []
    with FakeSSEServer(first_delay=0.02, gap=0.002, deltas=2) as fake:
        for api in ("chat", "messages"):
            out = tmp_path / f"{api}.jsonl"
            argv = ["bench", "run", "--url", fake.url, "--api", api, "--workload", str(wl), "--out", str(out), "--label", api, "--metrics-url", fake.url + "/metrics"]
            assert main(argv) == 0
            results.append(out)
            err = capsys.readouterr().err
            assert "sessions 3/3 done" in err
    header, records, footer = read_results(results[0])
    assert header.command.startswith("kvyard bench run --url") and header.model == "fake-model" and header.concurrency == 2
    assert len(records) == n_requests == footer.requests and footer.errors == 0
    assert footer.metrics_after["vllm:prefix_cache_hits"] > footer.metrics_before.get("vllm:prefix_cache_hits", 0)
    report_dir = tmp_path / "report"
    assert main(["bench", "report", *map(str, results), "--out", str(report_dir), "--baseline", "chat", "--no-plots"]) == 0
    md = (report_dir / "report.md").read_text()
    assert "| chat |" in md and "| messages |" in md and "Ratios against **chat**" in md
    assert md.startswith("# kvyard bench report\n\n```\nkvyard bench report ")


def test_bad_input_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "not-a-workload.jsonl"
    bad.write_text('{"kind": "request", "session": "s"}\n')
    assert main(["bench", "run", "--url", "http://127.0.0.1:9", "--workload", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "kvyard bench:" in capsys.readouterr().err


def _all(sessions):
    for s in sessions:
        yield s
        for st in s.steps:
            yield from _all(st.subagents)
