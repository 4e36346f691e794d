"""KV cache events as the router consumes them, decoded from vLLM's KV event payloads.

vLLM 0.32 (``vllm/distributed/kv_events.py``) publishes over ZMQ multipart messages
``(topic, seq: 8-byte big-endian, payload)``; ``payload`` is msgspec msgpack of a
``KVEventBatch``:

- the batch is *array-like*: ``[ts: float, events: list, data_parallel_rank?: int]``
  (``data_parallel_rank`` omitted when ``None``);
- each event is a *map* tagged by ``"type"`` (``"BlockStored"``, ``"BlockRemoved"``,
  ``"AllBlocksCleared"``), with default-valued fields omitted;
- block hashes (``ExternalBlockHash``) are ``bytes`` (sha256-based) or ``int``
  (``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES``).

The structs below mirror those fields (all optional ones defaulted, unknown fields ignored) so
that a newer vLLM adding fields still decodes. The router keeps vLLM's hashes only as opaque keys
for later ``BlockRemoved`` events; it rehashes ``token_ids`` itself (``router/hashing.py``).

``BlockStored.extra_keys`` (one entry per block) carries, in order, the LoRA name (when
``lora_name`` is set), ``[mm_identifier, offset]`` pairs, the ``cache_salt`` string (first block
of a prompt only) and prompt-embedding digests (bytes). ``cache_salt_of`` extracts the salt.

Cost: one typed msgspec decode per payload (C speed, no per-field Python work). If the batch
holds an event type this module does not know, it falls back to decoding event by event and
drops the unknown ones (counted in ``KvEventBatch.unknown``).
"""

from __future__ import annotations

from typing import Any

import msgspec

EngineBlockHash = bytes | int
"""vLLM's own block hash: an opaque key, only used to match ``BlockRemoved`` to ``BlockStored``."""


class _Event(msgspec.Struct, tag_field="type", omit_defaults=True, gc=False, frozen=True):
    """Base of the events (map-encoded, tagged by ``type``, as vLLM encodes them)."""


class BlockStored(_Event, tag="BlockStored"):
    """Full blocks newly cached (or, with ``kv_cache_report_mode="full"``, reused) by an engine.

    ``token_ids`` are the tokens of all ``block_hashes`` in order (``block_size`` each);
    ``parent_block_hash`` is the engine hash of the block before the first one (``None``: the
    first block of a prompt).
    """

    block_hashes: list[EngineBlockHash]
    parent_block_hash: EngineBlockHash | None = None
    token_ids: list[int] = msgspec.field(default_factory=list)
    block_size: int = 0
    lora_id: int | None = None
    medium: str | None = None
    lora_name: str | None = None
    extra_keys: list[list[Any] | None] | None = None
    group_idx: int | None = None
    kv_cache_spec_kind: str | None = None
    kv_cache_spec_sliding_window: int | None = None
    locality: str | None = None
    ownership: str | None = None
    session_id: str | None = None


class BlockRemoved(_Event, tag="BlockRemoved"):
    """Blocks evicted from ``medium`` (identified by their engine hashes)."""

    block_hashes: list[EngineBlockHash]
    medium: str | None = None
    group_idx: int | None = None
    locality: str | None = None
    ownership: str | None = None


class AllBlocksCleared(_Event, tag="AllBlocksCleared"):
    """The engine dropped its whole prefix cache (e.g. ``reset_prefix_cache``)."""


KvEvent = BlockStored | BlockRemoved | AllBlocksCleared


class KvEventBatch(msgspec.Struct, gc=False):
    """One published batch: ``ts`` (engine wall clock, seconds), events in order."""

    ts: float
    events: list[KvEvent]
    data_parallel_rank: int | None = None
    unknown: int = 0
    """Events of types this module does not know (dropped)."""


class _WireBatch(msgspec.Struct, array_like=True, gc=False):
    """vLLM's ``KVEventBatch`` layout: ``[ts, events, data_parallel_rank?]``."""

    ts: float
    events: list[KvEvent]
    data_parallel_rank: int | None = None


class _RawBatch(msgspec.Struct, array_like=True, gc=False):
    ts: float
    events: list[msgspec.Raw]
    data_parallel_rank: int | None = None


_decode_batch = msgspec.msgpack.Decoder(_WireBatch).decode
_decode_raw_batch = msgspec.msgpack.Decoder(_RawBatch).decode
_decode_event = msgspec.msgpack.Decoder(KvEvent).decode


def decode_vllm_event_batch(payload: bytes) -> KvEventBatch:
    """Decode the payload frame of one vLLM KV event message.

    Raises ``ValueError`` (``msgspec.DecodeError``) when the payload is not a KV event batch.
    Events of unknown types are dropped and counted in ``unknown``; the rest are kept in order.
    """
    try:
        wire = _decode_batch(payload)
        return KvEventBatch(wire.ts, wire.events, wire.data_parallel_rank)
    except msgspec.ValidationError:
        raw = _decode_raw_batch(payload)  # raises if it is not a batch at all
    events: list[KvEvent] = []
    unknown = 0
    for item in raw.events:
        try:
            events.append(_decode_event(item))
        except msgspec.ValidationError:
            unknown += 1
    return KvEventBatch(raw.ts, events, raw.data_parallel_rank, unknown)


def cache_salt_of(event: BlockStored) -> str | None:
    """The ``cache_salt`` of the prompt whose first block ``event`` stores, if any.

    Only meaningful when ``parent_block_hash is None`` (vLLM adds the salt to block 0's extra
    keys only). The salt is the one string in ``extra_keys[0]`` after the LoRA name; more than
    one candidate (not produced by vLLM 0.32) raises ``ValueError``.
    """
    if not event.extra_keys or event.extra_keys[0] is None:
        return None
    keys = list(event.extra_keys[0])
    if event.lora_name is not None and keys and keys[0] == event.lora_name:
        keys = keys[1:]
    strings = [k for k in keys if isinstance(k, str)]
    if not strings:
        return None
    if len(strings) > 1:
        raise ValueError(f"ambiguous extra_keys for the first block: {len(strings)} strings")
    return strings[0]
