"""The embedded default (the real SmolLM2-135M-Instruct) answers a factual question through the
official OpenAI SDK. One aggregated engine here to spare RAM; the P/D path is the same code and is
covered token for token in test_pd.py."""

from __future__ import annotations

import pytest
from openai import OpenAI

from kvyard.config import AppConfig
from tests.engine_support import deploy

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def smol_url(serve_url, smollm2_model):
    from ray import serve

    cfg = AppConfig.model_validate(
        {
            "mode": "aggregated",
            "model": {"path": str(smollm2_model)},
            "engine": {"cpu_kv_cache_gib": 1, "max_num_seqs": 8},
            "decode": {"num_cpus": 0.5},
            "frontend": {"num_cpus": 0.25},
        }
    )
    deploy("smol", cfg.model_dump())
    yield f"{serve_url}/smol"
    serve.delete("smol")


def test_default_model_names_paris(smol_url):
    client = OpenAI(base_url=f"{smol_url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=40,
        temperature=0,
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
