"""Summaries of results files: statistics per system, markdown tables, ratios, PNG plots.

Per system (a run's ``label``; runs with the same label are merged, their wall times added):

- TTFT, ITL and end-to-end latency p50/p90/p99 over successful requests (ITL pools every gap
  between output events of every request); percentiles interpolate linearly between order
  statistics (numpy's default);
- output throughput = output tokens of successful requests / wall time; requests per second;
- cache: cached tokens (usage), the trace's ideal (``kvyard.bench.reuse``), and *reuse of
  ideal* = cached / ideal summed over the requests that have both; cached / prompt tokens;
- engine counters: after - before for every scraped selector;
- errors: count, and the most common messages.

Ratios: every system's TTFT/ITL/E2E p50 and p90, throughput and reuse divided by the baseline's
(below 1 is faster for latencies; above 1 is more for throughput and reuse).

Plots (matplotlib, an optional extra: ``pip install kvyard[bench]``; imported only here, only
when plotting): ``ttft_cdf.png`` (TTFT CDF per system, log time axis) and
``reuse_per_turn.png`` (per turn index of a session: cached / prompt tokens per system with the
ideal dashed, and cached / ideal).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import msgspec

from kvyard.bench.prom import delta
from kvyard.bench.records import RequestRecord, RunFooter, RunHeader, read_results

QUANTILES = (50, 90, 99)


class Run(msgspec.Struct):
    header: RunHeader
    records: list[RequestRecord]
    footer: RunFooter | None


class SystemStats(msgspec.Struct):
    label: str
    requests: int
    errors: int
    ttft_s: tuple[float | None, ...]
    itl_s: tuple[float | None, ...]
    e2e_s: tuple[float | None, ...]
    wall_s: float
    output_tokens: int
    output_tps: float | None
    requests_per_s: float | None
    prompt_tokens: int
    cached_tokens: int | None
    ideal_tokens: int | None
    reuse_of_ideal: float | None
    cached_fraction: float | None
    metrics: dict[str, float]
    top_errors: list[tuple[str, int]]
    unsent: int = 0
    """Workload requests not sent: the run's time budget ran out first."""
    budget_s: float | None = None


def percentile(xs: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear interpolation between order statistics."""
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def load(paths: Sequence[str | Path]) -> list[Run]:
    return [Run(*read_results(p)) for p in paths]


def group(runs: Sequence[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        out[r.header.label].append(r)
    return dict(out)


def stats(label: str, runs: Sequence[Run]) -> SystemStats:
    records = [rec for r in runs for rec in r.records]
    ok = [r for r in records if not r.error]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    itl = [x for r in ok for x in r.itl_s]
    e2e = [r.e2e_s for r in ok]
    wall = sum(r.footer.wall_s for r in runs if r.footer) or (max((r.t_send_s + r.e2e_s for r in records), default=0.0))
    out_tokens = sum(r.output_tokens for r in ok)
    with_cache = [r for r in records if r.cached_tokens is not None]
    both = [r for r in with_cache if r.ideal_cached_tokens is not None]
    ideal = sum(r.ideal_cached_tokens for r in both) if both else None
    cached_both = sum(r.cached_tokens for r in both)
    prompt = sum(r.prompt_tokens or 0 for r in with_cache)
    metrics: dict[str, float] = {}
    for r in runs:
        if r.footer and r.footer.metrics_after:
            for k, v in delta(r.footer.metrics_before, r.footer.metrics_after).items():
                metrics[k] = metrics.get(k, 0.0) + v
    return SystemStats(
        label=label,
        requests=len(records),
        errors=len(records) - len(ok),
        ttft_s=tuple(percentile(ttft, q) for q in QUANTILES),
        itl_s=tuple(percentile(itl, q) for q in QUANTILES),
        e2e_s=tuple(percentile(e2e, q) for q in QUANTILES),
        wall_s=wall,
        output_tokens=out_tokens,
        output_tps=out_tokens / wall if wall > 0 else None,
        requests_per_s=len(ok) / wall if wall > 0 else None,
        prompt_tokens=prompt,
        cached_tokens=sum(r.cached_tokens for r in with_cache) if with_cache else None,
        ideal_tokens=ideal,
        reuse_of_ideal=cached_both / ideal if ideal else None,
        cached_fraction=sum(r.cached_tokens for r in with_cache) / prompt if prompt else None,
        metrics=metrics,
        top_errors=Counter(r.error[:120] for r in records if r.error).most_common(3),
        unsent=sum(r.footer.unsent for r in runs if r.footer),
        budget_s=max((r.footer.budget_s for r in runs if r.footer and r.footer.budget_s), default=None),
    )


def per_turn(runs: Sequence[Run]) -> dict[int, tuple[int, int, int | None, int | None]]:
    """``{turn index: (prompt tokens, cached tokens, ideal cached tokens, ideal's prompt tokens)}``
    over requests with usage; the ideal pair is None when no request of that turn has one (the
    ideal's prompts are the ones it was computed on: tokenizer or server ids)."""
    out: dict[int, list] = defaultdict(lambda: [0, 0, None, None])
    for r in runs:
        for rec in r.records:
            if rec.cached_tokens is None:
                continue
            row = out[rec.turn]
            row[0] += rec.prompt_tokens or 0
            row[1] += rec.cached_tokens
            if rec.ideal_cached_tokens is not None:
                row[2] = (row[2] or 0) + rec.ideal_cached_tokens
                row[3] = (row[3] or 0) + (rec.ideal_prompt_tokens or 0)
    return {k: tuple(v) for k, v in sorted(out.items())}


# -- markdown -----------------------------------------------------------------------------------


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.0f}" if x >= 0.1 else f"{x * 1e3:.1f}"


def _num(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def stats_table(all_stats: Sequence[SystemStats]) -> list[str]:
    lines = [
        _row(
            "system", "requests", "errors",
            "TTFT p50 ms", "TTFT p90 ms", "TTFT p99 ms",
            "ITL p50 ms", "ITL p90 ms", "ITL p99 ms",
            "E2E p50 ms", "E2E p90 ms", "E2E p99 ms",
            "output tok/s", "req/s", "cached tokens", "ideal tokens", "reuse of ideal", "cached / prompt",
        ),
        _row("---", *["---:"] * 17),
    ]
    for s in all_stats:
        lines.append(
            _row(
                s.label, s.requests, s.errors,
                *(_ms(x) for x in s.ttft_s), *(_ms(x) for x in s.itl_s), *(_ms(x) for x in s.e2e_s),
                _num(s.output_tps, ",.1f"), _num(s.requests_per_s, ",.2f"),
                _num(s.cached_tokens), _num(s.ideal_tokens), _pct(s.reuse_of_ideal), _pct(s.cached_fraction),
            )
        )
    return lines


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def ratio_table(all_stats: Sequence[SystemStats], baseline: str) -> list[str]:
    base = next((s for s in all_stats if s.label == baseline), None)
    if base is None:
        raise ValueError(f"baseline {baseline!r} is not among the systems: {', '.join(s.label for s in all_stats)}")
    lines = [
        f"Ratios against **{baseline}** (latencies: below 1 is faster; throughput and reuse: above 1 is more).",
        "",
        _row("system", "TTFT p50", "TTFT p90", "ITL p50", "E2E p50", "E2E p90", "output tok/s", "reuse of ideal"),
        _row("---", *["---:"] * 7),
    ]
    for s in all_stats:
        lines.append(
            _row(
                s.label,
                _ratio(s.ttft_s[0], base.ttft_s[0]), _ratio(s.ttft_s[1], base.ttft_s[1]),
                _ratio(s.itl_s[0], base.itl_s[0]),
                _ratio(s.e2e_s[0], base.e2e_s[0]), _ratio(s.e2e_s[1], base.e2e_s[1]),
                _ratio(s.output_tps, base.output_tps), _ratio(s.reuse_of_ideal, base.reuse_of_ideal),
            )
        )
    return lines


def runs_table(runs: Sequence[Run]) -> list[str]:
    lines = [
        _row("system", "api", "url", "model", "workload", "replies", "concurrency", "ideal from", "wall s", "command"),
        _row(*["---"] * 10),
    ]
    for r in runs:
        h = r.header
        wall = f"{r.footer.wall_s:.1f}" if r.footer else "-"
        cmd = f"`{h.command}`" if h.command else "-"
        lines.append(_row(h.label, h.api, h.url, h.model, f"{h.workload or '-'} ({h.source})", h.replies, h.concurrency, h.ideal_source, wall, cmd))
    return lines


def markdown(runs: Sequence[Run], baseline: str | None = None, plots: Sequence[str] = (), note: str = "") -> str:
    groups = group(runs)
    all_stats = [stats(label, rs) for label, rs in groups.items()]
    lines = ["## Results", "", *stats_table(all_stats), ""]
    lines += [
        (
            "TTFT: to the first output event (text, reasoning or tool-call delta); ITL: gaps between output events; "
            "latencies over successful requests. Reuse of ideal: cached tokens (usage) / the trace's ideal "
            "(longest block-aligned prefix shared with a prompt whose prefill had finished before the request was "
            "sent; prompts only, so reusing an earlier reply's KV can exceed 100%)."
        ),
        "",
    ]
    for s in all_stats:
        if s.unsent:
            budget = f" of {s.budget_s / 60:.0f} min" if s.budget_s else ""
            lines += [
                f"**`{s.label}` ran out of its time budget{budget}**: {s.unsent} of {s.requests + s.unsent} requests were not "
                f"sent; its figures cover the {s.requests} it sent (the workload's earlier turns).",
                "",
            ]
    if baseline:
        lines += ratio_table(all_stats, baseline) + [""]
    metric_names = sorted({k for s in all_stats for k in s.metrics})
    if metric_names:
        lines += ["Engine counters (after - before the run):", "", _row("system", *metric_names), _row("---", *["---:"] * len(metric_names))]
        lines += [_row(s.label, *(_num(s.metrics.get(k)) for k in metric_names)) for s in all_stats] + [""]
    errs = [(s.label, e, n) for s in all_stats for e, n in s.top_errors]
    if errs:
        lines += ["Most common errors:", ""] + [f"- {label}: {n}x `{e}`" for label, e, n in errs] + [""]
    lines += ["## Runs", "", *runs_table(runs), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    if note:
        lines += [note, ""]
    return "\n".join(lines)


# -- plots --------------------------------------------------------------------------------------


def plot(runs: Sequence[Run], out_dir: str | Path) -> list[str]:
    """Write the PNGs; returns their paths. Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    groups = group(runs)
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, rs in groups.items():
        xs = sorted(r.ttft_s for run in rs for r in run.records if not r.error and r.ttft_s is not None)
        if xs:
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("time to first token (s)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("TTFT distribution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(str(out / "ttft_cdf.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    nan = float("nan")
    for label, rs in groups.items():
        turns = per_turn(rs)
        if not turns:
            continue
        ks, rows = list(turns), list(turns.values())
        line = left.plot(ks, [c / p if p else nan for p, c, _, _ in rows], marker="o", label=label)[0]
        if any(i is not None for _, _, i, _ in rows):
            left.plot(ks, [i / ip if ip else nan for _, _, i, ip in rows], linestyle="--", color=line.get_color(), alpha=0.6)
            right.plot(ks, [c / i if i else nan for _, c, i, _ in rows], marker="o", label=label, color=line.get_color())
    left.set_xlabel("turn index in session")
    left.set_ylabel("cached / prompt tokens (dashed: ideal)")
    left.set_ylim(0, 1.05)
    right.set_xlabel("turn index in session")
    right.set_ylabel("cached / ideal tokens")
    if not right.lines:
        right.text(0.5, 0.5, "no ideal reuse in these results\n(run with --tokenizer, or --return-token-ids)", ha="center", va="center", transform=right.transAxes)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.suptitle("Prefix-cache reuse per turn")
    fig.tight_layout()
    paths.append(str(out / "reuse_per_turn.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def write_report(paths: Sequence[str | Path], out_dir: str | Path, baseline: str | None = None, command: str = "", plots: bool = True) -> Path:
    """Write ``report.md`` (and the PNGs) into ``out_dir``; returns the markdown's path."""
    runs = load(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: list[str] = []
    note = ""
    if plots:
        try:
            pngs = plot(runs, out)
        except ImportError:
            note = "Plots skipped: matplotlib is not installed (`pip install kvyard[bench]`)."
    head = ["# kvyard bench report", ""]
    if command:
        head += ["```", command, "```", ""]
    md = out / "report.md"
    md.write_text("\n".join(head) + markdown(runs, baseline, pngs, note))
    return md
