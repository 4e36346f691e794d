"""Ray Serve handles as the ``EnginePool`` surface the coordinator and generator use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from kvyard.protocol import EngineChunk, EngineRequest


class ServePool:
    def __init__(self, handle: Any):
        self._handle = handle
        self._stream = handle.options(stream=True)

    async def prefill(self, request: EngineRequest) -> EngineChunk:
        return await self._handle.prefill.remote(request)

    def generate(self, request: EngineRequest) -> AsyncIterator[EngineChunk]:
        return self._stream.generate.remote(request)
