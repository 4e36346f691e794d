"""The real frontend (``deployments.frontend.Frontend``) as Ray Serve runs it, without Ray.

``serve.ingress(app)(Frontend)`` builds the class Serve deploys: it turns the handler methods into
routes that take ``self`` from a FastAPI dependency, and wraps a frozen copy of the app. Serve's
dependency returns the replica's servable object; outside a replica we override that one
dependency with our instance. Nothing else differs from a deployed replica, except the engines:
``FakeEngineHandle`` stands in for the engine pool's Serve handle.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kvyard.protocol import EngineChunk, EngineRequest

API_KEY = "sk-fuzz-0001"
MODEL = "tiny-qwen3"
MAX_MODEL_LEN = 2048
MAX_REQUEST_BYTES = 1024 * 1024
FAKE_TEXT = "Hello from the fake engine."


class _Method:
    def __init__(self, fn):
        self.remote = fn


class FakeEngineHandle:
    """A FAKE engine pool handle (the ``.options(stream=True).generate.remote(...)`` surface of a
    Ray Serve ``DeploymentHandle`` to ``EngineServer``).

    Used only by tests of request validation and of the three API layers: they need the frontend
    to get past the engine so that the encoders run, not an engine. Every request gets the token
    ids of ``FAKE_TEXT`` followed by the end-of-turn token, cut at the request's ``max_tokens``
    (``finish_reason`` ``length`` then), two ids per chunk. It refuses what vLLM's
    ``SamplingParams`` and input checks refuse (a ``ValueError`` in the engine, which the
    frontend reports as a 502), so a bad value that an API lets through fails the tests.
    """

    deployment_name = "FakeEngine"

    def __init__(self, token_ids: list[int], end_id: int, max_model_len: int):
        self.token_ids = [*token_ids, end_id]
        self.max_model_len = max_model_len
        self.requests: list[EngineRequest] = []
        self.generate = _Method(self._generate)
        self.prefill = _Method(self._prefill)
        self.stats = _Method(self._stats)

    def options(self, **_: Any) -> FakeEngineHandle:
        return self

    @staticmethod
    def _check(request: EngineRequest, max_model_len: int) -> None:
        s = request.sampling
        if not (isinstance(s.temperature, float | int) and math.isfinite(s.temperature) and 0 <= s.temperature <= 2):
            raise ValueError(f"temperature must be in [0, 2], got {s.temperature}")
        if not 0 < s.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {s.top_p}")
        if s.top_k < -1:
            raise ValueError(f"top_k must be 0 (disable), or at least 1, got {s.top_k}")
        if s.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {s.max_tokens}")
        if s.seed is not None and not -(2**63) <= s.seed < 2**63:
            raise ValueError(f"seed {s.seed} does not fit a 64-bit generator")
        if not request.prompt_token_ids:
            raise ValueError("the prompt is empty")
        if len(request.prompt_token_ids) + s.max_tokens > max_model_len:
            raise ValueError(f"prompt ({len(request.prompt_token_ids)}) + max_tokens ({s.max_tokens}) is past the context ({max_model_len})")

    async def _generate(self, request: EngineRequest) -> AsyncIterator[EngineChunk]:
        self._check(request, self.max_model_len)
        self.requests.append(request)
        ids = self.token_ids[: request.sampling.max_tokens]
        reason = "stop" if len(ids) == len(self.token_ids) else "length"
        for i in range(0, len(ids), 2):
            last = i + 2 >= len(ids)
            await asyncio.sleep(0)
            yield EngineChunk(
                token_ids=ids[i : i + 2],
                finish_reason=reason if last else None,
                num_prompt_tokens=len(request.prompt_token_ids) if i == 0 else 0,
                replica="fake-0",
            )

    async def _prefill(self, request: EngineRequest) -> EngineChunk:
        raise AssertionError("aggregated mode: there is no prefill pool")

    async def _stats(self, target: Any = None) -> dict[str, Any]:
        counters = ("prefix_queries", "prefix_hits", "kv_transfers", "kv_transfer_failures", "kv_bytes", "requests", "aborted")
        return {"replica": "fake-0", "role": "aggregated", "node_id": "fake", "in_flight": 0, "kv_cache_usage": 0.0} | {k: 0 for k in counters}


def config(model_path: Path, **frontend: Any) -> dict[str, Any]:
    return {
        "mode": "aggregated",
        "model": {"path": str(model_path), "served_name": MODEL, "max_model_len": MAX_MODEL_LEN},
        "router": {"policy": "serve_default"},
        "frontend": {"api_keys": [API_KEY], "max_request_bytes": MAX_REQUEST_BYTES, **frontend},
    }


def serve_frontend(model_path: Path, **frontend: Any) -> tuple[Any, FakeEngineHandle]:
    """``(asgi_app, engine)``: a Frontend bound to its FastAPI app the way ``serve.ingress`` does,
    over a ``FakeEngineHandle``. The ASGI app is the ingress wrapper instance Serve would call."""
    from ray import serve
    from transformers import AutoTokenizer

    from kvyard.deployments.frontend import Frontend, app

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    engine = FakeEngineHandle(tokenizer.encode(FAKE_TEXT, add_special_tokens=False), end_id, MAX_MODEL_LEN)

    class Replica(serve.ingress(app)(Frontend)):
        def __del__(self) -> None:
            """Serve awaits the ingress' async ``__del__`` (ASGI lifespan shutdown); no Serve here."""

    replica = Replica.__new__(Replica)
    asyncio.run(Replica.__init__(replica, config(model_path, **frontend), engine))  # Serve awaits the async __init__
    asgi_app = replica.app  # the frozen copy of the FastAPI app Serve's replica serves
    servable = {
        dependency.call
        for route in asgi_app.routes
        if getattr(getattr(route, "endpoint", None), "_serve_cls", None) is Frontend
        for dependency in route.dependant.dependencies
        if dependency.name == "self"
    }
    assert len(servable) == 1, "serve.ingress should resolve every handler's self through one dependency"
    asgi_app.dependency_overrides[servable.pop()] = lambda: replica
    return replica, engine
