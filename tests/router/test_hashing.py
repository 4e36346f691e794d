"""Block hashing: determinism across processes, chaining, salt isolation, partial blocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kvyard.router import hashing
from kvyard.router.hashing import HASH_ALGO, HASH_ALGOS, block_hashes, chain_hashes, derive_salt

AVAILABLE = [a for a in HASH_ALGOS if a != "xxh3-64" or hashing._xxhash is not None]
MODEL = "Qwen/Qwen3-0.6B"
SALT = derive_salt(MODEL)
IDS = [(i * 7919) % 151_000 for i in range(100)]  # 6 full blocks of 16 + 4 tokens


@pytest.fixture(params=AVAILABLE)
def algo(request: pytest.FixtureRequest) -> str:
    return request.param


def test_known_answers_pin_the_encoding() -> None:
    # Shared state (Redis, other replicas) depends on these exact values: changing the token
    # packing, the salt derivation or the chaining must be a deliberate, versioned change.
    assert derive_salt(MODEL) == 17906697369567940865
    assert derive_salt("m", "lora-a", "tenant-1") == 15098159353268186886
    assert block_hashes(list(range(40)), 16, SALT, algo="blake2b-64") == [
        12542936804196179414,
        4739548176807942270,
    ]
    if hashing._xxhash is not None:
        assert block_hashes(list(range(40)), 16, SALT, algo="xxh3-64") == [
            13051231363864698792,
            13801691075368801706,
        ]


def test_only_full_blocks_are_hashed(algo: str) -> None:
    assert len(block_hashes(IDS, 16, SALT, algo=algo)) == 6
    assert block_hashes(IDS[:15], 16, SALT, algo=algo) == []
    assert block_hashes([], 16, SALT, algo=algo) == []
    # the trailing partial block changes nothing
    assert block_hashes(IDS[:96], 16, SALT, algo=algo) == block_hashes(IDS, 16, SALT, algo=algo)
    assert block_hashes([*IDS[:97], 5, 6, 7], 16, SALT, algo=algo) == block_hashes(IDS, 16, SALT, algo=algo)


def test_deterministic_and_64_bit(algo: str) -> None:
    a = block_hashes(IDS, 16, SALT, algo=algo)
    assert a == block_hashes(list(IDS), 16, SALT, algo=algo)
    assert a == block_hashes(tuple(IDS), 16, SALT, algo=algo)
    assert all(0 <= h < 2**64 for h in a)
    assert len(set(a)) == len(a)


def test_same_hashes_in_another_process_with_another_hash_seed(algo: str) -> None:
    code = (
        "import json,sys; from kvyard.router.hashing import block_hashes, derive_salt;"
        f"print(json.dumps(block_hashes({IDS!r}, 16, derive_salt({MODEL!r}), algo={algo!r})))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == block_hashes(IDS, 16, SALT, algo=algo)


def test_hashes_chain_over_the_whole_prefix(algo: str) -> None:
    base = block_hashes(IDS, 16, SALT, algo=algo)
    changed = list(IDS)
    changed[40] += 1  # a token of block 2
    other = block_hashes(changed, 16, SALT, algo=algo)
    assert other[:2] == base[:2]
    assert all(x != y for x, y in zip(other[2:], base[2:], strict=True))  # every later block differs too
    # the same block content at another position hashes differently
    repeated = IDS[:16] * 3
    r = block_hashes(repeated, 16, SALT, algo=algo)
    assert len(set(r)) == 3


def test_incremental_chain_equals_full_hash(algo: str) -> None:
    full = block_hashes(IDS, 16, SALT, algo=algo)
    head = block_hashes(IDS[:32], 16, SALT, algo=algo)
    tail = chain_hashes(head[-1], IDS[32:], 16, algo=algo)
    assert head + tail == full


def test_salt_isolates_models_loras_and_tenants(algo: str) -> None:
    salts = {
        derive_salt(MODEL),
        derive_salt(MODEL, cache_salt="tenant-a"),
        derive_salt(MODEL, cache_salt="tenant-b"),
        derive_salt(MODEL, lora="sql-lora"),
        derive_salt(MODEL, lora="sql-lora", cache_salt="tenant-a"),
        derive_salt("other/model"),
    }
    assert len(salts) == 6
    per_salt = [block_hashes(IDS, 16, s, algo=algo) for s in salts]
    all_hashes = [h for hashes in per_salt for h in hashes]
    assert len(set(all_hashes)) == len(all_hashes)  # no tenant shares any block hash
    # fields are length-prefixed: moving characters between fields changes the salt
    assert derive_salt("ab", "c") != derive_salt("a", "bc")
    assert derive_salt("m", "x", None) != derive_salt("m", None, "x")
    # "" and None both mean "none"
    assert derive_salt(MODEL, "", "") == derive_salt(MODEL, None, None)


def test_block_size_changes_the_hashes(algo: str) -> None:
    h16 = block_hashes(IDS, 16, SALT, algo=algo)
    h32 = block_hashes(IDS, 32, SALT, algo=algo)
    assert len(h32) == 3 and not set(h16) & set(h32)


def test_default_algo_is_the_process_algo() -> None:
    assert block_hashes(IDS, 16, SALT) == block_hashes(IDS, 16, SALT, algo=HASH_ALGO)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: block_hashes(IDS, 0, SALT), "block_size"),
        (lambda: block_hashes(IDS, 16.0, SALT), "block_size"),  # type: ignore[arg-type]
        (lambda: block_hashes([-1] * 16, 16, SALT), "token ids"),
        (lambda: block_hashes([2**32] * 16, 16, SALT), "token ids"),
        (lambda: block_hashes(IDS, 16, -1), "64-bit"),
        (lambda: block_hashes(IDS, 16, SALT, algo="md5"), "unknown block hash"),
        (lambda: derive_salt(""), "model"),
    ],
)
def test_bad_input_is_a_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
