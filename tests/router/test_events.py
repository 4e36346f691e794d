"""Decoding vLLM 0.32 KV event payloads (built with vLLM's own classes and encoder)."""

from __future__ import annotations

import msgspec
import pytest

from kvyard.router.events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    cache_salt_of,
    decode_vllm_event_batch,
)

kv_events = pytest.importorskip("vllm.distributed.kv_events")
encode = msgspec.msgpack.Encoder().encode  # what vLLM's ZmqEventPublisher uses


def _vllm_stored(hashes, parent, tokens, **kw):
    fields = dict(block_size=4, lora_id=None, medium="GPU", lora_name=None)
    fields.update(kw)
    return kv_events.BlockStored(block_hashes=hashes, parent_block_hash=parent, token_ids=tokens, **fields)


@pytest.mark.parametrize(
    "hashes", [pytest.param([b"\x01" * 32, b"\x02" * 32], id="bytes"), pytest.param([2**64 - 1, 7], id="int")]
)
def test_decodes_a_vllm_batch(hashes) -> None:
    batch = kv_events.KVEventBatch(
        ts=1234.5,
        events=[
            _vllm_stored(hashes, None, list(range(8)), extra_keys=[("tenant-a",), None], group_idx=0),
            _vllm_stored(
                [hashes[0]], hashes[1], [9, 9, 9, 9], lora_id=3, lora_name="sql", extra_keys=[("sql",)]
            ),
            kv_events.BlockRemoved(block_hashes=[hashes[1]], medium="GPU"),
            kv_events.AllBlocksCleared(),
        ],
        data_parallel_rank=2,
    )
    out = decode_vllm_event_batch(encode(batch))
    assert out.ts == 1234.5 and out.data_parallel_rank == 2 and out.unknown == 0
    stored, child, removed, cleared = out.events
    assert isinstance(stored, BlockStored)
    assert stored.block_hashes == hashes and stored.parent_block_hash is None
    assert stored.token_ids == list(range(8)) and stored.block_size == 4
    assert stored.medium == "GPU" and stored.group_idx == 0
    assert cache_salt_of(stored) == "tenant-a"
    assert isinstance(child, BlockStored)
    assert child.parent_block_hash == hashes[1] and child.lora_name == "sql" and child.lora_id == 3
    assert cache_salt_of(child) is None  # the only string is the LoRA name
    assert isinstance(removed, BlockRemoved) and removed.block_hashes == [hashes[1]]
    assert isinstance(cleared, AllBlocksCleared)


def test_data_parallel_rank_may_be_absent() -> None:
    out = decode_vllm_event_batch(encode(kv_events.KVEventBatch(ts=1.0, events=[])))
    assert out.events == [] and out.data_parallel_rank is None


def test_unknown_event_types_and_fields_are_tolerated() -> None:
    # A newer vLLM may add event types and fields: unknown types are dropped (and counted),
    # unknown fields ignored, the rest kept in order.
    payload = msgspec.msgpack.encode(
        [
            2.0,
            [
                {
                    "type": "BlockStored",
                    "block_hashes": [1],
                    "parent_block_hash": None,
                    "token_ids": [1, 2],
                    "block_size": 2,
                    "lora_id": None,
                    "medium": "GPU",
                    "lora_name": None,
                    "brand_new": 1,
                },
                {"type": "BlockPinned", "block_hashes": [1]},
                {"type": "BlockRemoved", "block_hashes": [1], "medium": "GPU"},
            ],
        ]
    )
    out = decode_vllm_event_batch(payload)
    assert out.unknown == 1
    assert [type(e) for e in out.events] == [BlockStored, BlockRemoved]


@pytest.mark.parametrize(
    "payload", [b"", b"\xc1", msgspec.msgpack.encode({"ts": 1.0}), msgspec.msgpack.encode([1.0, 5])]
)
def test_garbage_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_vllm_event_batch(payload)


def test_cache_salt_extraction() -> None:
    def stored(extra, lora=None):
        return BlockStored(block_hashes=[1], token_ids=[1], block_size=1, lora_name=lora, extra_keys=extra)

    assert cache_salt_of(stored(None)) is None
    assert cache_salt_of(stored([None])) is None
    assert cache_salt_of(stored([["salt"]])) == "salt"
    assert cache_salt_of(stored([["sql", "salt"]], lora="sql")) == "salt"
    assert cache_salt_of(stored([["sql"]], lora="sql")) is None
    assert cache_salt_of(stored([[["mm-hash", 0], "salt", b"\x00" * 32]])) == "salt"  # mm pair, digest
    with pytest.raises(ValueError, match="ambiguous"):
        cache_salt_of(stored([["a", "b"]]))
