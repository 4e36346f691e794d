"""The trace's ideal prefix reuse: what a perfect cache and router could have served from cache.

Definition (the one ``tests/engine/test_kv_routing.py`` uses, made causal): a request's ideal
cached tokens are the longest *block-aligned* prefix its prompt shares with any prompt whose
prefill had finished (its first output event arrived) before this request was sent, capped at
``(len(prompt) - 1) // block * block`` because vLLM always computes the prompt's last token.
Prompts still in prefill, or whose request failed before any output, are not counted: no cache
could have held them yet. The cache is unbounded (no eviction) and shared by all workers, so
this is an upper bound for any real system, save one thing: prompts only, not generated tokens;
a server that reuses the KV of an earlier *reply* (kvyard's token-exact replay does) can exceed
it by up to a reply per turn.

Algorithm: every prompt is cut into full blocks, each keyed by a chained hash (key of block k =
``hash((key of block k-1, tokens of block k))``), so one key stands for the whole prefix up to
its block. Requests are taken in send order; before each, the keys of every prompt that became
ready by then join one set; the request's ideal is the number of its leading keys in the set,
times the block size. Cost: O(total prompt tokens) hashing plus O(requests · log requests) for
the ordering; memory one key per distinct block. Python's tuple hash (64 bits, deterministic for
ints) keys the blocks: a false match needs a 64-bit collision.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

BLOCK = 32


class PromptTiming(msgspec.Struct, frozen=True):
    t_send: float
    t_ready: float | None
    """When the prefill had finished (first output event); None if it never did."""
    ids: Sequence[int] | None
    """Prompt token ids; None when unknown (that request gets no ideal, and adds nothing)."""


def block_keys(ids: Sequence[int], block: int = BLOCK) -> list[int]:
    keys, prev = [], 0
    for start in range(0, len(ids) - block + 1, block):
        prev = hash((prev, tuple(ids[start : start + block])))
        keys.append(prev)
    return keys


def cached_prefix(keys: Sequence[int], available: set[int], prompt_len: int, block: int = BLOCK) -> int:
    """Tokens of a prompt served from ``available``: its leading keys found there, block-aligned,
    capped so that the last prompt token is computed."""
    n = 0
    for k in keys:
        if k not in available:
            break
        n += 1
    return min(n, max(prompt_len - 1, 0) // block) * block


def ideal_cached(prompts: Sequence[PromptTiming], block: int = BLOCK) -> list[int | None]:
    """Ideal cached tokens of each prompt (see the module docstring), in input order."""
    keys = [block_keys(p.ids, block) if p.ids is not None else [] for p in prompts]
    ready = sorted((p.t_ready, i) for i, p in enumerate(prompts) if p.t_ready is not None and p.ids is not None)
    available: set[int] = set()
    out: list[int | None] = [None] * len(prompts)
    r = 0
    for i in sorted(range(len(prompts)), key=lambda i: (prompts[i].t_send, i)):
        while r < len(ready) and ready[r][0] <= prompts[i].t_send:
            available.update(keys[ready[r][1]])
            r += 1
        p = prompts[i]
        if p.ids is not None:
            out[i] = cached_prefix(keys[i], available, len(p.ids), block)
    return out
