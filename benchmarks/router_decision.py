"""Router benchmark: decision latency with ~1M indexed blocks on 64 workers, and KV event ingest.

Setup (defaults): 64 workers of one pool, block size 16. Each worker holds 4 sessions of 64k
tokens (4096 blocks): the first 1024 blocks are one of 32 shared system prompts (so several
workers hold each), the remaining 3072 are unique. That is 64 x 4 x 4096 = 1,048,576 indexed
(worker, block) entries, ~0.82M distinct block hashes.

Ingest: the index is built from vLLM-layout msgpack payloads (``[ts, [BlockStored…]]``, one
event per 128 blocks = a 2048-token prefill chunk, 8 events per payload), decoded with
``decode_vllm_event_batch`` and applied with ``BlockIndex.apply_batch``; removal ingest then
evicts and re-stores one session per worker. Rates count events and blocks per second.

Decisions: a request's block hashes are computed once per prompt (reported separately as
"hash 64k prompt"), then each decision is ``BlockIndex.overlaps`` over all 64 workers plus
``choose`` (temperature 0). Three request kinds: ``hot`` (a held session's full 64k prompt: the
walk runs all 4096 blocks), ``warm`` (a shared system prompt, then new text: 1024 blocks match),
``cold`` (nothing matches).

Run: ``python benchmarks/router_decision.py --output benchmarks/results/router_decision.md``
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import resource
import statistics
import sys
import time

import msgspec
import numpy as np

from kvyard.router.decision import RouterWeights, WorkerLoad, choose
from kvyard.router.events import BlockRemoved, BlockStored, decode_vllm_event_batch
from kvyard.router.hashing import HASH_ALGO, block_hashes, derive_salt
from kvyard.router.index import BlockIndex

MODEL = "bench/model"
VOCAB = 150_000


def session_tokens(
    prefixes: list[np.ndarray], prefix_id: int, session_seed: int, tail_tokens: int
) -> np.ndarray:
    tail = np.random.default_rng(session_seed).integers(0, VOCAB, tail_tokens, dtype=np.uint32)
    return np.concatenate([prefixes[prefix_id], tail])


def engine_hash(kind: str, owner: int, block: int) -> int:
    # vLLM publishes 64-bit int hashes by default; shared-prefix blocks hash alike on every worker
    return ({"p": 1, "s": 2}[kind] << 56) | (owner << 24) | block


def store_payloads(
    tokens: np.ndarray,
    prefix_id: int,
    session: int,
    prefix_blocks: int,
    block_size: int,
    chunk_blocks: int,
    events_per_payload: int,
) -> list[bytes]:
    n_blocks = len(tokens) // block_size
    ids = tokens.tolist()
    keys = [
        engine_hash("p", prefix_id, b) if b < prefix_blocks else engine_hash("s", session, b)
        for b in range(n_blocks)
    ]
    events = []
    for first in range(0, n_blocks, chunk_blocks):
        last = min(first + chunk_blocks, n_blocks)
        events.append(
            BlockStored(
                block_hashes=keys[first:last],
                parent_block_hash=None if first == 0 else keys[first - 1],
                token_ids=ids[first * block_size : last * block_size],
                block_size=block_size,
                medium="GPU",
                group_idx=0,
            )
        )
    return [
        msgspec.msgpack.encode([time.time(), events[i : i + events_per_payload]])
        for i in range(0, len(events), events_per_payload)
    ]


def pct(samples: list[float], q: float) -> float:
    return (
        statistics.quantiles(samples, n=1000, method="inclusive")[int(q * 10) - 1]
        if len(samples) > 1
        else samples[0]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--sessions-per-worker", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=65536)
    ap.add_argument("--prefix-tokens", type=int, default=16384)
    ap.add_argument("--shared-prefixes", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--chunk-blocks", type=int, default=128)
    ap.add_argument("--events-per-payload", type=int, default=8)
    ap.add_argument("--queries", type=int, default=1000, help="decisions per request kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", help="also write the markdown (with this command line) here")
    args = ap.parse_args()
    bs = args.block_size
    prefix_blocks = args.prefix_tokens // bs
    tail_tokens = args.prompt_tokens - args.prefix_tokens
    load_at_start = os.getloadavg()[0]
    rng = random.Random(args.seed)
    prefixes = [
        np.random.default_rng(10_000 + k).integers(0, VOCAB, args.prefix_tokens, dtype=np.uint32)
        for k in range(args.shared_prefixes)
    ]
    workers = [f"decode-{w:02d}" for w in range(args.workers)]
    placement = [
        (w, (w + i) % args.shared_prefixes, w * args.sessions_per_worker + i)
        for w in range(args.workers)
        for i in range(args.sessions_per_worker)
    ]

    # -- ingest: stores ----------------------------------------------------------------------
    index = BlockIndex("decode", model=MODEL, block_size=bs)
    payloads: list[tuple[str, bytes]] = []
    for w, prefix_id, session in placement:
        toks = session_tokens(prefixes, prefix_id, session, tail_tokens)
        for p in store_payloads(
            toks, prefix_id, session, prefix_blocks, bs, args.chunk_blocks, args.events_per_payload
        ):
            payloads.append((workers[w], p))
    n_events = n_blocks = 0
    gc.disable()
    t0, c0 = time.perf_counter(), time.thread_time()
    for worker, payload in payloads:
        batch = decode_vllm_event_batch(payload)
        n_events += len(batch.events)
        n_blocks += index.apply_batch(worker, batch)
    store_s, store_cpu = time.perf_counter() - t0, time.thread_time() - c0
    gc.enable()
    indexed = sum(index.blocks_held(w) for w in workers)

    # decode alone (to split msgpack cost from rehash + index cost)
    t0 = time.perf_counter()
    for _, payload in payloads[:200]:
        decode_vllm_event_batch(payload)
    decode_per_payload = (time.perf_counter() - t0) / min(200, len(payloads))

    # -- ingest: removals (evict one session per worker, in 128-block events) and re-store ---
    removal_payloads = []
    for w in range(args.workers):
        _, prefix_id, session = placement[w * args.sessions_per_worker + args.sessions_per_worker - 1]
        keys = [engine_hash("s", session, b) for b in range(prefix_blocks, args.prompt_tokens // bs)]
        evs = [
            BlockRemoved(block_hashes=keys[i : i + args.chunk_blocks], medium="GPU", group_idx=0)
            for i in range(0, len(keys), args.chunk_blocks)
        ]
        removal_payloads.append((workers[w], msgspec.msgpack.encode([time.time(), evs])))
    r_events = r_blocks = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    for worker, payload in removal_payloads:
        batch = decode_vllm_event_batch(payload)
        r_events += len(batch.events)
        r_blocks += index.apply_batch(worker, batch)
    remove_s, remove_cpu = time.perf_counter() - t0, time.thread_time() - c0
    for worker, payload in payloads:  # restore the evicted sessions (idempotent for the rest)
        index.apply_batch(worker, decode_vllm_event_batch(payload))
    assert sum(index.blocks_held(w) for w in workers) == indexed

    # -- ingest: decode-phase stores (one new block per event, as decoding fills blocks) ------
    step_payloads = []
    for w in range(args.workers):
        _, prefix_id, session = placement[w * args.sessions_per_worker]
        parent = engine_hash("s", session, args.prompt_tokens // bs - 1)
        gen = np.random.default_rng(2_000_000 + session).integers(0, VOCAB, 256 * bs).tolist()
        for j in range(256):
            key = engine_hash("s", session, args.prompt_tokens // bs + j)
            event = BlockStored(
                block_hashes=[key],
                parent_block_hash=parent,
                token_ids=gen[j * bs : (j + 1) * bs],
                block_size=bs,
                medium="GPU",
                group_idx=0,
            )
            step_payloads.append((workers[w], msgspec.msgpack.encode([time.time(), [event]])))
            parent = key
    s_events = s_blocks = 0
    t0, c0 = time.perf_counter(), time.thread_time()
    for worker, payload in step_payloads:
        batch = decode_vllm_event_batch(payload)
        s_events += len(batch.events)
        s_blocks += index.apply_batch(worker, batch)
    step_s, step_cpu = time.perf_counter() - t0, time.thread_time() - c0

    # -- decisions -----------------------------------------------------------------------------
    loads = {
        w: WorkerLoad(
            active_requests=rng.randrange(8),
            queued_requests=rng.randrange(3),
            active_blocks=rng.randrange(20_000),
        )
        for w in workers
    }
    weights = RouterWeights()
    kinds: dict[str, list[list[int]]] = {"hot": [], "warm": [], "cold": []}
    hash_ms: list[float] = []
    for _ in range(16):
        w, prefix_id, session = rng.choice(placement)
        salt = derive_salt(MODEL)
        ids = session_tokens(prefixes, prefix_id, session, tail_tokens).tolist()
        c0 = time.thread_time()
        kinds["hot"].append(block_hashes(ids, bs, salt))
        hash_ms.append((time.thread_time() - c0) * 1e3)
        kinds["warm"].append(
            block_hashes(session_tokens(prefixes, prefix_id, 10**6 + session, tail_tokens).tolist(), bs, salt)
        )
        kinds["cold"].append(
            block_hashes(
                np.random.default_rng(session + 7).integers(0, VOCAB, args.prompt_tokens).tolist(), bs, salt
            )
        )
    results = {}
    for kind, requests in kinds.items():
        overlap_us, total_us, cpu_us, matched = [], [], [], []
        for q in range(args.queries):
            hashes = requests[q % len(requests)]
            c0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            ov = index.overlaps(hashes, workers)
            t1 = time.perf_counter_ns()
            choose(len(hashes), ov, loads, None, weights)
            t2 = time.perf_counter_ns()
            c1 = time.thread_time_ns()
            overlap_us.append((t1 - t0) / 1e3)
            total_us.append((t2 - t0) / 1e3)
            cpu_us.append((c1 - c0) / 1e3)
            matched.append(max(ov.values()))
        results[kind] = (overlap_us, total_us, cpu_us, statistics.median(matched))

    # -- report --------------------------------------------------------------------------------
    def row(*cells: object) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    indexed = sum(index.blocks_held(w) for w in workers)  # as the decisions saw it
    lines = [
        f"Router decision benchmark — {args.workers} workers, block size {bs}, "
        f"{args.prompt_tokens // 1024}k-token prompts ({args.prompt_tokens // bs} blocks), "
        f"block hash `{HASH_ALGO}`",
        "",
        f"Index: {indexed:,} indexed (worker, block) entries, {len(index):,} distinct block hashes; "
        f"peak RSS {rss_mib:,.0f} MiB. Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average at start {load_at_start:.1f}.",
        "",
        row(
            "request",
            "matched blocks (best worker)",
            "overlaps p50 µs",
            "overlaps p99 µs",
            "decision p50 µs",
            "decision p99 µs",
            "decision CPU p50 µs",
            "decision CPU p99 µs",
        ),
        row("---", *["---:"] * 7),
    ]
    for kind, (ov_us, tot_us, cpu_us, matched) in results.items():
        lines.append(
            row(
                kind,
                f"{matched:.0f}",
                *(f"{pct(xs, q):.1f}" for xs in (ov_us, tot_us, cpu_us) for q in (50, 99)),
            )
        )
    lines += [
        "",
        "Decision = `BlockIndex.overlaps` over all workers + `choose` (temperature 0), wall clock; "
        "the CPU columns (thread CPU time) exclude time the thread was descheduled.",
        "",
        row(
            "ingest (decode msgpack + rehash tokens + index)",
            "events",
            "blocks",
            "wall s",
            "CPU s",
            "events/s (wall)",
            "blocks/s (wall)",
            "blocks/s (CPU)",
        ),
        row("---", *["---:"] * 7),
    ]
    for label, events, blocks, wall, cpu in (
        (f"BlockStored, prefill ({args.chunk_blocks} blocks/event)", n_events, n_blocks, store_s, store_cpu),
        ("BlockStored, decode (1 block/event, 1 event/payload)", s_events, s_blocks, step_s, step_cpu),
        (f"BlockRemoved ({args.chunk_blocks} blocks/event)", r_events, r_blocks, remove_s, remove_cpu),
    ):
        lines.append(
            row(
                label,
                f"{events:,}",
                f"{blocks:,}",
                f"{wall:.2f}",
                f"{cpu:.2f}",
                f"{events / wall:,.0f}",
                f"{blocks / wall:,.0f}",
                f"{blocks / cpu:,.0f}",
            )
        )
    decode_us = decode_per_payload * 1e6 / args.events_per_payload
    lines += [
        "",
        f"Other costs: hashing one {args.prompt_tokens // 1024}k-token prompt (`block_hashes`, once per "
        f"request) CPU p50 {statistics.median(hash_ms):.2f} ms; msgpack decode alone {decode_us:.0f} µs "
        f"per {args.chunk_blocks}-block event.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        command = "python " + " ".join(["benchmarks/router_decision.py", *sys.argv[1:]])
        with open(args.output, "w") as fh:
            fh.write(f"# Router decision benchmark\n\n```\n{command}\n```\n\n{text}\n")


if __name__ == "__main__":
    main()
