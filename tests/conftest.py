"""Shared fixtures: test models are built once per session into a cache keyed by their parameters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL_CACHE = Path(os.environ.get("KVYARD_TEST_MODELS", Path.home() / ".cache" / "kvyard" / "test-models"))

# Small enough to start fast on 2 cores, big enough that every prompt spans several KV blocks.
TINY_QWEN3 = dict(arch="qwen3", hidden_size=128, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=256, max_model_len=2048, seed=0)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from kvyard.models import build_model

    return build_model("random", MODEL_CACHE / "tiny-qwen3", **TINY_QWEN3)


@pytest.fixture(scope="session")
def smollm2_model() -> Path:
    from kvyard.models import build_model

    return build_model("smollm2", MODEL_CACHE / "SmolLM2-135M-Instruct")
