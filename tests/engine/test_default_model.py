"""The embedded default (real SmolLM2-135M-Instruct, disaggregated as `make serve` runs it)
answers a factual question through the official OpenAI SDK."""

from __future__ import annotations

import pytest
from openai import OpenAI

from kvyard.config import AppConfig

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def smol_url(serve_url, smollm2_model):
    from ray import serve

    from kvyard.deployments.builder import build_app

    cfg = AppConfig.model_validate(
        {
            "model": {"path": str(smollm2_model)},
            "engine": {"cpu_kv_cache_gib": 1, "max_num_seqs": 8},
            "prefill": {"num_cpus": 0.5},
            "decode": {"num_cpus": 0.5},
            "frontend": {"num_cpus": 0.25},
        }
    )
    serve.run(build_app(cfg), name="smol", route_prefix="/smol")
    yield f"{serve_url}/smol"
    serve.delete("smol")  # frees two engines before the other engine tests


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
