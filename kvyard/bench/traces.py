"""Workloads from published traces: Mooncake's ``hash_ids`` format and vLLM's multi-turn format.

**Mooncake** (JSONL, one request per line: ``timestamp`` ms, ``input_length``,
``output_length``, ``hash_ids``; hash id *k* names the *k*-th 512-token block of the prompt, and
requests that share a prefix share its hash ids). Each hash id gets its own deterministic text
of exactly ``block_tokens`` approximate tokens (``block_tokens * CHARS_PER_TOKEN`` characters,
drawn from ``random.Random("mooncake/<seed>/<hash id>")``); a prompt is the texts of its hash ids
in order, cut to ``input_length`` approximate tokens (a partial last block is a prefix of that
block's text), and padded with request-unique text if its hash ids cover less than
``input_length``. So equal hash-id prefixes give equal text prefixes. Each request is a
one-step session sent as one user message at ``(timestamp - first timestamp) / 1000`` s with
``max_tokens = output_length``; no concurrency cap (an open-loop replay).

**vLLM multi-turn** (``benchmarks/multi_turn`` in vLLM: a JSON list of ``{"id": ...,
"messages": [{"role": "user"|"assistant"|"system", "content": ...}, ...]}``). Each
conversation is a session; each user message (consecutive ones together) is a step whose
scripted reply is the following assistant message, with ``max_tokens`` its approximate length
(at most ``max_output_tokens``; ``output_tokens`` when there is none); a leading system message
becomes the session's system prompt. As in vLLM's benchmark, a live run replaces the dataset's
answers with the server's. Sessions arrive as a Poisson process of ``rate`` per second (0 = all
at once) with ``concurrency`` in flight.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from kvyard.bench.filler import CHARS_PER_TOKEN, approx_tokens, prose
from kvyard.bench.records import Message, Session, Step, Workload, WorkloadHeader

MOONCAKE_BLOCK = 512


def block_text(hash_id: int, block_tokens: int = MOONCAKE_BLOCK, seed: int = 0) -> str:
    """The text of one Mooncake block: exactly ``block_tokens * CHARS_PER_TOKEN`` characters."""
    size = block_tokens * CHARS_PER_TOKEN
    text = prose(random.Random(f"mooncake/{seed}/{hash_id}"), block_tokens + 8)
    return (text + " " * size)[:size - 1] + "\n"


def mooncake_prompt(hash_ids: list[int], input_length: int, request: int, block_tokens: int = MOONCAKE_BLOCK, seed: int = 0) -> str:
    size = max(input_length, 1) * CHARS_PER_TOKEN
    text = "".join(block_text(h, block_tokens, seed) for h in hash_ids[: -(-size // (block_tokens * CHARS_PER_TOKEN))])
    if len(text) < size:
        text += prose(random.Random(f"mooncake/{seed}/pad/{request}"), input_length) + " " * size
    return text[:size]


def mooncake(path: str | Path, *, block_tokens: int = MOONCAKE_BLOCK, seed: int = 0, limit: int | None = None) -> Workload:
    rows: list[dict[str, Any]] = []
    with open(path) as fh:
        for no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = {"timestamp", "input_length", "output_length", "hash_ids"} - row.keys()
            if missing:
                raise ValueError(f"{path}:{no}: not a Mooncake trace line (missing {', '.join(sorted(missing))})")
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    t0 = min((r["timestamp"] for r in rows), default=0)
    sessions = []
    for i, r in enumerate(rows):
        text = mooncake_prompt(list(r["hash_ids"]), int(r["input_length"]), i, block_tokens, seed)
        step = Step(
            append=(Message(role="user", content=text),),
            reply=Message(role="assistant", content=""),
            max_tokens=max(int(r["output_length"]), 1),
            kind="trace",
        )
        sessions.append(Session(id=f"m{i}", session_id=f"m{i}", steps=(step,), arrival_s=(r["timestamp"] - t0) / 1000.0))
    params = {"path": str(path), "block_tokens": block_tokens, "seed": seed, "limit": limit}
    return Workload(header=WorkloadHeader(source="mooncake", params=params, concurrency=0), sessions=tuple(sessions))


def vllm_multi_turn(
    path: str | Path,
    *,
    output_tokens: int = 64,
    max_output_tokens: int = 512,
    rate: float = 0.0,
    concurrency: int = 4,
    seed: int = 0,
    limit: int | None = None,
) -> Workload:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of conversations ({{'id', 'messages'}})")
    systems: dict[str, str] = {}
    arrivals = random.Random(f"{seed}/arrivals")
    t = 0.0
    sessions = []
    for i, conv in enumerate(data[:limit] if limit is not None else data):
        if not isinstance(conv, dict) or not isinstance(conv.get("messages"), list):
            raise ValueError(f"{path}: conversation {i} has no 'messages' list")
        msgs = [m for m in conv["messages"] if isinstance(m, dict)]
        system_key = ""
        if msgs and msgs[0].get("role") == "system":
            text = str(msgs.pop(0).get("content") or "")
            system_key = next((k for k, v in systems.items() if v == text), f"sys{len(systems)}")
            systems[system_key] = text
        steps: list[Step] = []
        pending: list[Message] = []
        for m in msgs:
            content = str(m.get("content") or "")
            if m.get("role") == "assistant":
                if pending:
                    n = min(max(approx_tokens(content), 1), max_output_tokens)
                    steps.append(Step(append=tuple(pending), reply=Message(role="assistant", content=content), max_tokens=n))
                    pending = []
            else:
                pending.append(Message(role="user", content=content))
        if pending:
            steps.append(Step(append=tuple(pending), reply=Message(role="assistant", content=""), max_tokens=output_tokens))
        if not steps:
            continue
        if sessions and rate > 0:
            t += arrivals.expovariate(rate)
        cid = str(conv.get("id", i))
        sessions.append(Session(id=cid, session_id=cid, steps=tuple(steps), arrival_s=round(t, 6), system=system_key))
    params = {"path": str(path), "output_tokens": output_tokens, "max_output_tokens": max_output_tokens, "rate": rate, "seed": seed, "limit": limit}
    header = WorkloadHeader(source="vllm-multi-turn", params=params, concurrency=concurrency, systems=systems)
    return Workload(header=header, sessions=tuple(sessions))
