"""Block index of one worker pool: which worker holds which block hash, fed by KV events.

One ``BlockIndex`` per (pool, model): the router keeps one for ``prefill`` and one for
``decode``. Keys are kvyard's own chained block hashes (``router/hashing.py``), recomputed from
the ``token_ids`` in each ``BlockStored`` event, so a request's hashes (computed from its
sanitized prompt) and the engines' blocks meet in one key space whatever vLLM's hash seed is.

State (Python ints are unbounded bitmasks over worker *slots*, reused after ``remove_worker``,
so any number of workers fits):

- ``_held[h]``: workers holding block ``h``;
- ``_rooted[h]``: workers holding ``h`` AND every block before it in its chain (a block hash
  names its whole prefix, so "before it" is well defined): the workers for which ``h`` ends a
  reusable prefix;
- ``_parent[h]`` / ``_children[h]``: the chain links (kept while anyone holds ``h``);
- per worker ``_engine[w]: dict[engine_hash, h]`` (vLLM's hash → ours: the key of later
  ``BlockRemoved`` events and of later stores' parents) and ``_count[w]: dict[h, int]`` (how
  many engine hashes map to ``h``: several can, when vLLM's hash covers inputs ours does not).

Updates: storing ``h`` on ``w`` roots it when its parent is rooted on ``w`` (or it is a first
block), then roots the held descendants below it (they were waiting for this ancestor);
removing ``h`` un-roots its rooted descendants on ``w``. vLLM evicts tails first, so those walks
are almost always empty: an update is O(blocks in the event) dict operations plus the rehash.
A store is idempotent (reuse reports and replays change nothing); ``AllBlocksCleared`` and
``remove_worker`` clear the worker in O(its blocks). A ``BlockStored`` whose parent engine hash
is unknown (events lost, or the router subscribed after the prefix was cached) cannot be
rehashed and is counted in ``stats.orphaned_blocks``. Events of other KV cache groups (hybrid
models: only ``group`` is tracked), other media (CPU offload tiers) or another block size are
ignored and counted.

``overlaps(hashes, workers)``: per worker, the number of LEADING request blocks it holds (the
reusable prefix; holding blocks 0, 1, 3 counts 2). Along a request's chain the rooted masks
only shrink (rooted at block i ⇒ rooted at i-1), so the answer is where each worker's bit
drops out of ``_rooted[hashes[i]]``, found by bisection: O(k · log n) lookups for n blocks and
k distinct overlap values among the workers, instead of a walk over all n. A 4096-block
(64k-token) prompt with 64 workers takes tens of lookups (see ``benchmarks/router_decision.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from kvyard.router.events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EngineBlockHash,
    KvEvent,
    KvEventBatch,
    cache_salt_of,
)
from kvyard.router.hashing import chain_hashes, derive_salt

Pool = Literal["prefill", "decode"]
DEFAULT_MEDIA: frozenset[str | None] = frozenset({None, "GPU"})


class IndexStats(msgspec.Struct):
    """Counters since the index was built (export them as metrics)."""

    stored_blocks: int = 0
    removed_blocks: int = 0
    cleared: int = 0
    orphaned_blocks: int = 0
    ignored_other_group: int = 0
    ignored_other_medium: int = 0
    ignored_block_size: int = 0
    bad_events: int = 0


class BlockIndex:
    """Which worker of one pool holds which block (see the module docstring)."""

    def __init__(
        self,
        pool: Pool,
        *,
        model: str,
        block_size: int,
        group: int = 0,
        media: Iterable[str | None] = DEFAULT_MEDIA,
        hash_algo: str | None = None,
    ) -> None:
        if pool not in ("prefill", "decode"):
            raise ValueError(f"pool must be 'prefill' or 'decode', got {pool!r}")
        if not isinstance(block_size, int) or block_size <= 0:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        self.pool: Pool = pool
        self.model = model
        self.block_size = block_size
        self.group = group
        self.media = frozenset(media)
        self.hash_algo = hash_algo
        self.stats = IndexStats()
        self._held: dict[int, int] = {}
        self._rooted: dict[int, int] = {}
        self._parent: dict[int, int | None] = {}
        self._children: dict[int, int | list[int]] = {}  # one child (the usual case) or several
        self._slots: dict[str, int] = {}
        self._free_slots: list[int] = []
        self._engine: dict[str, dict[EngineBlockHash, int]] = {}
        self._count: dict[str, dict[int, int]] = {}
        self._salts: dict[tuple[str | None, str | None], int] = {}

    # -- workers --------------------------------------------------------------------------

    @property
    def workers(self) -> list[str]:
        """Workers known to the index (added explicitly or by their first event)."""
        return list(self._slots)

    def add_worker(self, worker_id: str) -> None:
        """Register ``worker_id`` (idempotent); ``apply`` does it on a worker's first event."""
        if worker_id in self._slots:
            return
        slot = self._free_slots.pop() if self._free_slots else len(self._slots)
        self._slots[worker_id] = slot
        self._engine[worker_id] = {}
        self._count[worker_id] = {}

    def remove_worker(self, worker_id: str) -> None:
        """Forget ``worker_id`` and every block it held (scale-down, crash). Unknown ids: no-op."""
        if worker_id not in self._slots:
            return
        self._clear(worker_id)
        slot = self._slots.pop(worker_id)
        del self._engine[worker_id], self._count[worker_id]
        self._free_slots.append(slot)

    def blocks_held(self, worker_id: str) -> int:
        """Distinct block hashes ``worker_id`` holds (0 when unknown)."""
        return len(self._count.get(worker_id, ()))

    def __len__(self) -> int:
        """Distinct block hashes held by at least one worker."""
        return len(self._held)

    # -- events ---------------------------------------------------------------------------

    def apply_batch(self, worker_id: str, batch: KvEventBatch) -> int:
        """Apply every event of ``batch`` in order; returns the blocks added + removed."""
        changed = 0
        for event in batch.events:
            changed += self.apply(worker_id, event)
        return changed

    def apply(self, worker_id: str, event: KvEvent) -> int:
        """Apply one event from ``worker_id``; returns the number of blocks added or removed."""
        if worker_id not in self._slots:
            self.add_worker(worker_id)
        if isinstance(event, BlockStored):
            return self._store(worker_id, event)
        if isinstance(event, BlockRemoved):
            return self._remove(worker_id, event)
        if isinstance(event, AllBlocksCleared):
            self.stats.cleared += 1
            return self._clear(worker_id)
        self.stats.bad_events += 1
        return 0

    def _salt(self, lora: str | None, cache_salt: str | None) -> int:
        key = (lora, cache_salt)
        salt = self._salts.get(key)
        if salt is None:
            salt = self._salts[key] = derive_salt(self.model, lora, cache_salt)
        return salt

    def _store(self, worker_id: str, event: BlockStored) -> int:
        n = len(event.block_hashes)
        if (event.group_idx or 0) != self.group:
            self.stats.ignored_other_group += n
            return 0
        if event.medium not in self.media:
            self.stats.ignored_other_medium += n
            return 0
        if event.block_size != self.block_size:
            self.stats.ignored_block_size += n
            return 0
        if len(event.token_ids) != n * self.block_size:
            self.stats.bad_events += 1
            return 0
        engine = self._engine[worker_id]
        parent: int | None
        if event.parent_block_hash is None:
            try:
                seed = self._salt(event.lora_name, cache_salt_of(event))
            except ValueError:
                self.stats.bad_events += 1
                return 0
            parent = None
        else:
            parent = engine.get(event.parent_block_hash)
            if parent is None:
                self.stats.orphaned_blocks += n
                return 0
            seed = parent
        ours = chain_hashes(seed, event.token_ids, self.block_size, algo=self.hash_algo)
        count = self._count[worker_id]
        bit = 1 << self._slots[worker_id]
        held, rooted, parents, children = self._held, self._rooted, self._parent, self._children
        added = 0
        for engine_hash, h in zip(event.block_hashes, ours, strict=True):
            if engine_hash not in engine:  # else idempotent: a reuse report or a replay
                engine[engine_hash] = h
                c = count.get(h, 0)
                count[h] = c + 1
                if c == 0:
                    added += 1
                    held[h] = held.get(h, 0) | bit
                    if h not in parents:
                        parents[h] = parent
                        if parent is not None:
                            siblings = children.get(parent)
                            if siblings is None:
                                children[parent] = h
                            elif type(siblings) is int:
                                children[parent] = [siblings, h]
                            else:
                                siblings.append(h)
                    if parent is None or rooted.get(parent, 0) & bit:
                        rooted[h] = rooted.get(h, 0) | bit
                        if h in children:  # held descendants were waiting for this block
                            self._root_descendants(h, bit, count)
            parent = h
        self.stats.stored_blocks += added
        return added

    def _kids(self, h: int) -> list[int]:
        kids = self._children.get(h)
        return [] if kids is None else [kids] if type(kids) is int else list(kids)

    def _root_descendants(self, h: int, bit: int, count: dict[int, int]) -> None:
        """``h`` just became rooted for ``bit``: root the held descendants now reachable."""
        rooted = self._rooted
        stack = self._kids(h)
        while stack:
            x = stack.pop()
            if x in count and not rooted.get(x, 0) & bit:
                rooted[x] = rooted.get(x, 0) | bit
                stack.extend(self._kids(x))

    def _unroot_down(self, h: int, bit: int) -> None:
        """Un-root ``h`` for ``bit`` and every descendant rooted through it."""
        rooted = self._rooted
        clear = ~bit
        stack = [h]
        while stack:
            x = stack.pop()
            mask = rooted[x] & clear
            if mask:
                rooted[x] = mask
            else:
                del rooted[x]
            stack.extend(k for k in self._kids(x) if rooted.get(k, 0) & bit)

    def _forget(self, h: int) -> None:
        """``h`` is held by nobody: drop its link to its parent (its own children keep theirs)."""
        parent = self._parent.pop(h)
        if parent is None:
            return
        siblings = self._children[parent]
        if type(siblings) is int:
            del self._children[parent]
        else:
            siblings.remove(h)
            if len(siblings) == 1:
                self._children[parent] = siblings[0]

    def _remove(self, worker_id: str, event: BlockRemoved) -> int:
        if (event.group_idx or 0) != self.group:
            self.stats.ignored_other_group += len(event.block_hashes)
            return 0
        if event.medium not in self.media:
            self.stats.ignored_other_medium += len(event.block_hashes)
            return 0
        engine = self._engine[worker_id]
        count = self._count[worker_id]
        bit = 1 << self._slots[worker_id]
        held, rooted = self._held, self._rooted
        removed = 0
        for engine_hash in event.block_hashes:
            h = engine.pop(engine_hash, None)
            if h is None:
                continue
            c = count[h] - 1
            if c:
                count[h] = c
                continue
            del count[h]
            removed += 1
            if rooted.get(h, 0) & bit:
                self._unroot_down(h, bit)
            mask = held[h] & ~bit
            if mask:
                held[h] = mask
            else:
                del held[h]
                self._forget(h)
        self.stats.removed_blocks += removed
        return removed

    def _clear(self, worker_id: str) -> int:
        count = self._count[worker_id]
        clear = ~(1 << self._slots[worker_id])
        held, rooted = self._held, self._rooted
        for h in count:
            mask = rooted.get(h, 0) & clear
            if mask:
                rooted[h] = mask
            else:
                rooted.pop(h, None)
            mask = held[h] & clear
            if mask:
                held[h] = mask
            else:
                del held[h]
                self._forget(h)
        n = len(count)
        count.clear()
        self._engine[worker_id].clear()
        return n

    # -- queries --------------------------------------------------------------------------

    def overlaps(self, hashes: Sequence[int], workers: Iterable[str] | None = None) -> dict[str, int]:
        """Leading blocks of ``hashes`` (one request's chain) held by each of ``workers``.

        ``workers`` defaults to all known workers. Every requested worker is in the result;
        workers the index does not know get 0.
        """
        slots = self._slots
        wanted = list(slots) if workers is None else list(workers)
        result = dict.fromkeys(wanted, 0)
        live = 0
        owner: dict[int, str] = {}
        for w in wanted:
            slot = slots.get(w)
            if slot is not None:
                live |= 1 << slot
                owner[1 << slot] = w
        if not live or not hashes:
            return result
        get = self._rooted.get
        first = get(hashes[0], 0) & live
        # Invariant of each span (lo, hi, at_lo, at_hi): at_lo = R(lo), at_hi = R(hi) where
        # R(i) = live workers rooted at block i, R(len) = 0. R only shrinks, so equal ends mean
        # a constant span, and a drop between neighbours lo, lo+1 gives those workers lo + 1.
        spans = [(0, len(hashes), first, 0)] if first else []
        while spans:
            lo, hi, at_lo, at_hi = spans.pop()
            if at_lo == at_hi:
                continue
            if hi - lo == 1:
                dropped = at_lo & ~at_hi
                while dropped:
                    low = dropped & -dropped
                    result[owner[low]] = hi
                    dropped ^= low
                continue
            mid = (lo + hi) // 2
            at_mid = get(hashes[mid], 0) & at_lo  # & at_lo: stay monotone even on a collision
            spans.append((mid, hi, at_mid, at_hi))
            spans.append((lo, mid, at_lo, at_mid))
        return result
