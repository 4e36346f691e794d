"""BlockIndex: updates from KV events, prefix-overlap semantics, worker lifecycle."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvyard.router.events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KvEventBatch,
    decode_vllm_event_batch,
)
from kvyard.router.hashing import block_hashes, derive_salt
from kvyard.router.index import BlockIndex

MODEL = "test/model"
BS = 4
TOKENS = list(range(100, 100 + 8 * BS))  # 8 full blocks
REQ = block_hashes(TOKENS, BS, derive_salt(MODEL))


def _index(**kw) -> BlockIndex:
    return BlockIndex("prefill", model=MODEL, block_size=BS, **kw)


def _engine(i: int, tag: str = "e") -> bytes:
    return f"{tag}{i}".encode()


def stored(first: int, n: int, tokens=TOKENS, tag: str = "e", **kw) -> BlockStored:
    """Blocks first..first+n-1 of ``tokens``, with engine hashes ``{tag}{i}``."""
    return BlockStored(
        block_hashes=[_engine(i, tag) for i in range(first, first + n)],
        parent_block_hash=None if first == 0 else _engine(first - 1, tag),
        token_ids=tokens[first * BS : (first + n) * BS],
        block_size=BS,
        medium=kw.pop("medium", "GPU"),
        **kw,
    )


def removed(*blocks: int, tag: str = "e", **kw) -> BlockRemoved:
    return BlockRemoved(block_hashes=[_engine(i, tag) for i in blocks], medium=kw.pop("medium", "GPU"), **kw)


# -- stores and overlaps ----------------------------------------------------------------------


def test_stored_chain_gives_the_leading_overlap() -> None:
    index = _index()
    assert index.apply("w1", stored(0, 3)) == 3
    assert index.apply("w1", stored(3, 2)) == 2  # child event chained on the engine parent hash
    index.apply("w2", stored(0, 1))
    assert index.overlaps(REQ, ["w1", "w2", "w3"]) == {"w1": 5, "w2": 1, "w3": 0}
    assert index.overlaps(REQ) == {"w1": 5, "w2": 1}
    assert index.overlaps(REQ[:2], ["w1"]) == {"w1": 2}
    assert index.overlaps([], ["w1"]) == {"w1": 0}
    assert len(index) == 5 and index.blocks_held("w1") == 5


def test_overlap_is_the_longest_prefix_not_any_blocks() -> None:
    index = _index()
    index.apply("w", stored(0, 4))
    index.apply("w", removed(2))
    assert index.blocks_held("w") == 3  # holds 0, 1, 3
    assert index.overlaps(REQ, ["w"]) == {"w": 2}
    index.apply("v", stored(0, 4))
    index.apply("v", removed(0))  # holds 1, 2, 3 but not the first block: nothing reusable
    assert index.overlaps(REQ, ["v", "w"]) == {"v": 0, "w": 2}


def test_restoring_a_missing_middle_block_restores_the_prefix_behind_it() -> None:
    index = _index()
    index.apply("w", stored(0, 6))
    index.apply("w", removed(1))
    assert index.overlaps(REQ, ["w"]) == {"w": 1}
    index.apply("w", stored(1, 1))  # recomputed: blocks 2..5 are reusable again
    assert index.overlaps(REQ, ["w"]) == {"w": 6}
    index.apply("w", removed(0))
    assert index.overlaps(REQ, ["w"]) == {"w": 0}
    index.apply("w", stored(0, 1))
    assert index.overlaps(REQ, ["w"]) == {"w": 6}


def test_many_workers_drop_out_at_different_blocks() -> None:
    index = _index()
    for w in range(70):  # more than 64 workers: masks are unbounded ints
        index.apply(f"w{w:02d}", stored(0, w % 9) if w % 9 else AllBlocksCleared())
    got = index.overlaps(REQ)
    assert got == {f"w{w:02d}": min(w % 9, 8) for w in range(70)}


def test_restoring_a_known_block_is_idempotent() -> None:
    # kv_cache_report_mode="full" re-reports reused blocks from block 0; replays repeat events.
    index = _index()
    index.apply("w", stored(0, 3))
    assert index.apply("w", stored(0, 3)) == 0
    index.apply("w", removed(0))
    assert index.overlaps(REQ, ["w"]) == {"w": 0}
    assert index.blocks_held("w") == 2


def test_two_engine_hashes_for_one_block_keep_it_until_both_are_removed() -> None:
    index = _index()
    index.apply("w", stored(0, 2, tag="a"))
    index.apply("w", stored(0, 2, tag="b"))  # same tokens, other engine hashes (e.g. a LoRA path)
    assert index.blocks_held("w") == 2
    index.apply("w", removed(0, 1, tag="a"))
    assert index.overlaps(REQ, ["w"]) == {"w": 2}
    index.apply("w", removed(0, 1, tag="b"))
    assert index.overlaps(REQ, ["w"]) == {"w": 0}
    assert len(index) == 0


def test_removing_unknown_hashes_is_harmless() -> None:
    index = _index()
    index.apply("w", stored(0, 2))
    assert index.apply("w", removed(5, 6)) == 0
    assert index.apply("x", removed(0)) == 0  # another worker's removal does not touch w
    assert index.overlaps(REQ, ["w"]) == {"w": 2}


def test_all_blocks_cleared_empties_only_that_worker() -> None:
    index = _index()
    index.apply("w1", stored(0, 4))
    index.apply("w2", stored(0, 2))
    assert index.apply("w1", AllBlocksCleared()) == 4
    assert index.overlaps(REQ, ["w1", "w2"]) == {"w1": 0, "w2": 2}
    assert index.stats.cleared == 1
    index.apply("w1", stored(0, 1))  # the worker keeps working after a clear
    assert index.overlaps(REQ, ["w1"]) == {"w1": 1}


def test_remove_worker_forgets_it_and_its_slot_is_reused_clean() -> None:
    index = _index()
    index.apply("old", stored(0, 4))
    index.apply("other", stored(0, 1))
    index.remove_worker("old")
    index.remove_worker("never-seen")  # no-op
    assert "old" not in index.workers
    assert index.overlaps(REQ, ["old", "other"]) == {"old": 0, "other": 1}
    index.apply("new", stored(0, 1, tag="n"))  # takes the freed slot
    assert index.overlaps(REQ) == {"other": 1, "new": 1}
    assert len(index) == 1


def test_parent_unknown_is_counted_as_orphaned_not_indexed() -> None:
    index = _index()
    assert index.apply("w", stored(2, 2)) == 0
    assert index.stats.orphaned_blocks == 2
    assert len(index) == 0


def test_tenants_and_loras_never_share_blocks() -> None:
    index = _index()
    index.apply("a", stored(0, 2, extra_keys=[["tenant-a"], None]))
    index.apply("b", stored(0, 2, tag="x", lora_name="sql", extra_keys=[["sql", "tenant-a"], None]))
    index.apply("c", stored(0, 2, tag="y"))
    salted = block_hashes(TOKENS, BS, derive_salt(MODEL, cache_salt="tenant-a"))
    lora = block_hashes(TOKENS, BS, derive_salt(MODEL, lora="sql", cache_salt="tenant-a"))
    assert index.overlaps(salted) == {"a": 2, "b": 0, "c": 0}
    assert index.overlaps(lora) == {"a": 0, "b": 2, "c": 0}
    assert index.overlaps(REQ) == {"a": 0, "b": 0, "c": 2}


def test_other_groups_media_and_block_sizes_are_ignored_and_counted() -> None:
    index = _index()
    index.apply("w", stored(0, 2, group_idx=1))
    index.apply("w", stored(0, 2, medium="CPU"))
    index.apply("w", BlockStored(block_hashes=[b"z"], token_ids=TOKENS[:8], block_size=8, medium="GPU"))
    index.apply(
        "w", BlockStored(block_hashes=[b"q", b"r"], token_ids=TOKENS[:4], block_size=BS, medium="GPU")
    )
    assert len(index) == 0
    s = index.stats
    assert (s.ignored_other_group, s.ignored_other_medium, s.ignored_block_size, s.bad_events) == (2, 2, 1, 1)
    index.apply("w", stored(0, 2, group_idx=0))
    index.apply("w", removed(0, medium="CPU"))  # a CPU-tier eviction leaves the GPU copy
    index.apply("w", removed(1, group_idx=1))
    assert index.overlaps(REQ, ["w"]) == {"w": 2}
    cpu = _index(media={"CPU"})
    cpu.apply("w", stored(0, 2, medium="CPU"))
    assert cpu.overlaps(REQ, ["w"]) == {"w": 2}


def test_apply_batch_in_order() -> None:
    index = _index()
    batch = KvEventBatch(ts=0.0, events=[stored(0, 3), removed(2), AllBlocksCleared(), stored(0, 1)])
    assert index.apply_batch("w", batch) == 3 + 1 + 2 + 1
    assert index.overlaps(REQ, ["w"]) == {"w": 1}


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="pool"):
        BlockIndex("both", model=MODEL, block_size=BS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block_size"):
        BlockIndex("decode", model=MODEL, block_size=0)


# -- property: the index equals a naive model ---------------------------------------------------

# Two chains sharing their first SHARED blocks (one system prompt, two conversations).
SHARED = 3
TOKENS_B = TOKENS[: SHARED * BS] + [t + 7 for t in TOKENS[SHARED * BS :]]
REQ_B = block_hashes(TOKENS_B, BS, derive_salt(MODEL))
CHAINS = {"a": (TOKENS, REQ), "b": (TOKENS_B, REQ_B)}


def _key(chain: str, i: int) -> tuple[str, int]:
    """A block's identity: the shared blocks are the same block in both chains."""
    return ("shared", i) if i < SHARED else (chain, i)


def _chain_stored(chain: str, first: int, n: int) -> BlockStored:
    names = [repr(_key(chain, i)).encode() for i in range(first - 1, first + n)]
    tokens = CHAINS[chain][0]
    return BlockStored(
        block_hashes=names[1:],
        parent_block_hash=None if first == 0 else names[0],
        token_ids=tokens[first * BS : (first + n) * BS],
        block_size=BS,
        medium="GPU",
    )


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("store"), st.integers(0, 2), st.sampled_from("ab"), st.integers(0, 7), st.integers(1, 8)
        ),
        st.tuples(st.just("store"), st.integers(0, 2), st.sampled_from("ab"), st.just(0), st.integers(1, 8)),
        st.tuples(st.just("remove"), st.integers(0, 2), st.sampled_from("ab"), st.integers(0, 7), st.just(0)),
        st.tuples(st.just("clear"), st.integers(0, 2), st.just("a"), st.just(0), st.just(0)),
        st.tuples(st.just("drop"), st.integers(0, 2), st.just("a"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, asked=st.sets(st.integers(0, 4)))
def test_index_matches_a_naive_model(ops, asked) -> None:
    index = _index()
    model: dict[str, set[tuple[str, int]]] = {}
    for op, w, chain, first, n in ops:
        worker = f"w{w}"
        held = model.setdefault(worker, set())
        if op == "store":
            # only chains whose parent the worker holds are indexable; mirror that in the model
            n = min(n, 8 - first)
            if first == 0 or _key(chain, first - 1) in held:
                held.update(_key(chain, i) for i in range(first, first + n))
            index.apply(worker, _chain_stored(chain, first, n))
        elif op == "remove":
            held.discard(_key(chain, first))
            index.apply(worker, BlockRemoved(block_hashes=[repr(_key(chain, first)).encode()], medium="GPU"))
        elif op == "clear":
            held.clear()
            index.apply(worker, AllBlocksCleared())
        else:
            del model[worker]
            index.remove_worker(worker)

    def naive(held: set[tuple[str, int]], chain: str) -> int:
        n = 0
        while n < 8 and _key(chain, n) in held:
            n += 1
        return n

    workers = [f"w{w}" for w in sorted(asked)]
    for chain, (_, hashes) in CHAINS.items():
        assert index.overlaps(hashes, workers) == {w: naive(model.get(w, set()), chain) for w in workers}
        assert index.overlaps(hashes[:5], workers) == {
            w: min(5, naive(model.get(w, set()), chain)) for w in workers
        }
    ours = {_key(c, i): CHAINS[c][1][i] for c in CHAINS for i in range(8)}
    assert set(index._held) == {ours[k] for held in model.values() for k in held}
    # white box: rooted iff the worker holds the block and all its ancestors; links are exact
    for worker, held in model.items():
        bit = 1 << index._slots[worker]
        for chain, i in held:
            c = "a" if chain == "shared" else chain
            assert bool(index._rooted.get(ours[(chain, i)], 0) & bit) == (naive(held, c) > i), (
                worker,
                chain,
                i,
            )
    assert set(index._rooted) <= set(index._held)
    assert set(index._parent) == set(index._held)
    parent_of = {ours[_key(c, i)]: (ours[_key(c, i - 1)] if i else None) for c in CHAINS for i in range(8)}
    assert all(index._parent[h] == parent_of[h] for h in index._parent)
    children: dict[int, set[int]] = {}
    for h, p in index._parent.items():
        if p is not None:
            children.setdefault(p, set()).add(h)
    assert {p: set(index._kids(p)) for p in index._children} == children


# -- end to end with vLLM's own block pool ------------------------------------------------------


def test_events_from_vllm_block_pool_index_under_kvyard_hashes() -> None:
    kv_events = pytest.importorskip("vllm.distributed.kv_events")
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import sha256
    from vllm.v1.core.block_pool import BlockPool
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.request import Request

    init_none_hash(sha256)
    pool = BlockPool(num_gpu_blocks=12, enable_caching=True, hash_block_size=BS, enable_kv_cache_events=True)
    prompt = TOKENS[:22]  # 5 full blocks + 2 tokens
    request = Request(
        "r1",
        prompt,
        SamplingParams(max_tokens=1),
        None,
        cache_salt="tenant-a",
        block_hasher=get_request_block_hasher(BS, sha256),
    )
    blocks = pool.get_new_blocks(6)
    pool.cache_full_blocks(request, blocks, 0, 3, BS, 0)  # two scheduler steps: 3 then 2 blocks
    pool.cache_full_blocks(request, blocks, 3, 5, BS, 0)
    encode = msgspec.msgpack.Encoder().encode

    def ship(events) -> KvEventBatch:
        return decode_vllm_event_batch(encode(kv_events.KVEventBatch(ts=0.0, events=events)))

    index = _index()
    index.apply_batch("prefill-0", ship(pool.take_events()))
    ours = block_hashes(prompt, BS, derive_salt(MODEL, cache_salt="tenant-a"))
    assert len(ours) == 5
    assert index.overlaps(ours, ["prefill-0"]) == {"prefill-0": 5}
    assert index.overlaps(REQ, ["prefill-0"]) == {"prefill-0": 0}  # unsalted request: no reuse

    pool.free_blocks(reversed(blocks))  # vLLM frees tail first; new allocations evict
    pool.get_new_blocks(pool.get_num_free_blocks())
    index.apply_batch("prefill-0", ship(pool.take_events()))
    assert index.overlaps(ours, ["prefill-0"]) == {"prefill-0": 0}
    assert len(index) == 0 and index.stats.orphaned_blocks == 0
