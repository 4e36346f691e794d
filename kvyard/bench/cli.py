"""``kvyard bench``: ``workload`` (write a workload JSONL), ``run`` (replay it against an endpoint,
write results JSONL), ``report`` (tables and plots from results files).

Heavy imports (httpx, transformers, matplotlib) happen inside the handlers, so building the
``kvyard`` argument parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def _range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        return (int(lo), int(hi)) if sep else (int(lo), int(lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN:MAX, got {text!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="agentic benchmark: generate workloads, run them, report")
    verbs = p.add_subparsers(dest="bench_command", required=True)

    wl = verbs.add_parser("workload", help="write a workload JSONL (generated, or from a trace)")
    kinds = wl.add_subparsers(dest="workload_kind", required=True)
    from kvyard.bench.workload import HarnessParams

    d = HarnessParams()
    h = kinds.add_parser("harness", help="Claude-Code-like sessions: shared prefix, billing line, tool loops, subagents, compaction")
    h.add_argument("--out", type=Path, required=True)
    for name, kind, help_ in (
        ("sessions", int, "top-level sessions"),
        ("seed", int, "seed of every random choice"),
        ("system-tokens", int, "system prompt size (approximate tokens, 4 characters each)"),
        ("tools-tokens", int, "tool definitions size, all tools together"),
        ("n-tools", int, "number of tools (Task first)"),
        ("tasks", int, "user tasks per session"),
        ("tool-loops", _range, "tool-calling turns per task, MIN:MAX"),
        ("reasoning-tokens", int, "reasoning per scripted assistant turn"),
        ("text-tokens", int, "text of a task's final answer"),
        ("user-tokens", int, "user message size"),
        ("tool-result-tokens", int, "median tool result size (log-normal spread)"),
        ("subagent-prob", float, "chance that a tool turn launches subagents"),
        ("subagents", _range, "subagents per launch, MIN:MAX"),
        ("subagent-loops", _range, "tool turns per subagent, MIN:MAX"),
        ("compact-at-tokens", int, "compact once the history exceeds this (0 = never)"),
        ("summary-tokens", int, "size of a compaction summary"),
        ("output-tokens", int, "max_tokens of every request"),
        ("rate", float, "session arrivals per second, Poisson (0 = all at once)"),
        ("concurrency", int, "sessions in flight at most (0 = no cap)"),
    ):
        attr = name.replace("-", "_")
        default = getattr(d, attr)
        shown = f"{default[0]}:{default[1]}" if isinstance(default, tuple) else default
        h.add_argument(f"--{name}", type=kind, default=default, help=f"{help_} (default {shown})")
    h.add_argument("--no-billing", action="store_true", help="no Claude Code billing line")
    h.add_argument("--no-thinking", action="store_true", help="do not ask for reasoning")

    m = kinds.add_parser("mooncake", help="replay a Mooncake trace (JSONL with timestamp, input_length, output_length, hash_ids)")
    m.add_argument("trace", type=Path)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--block-tokens", type=int, default=512)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--limit", type=int, help="first N requests only")

    v = kinds.add_parser("multi-turn", help="vLLM benchmarks/multi_turn conversations (JSON list of {id, messages})")
    v.add_argument("conversations", type=Path)
    v.add_argument("--out", type=Path, required=True)
    v.add_argument("--output-tokens", type=int, default=64, help="max_tokens when the dataset has no answer")
    v.add_argument("--max-output-tokens", type=int, default=512)
    v.add_argument("--rate", type=float, default=0.0)
    v.add_argument("--concurrency", type=int, default=4)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--limit", type=int, help="first N conversations only")

    r = verbs.add_parser("run", help="replay a workload against an endpoint, streaming; write results JSONL")
    r.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    r.add_argument("--api", choices=["chat", "messages", "responses"], default="chat")
    r.add_argument("--workload", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--label", help="system name in reports (default: the URL)")
    r.add_argument("--model", help="model id to send (default: first of GET /v1/models)")
    r.add_argument("--replies", choices=["live", "scripted"], default="live", help="history keeps the server's replies, or the workload's fixed ones")
    r.add_argument("--concurrency", type=int, help="override the workload's cap (0 = none)")
    r.add_argument("--time-scale", type=float, default=1.0, help="multiply arrival times")
    r.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    r.add_argument("--budget", type=float, help="seconds after which no new request is sent (in-flight ones finish); the rest are counted as not sent")
    r.add_argument("--api-key")
    r.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", help="extra request header (repeatable)")
    r.add_argument("--session-header", help="header carrying the session id (default per API; '' for none)")
    r.add_argument("--extra-body", default="{}", help='JSON merged into every body, e.g. \'{"temperature": 0, "ignore_eos": true}\'')
    r.add_argument("--return-token-ids", action="store_true", help="chat: ask for prompt_token_ids (vLLM)")
    r.add_argument("--metrics-url", help="Prometheus endpoint scraped before and after")
    r.add_argument("--metric", action="append", help="metric selector (repeatable; default vllm:prefix_cache_queries, vllm:prefix_cache_hits)")
    r.add_argument("--tokenizer", help="model directory whose tokenizer and chat template render prompts for the ideal reuse")
    r.add_argument("--ideal", choices=["auto", "tokenizer", "server", "none"], default="auto")
    r.add_argument("--ideal-keep-billing", action="store_true", help="count the billing line as prompt content in the ideal")
    r.add_argument("--block-size", type=int, default=32)

    rep = verbs.add_parser("report", help="markdown tables and PNG plots from results files")
    rep.add_argument("results", nargs="+", type=Path)
    rep.add_argument("--out", type=Path, required=True, help="directory for report.md and the PNGs")
    rep.add_argument("--baseline", help="system label the ratios are taken against")
    rep.add_argument("--no-plots", action="store_true")


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``kvyard bench …``; ``argv`` (the command's arguments) is recorded with the results."""
    command = "kvyard " + shlex.join(argv)
    if args.bench_command == "workload":
        return _workload(args)
    if args.bench_command == "run":
        return _run(args, command)
    return _report(args, command)


def _workload(args) -> int:
    from kvyard.bench.records import write_workload
    from kvyard.bench.workload import HarnessParams, generate, iter_sessions

    if args.workload_kind == "harness":
        fields = {k: getattr(args, k) for k in HarnessParams.__dataclass_fields__ if k not in ("billing", "thinking")}
        workload = generate(HarnessParams(**fields, billing=not args.no_billing, thinking=not args.no_thinking))
    elif args.workload_kind == "mooncake":
        from kvyard.bench.traces import mooncake

        workload = mooncake(args.trace, block_tokens=args.block_tokens, seed=args.seed, limit=args.limit)
    else:
        from kvyard.bench.traces import vllm_multi_turn

        workload = vllm_multi_turn(
            args.conversations,
            output_tokens=args.output_tokens,
            max_output_tokens=args.max_output_tokens,
            rate=args.rate,
            concurrency=args.concurrency,
            seed=args.seed,
            limit=args.limit,
        )
    n = write_workload(args.out, workload)
    everything = list(iter_sessions(workload.sessions))
    requests = sum(len(s.steps) for s in everything)
    print(f"{args.out}: {n} sessions ({len(everything) - n} subagents), {requests} requests, source {workload.header.source}")
    return 0


def _run(args, command: str) -> int:
    import asyncio

    from kvyard.bench.prom import DEFAULT_SELECTORS
    from kvyard.bench.records import read_workload, write_jsonl
    from kvyard.bench.runner import RunConfig, run

    workload = read_workload(args.workload)
    headers = {}
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep:
            raise ValueError(f"--header wants NAME:VALUE, got {h!r}")
        headers[name.strip()] = value.strip()
    try:
        extra = json.loads(args.extra_body)
    except ValueError as exc:
        raise ValueError(f"--extra-body is not JSON: {exc}") from None
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    cfg = RunConfig(
        url=args.url,
        api=args.api,
        model=args.model,
        label=args.label or "",
        replies=args.replies,
        concurrency=args.concurrency,
        time_scale=args.time_scale,
        timeout_s=args.timeout,
        budget_s=args.budget,
        api_key=args.api_key,
        session_header=args.session_header,
        headers=headers,
        extra_body=extra,
        return_token_ids=args.return_token_ids,
        metrics_url=args.metrics_url,
        metrics=tuple(args.metric or DEFAULT_SELECTORS),
        ideal=args.ideal,
        tokenizer=tokenizer,
        ideal_keep_billing=args.ideal_keep_billing,
        block_size=args.block_size,
        workload_path=str(args.workload),
        command=command,
        progress=_err,
    )
    result = asyncio.run(run(workload, cfg))
    write_jsonl(args.out, [result.header, *result.records, result.footer])
    f = result.footer
    unsent = f", {f.unsent} not sent (time budget)" if f.unsent else ""
    print(f"{args.out}: {f.requests} requests in {f.wall_s:.1f} s, {f.errors} errors{unsent}, ideal reuse from {result.header.ideal_source}")
    return 0


def _report(args, command: str) -> int:
    from kvyard.bench.report import write_report

    md = write_report(args.results, args.out, baseline=args.baseline, command=command, plots=not args.no_plots)
    print(md.read_text())
    _err(f"wrote {md}")
    return 0
