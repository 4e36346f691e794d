"""``FakeSSEServer``: a loopback HTTP server that speaks just enough of the OpenAI Chat
Completions, Anthropic Messages and OpenAI Responses *streaming grammar* to test the benchmark
runner's client side (SSE parsing, timing, usage, error handling). It is not a model server and
runs no model: every reply is canned text.

It runs its own event loop in a thread, so it works under ``asyncio.run`` (the CLI) and under
pytest-asyncio alike. Each request: wait ``first_delay`` s, then ``deltas`` output events
``gap`` s apart, then usage (``prompt_tokens`` = ``PROMPT_TOKENS``, cached = ``CACHED_TOKENS``)
and the grammar's end event. The last user text steers it: ``FAIL500`` answers HTTP 500,
``MIDSTREAM`` sends one delta and then an error event, ``TOOLCALL`` adds a tool call. Chat
requests with ``return_token_ids`` get ``prompt_token_ids`` (the code points of the message
texts) in their first chunk. ``GET /metrics`` exposes vLLM-named prefix-cache counters that grow
with every request; ``GET /v1/models`` lists ``fake-model``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Self

PROMPT_TOKENS = 1000
CACHED_TOKENS = 640


def _texts(body: dict[str, Any]) -> list[str]:
    """Every text in a request body, in order (system, messages/input)."""
    out: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, list):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for k in ("text", "content", "thinking", "output", "instructions", "system", "messages", "input"):
                if k in x:
                    walk(x[k])

    walk({k: body[k] for k in ("instructions", "system", "messages", "input") if k in body})
    return out


def _last_user_text(body: dict[str, Any]) -> str:
    msgs = body.get("messages") or body.get("input") or []
    for m in reversed(msgs):
        if m.get("role") == "user":
            return json.dumps(m.get("content"))
    return ""


class FakeSSEServer:
    def __init__(self, first_delay: float = 0.05, gap: float = 0.01, deltas: int = 3):
        self.first_delay, self.gap, self.deltas = first_delay, gap, deltas
        self.requests: list[dict[str, Any]] = []
        self.hits = 0
        self.queries = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop and self._server and self._thread
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "GET":
                await self._get(path, writer)
            else:
                payload = json.loads(body or b"{}")
                self.requests.append({"path": path, "headers": headers, "body": payload})
                await self._post(path, payload, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except ConnectionError:
                pass

    async def _respond(self, writer: asyncio.StreamWriter, status: str, ctype: str, body: bytes) -> None:
        writer.write(f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
        await writer.drain()

    async def _get(self, path: str, writer: asyncio.StreamWriter) -> None:
        if path == "/metrics":
            text = (
                "# TYPE vllm:prefix_cache_queries counter\n"
                f'vllm:prefix_cache_queries_total{{engine="0"}} {float(self.queries)}\n'
                "# TYPE vllm:prefix_cache_hits counter\n"
                f'vllm:prefix_cache_hits_total{{engine="0"}} {float(self.hits)}\n'
            )
            await self._respond(writer, "200 OK", "text/plain; version=0.0.4", text.encode())
        elif path == "/v1/models":
            await self._respond(writer, "200 OK", "application/json", json.dumps({"data": [{"id": "fake-model"}]}).encode())
        else:
            await self._respond(writer, "404 Not Found", "application/json", b"{}")

    async def _post(self, path: str, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        user = _last_user_text(body)
        if "FAIL500" in user:
            await self._respond(writer, "500 Internal Server Error", "application/json", b'{"error": {"message": "fake failure"}}')
            return
        self.queries += PROMPT_TOKENS
        self.hits += CACHED_TOKENS
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        await writer.drain()
        n = len(self.requests)
        grammar = {"/v1/chat/completions": self._chat, "/v1/messages": self._messages, "/v1/responses": self._responses}[path]
        await grammar(body, n, "MIDSTREAM" in user, "TOOLCALL" in user, writer)

    async def _send(self, writer: asyncio.StreamWriter, data: Any, event: str | None = None) -> None:
        frame = (f"event: {event}\n" if event else "") + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
        writer.write(frame.encode())
        await writer.drain()

    def _pieces(self, n: int) -> list[str]:
        return [f"fake reply {n} part {i}. " for i in range(self.deltas)]

    # -- grammars -----------------------------------------------------------------------------

    async def _chat(self, body: dict[str, Any], n: int, midstream: bool, toolcall: bool, writer: asyncio.StreamWriter) -> None:
        def chunk(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
            return {"id": f"c{n}", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}

        first = {"prompt_token_ids": [ord(c) for t in _texts(body) for c in t]} if body.get("return_token_ids") else {}
        await self._send(writer, chunk({"role": "assistant", "content": ""}, **first))
        await asyncio.sleep(self.first_delay)
        await self._send(writer, chunk({"reasoning_content": f"thinking {n}"}))
        if midstream:
            await self._send(writer, {"error": {"message": "fake mid-stream failure", "type": "internal_error"}})
            return
        for piece in self._pieces(n):
            await asyncio.sleep(self.gap)
            await self._send(writer, chunk({"content": piece}))
        if toolcall:
            await self._send(writer, chunk({"tool_calls": [{"index": 0, "id": f"call_{n}", "type": "function", "function": {"name": "Bash", "arguments": ""}}]}))
            await self._send(writer, chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"command": "ls"}'}}]}))
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": self.deltas + 1, "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS}}
        await self._send(writer, {"id": f"c{n}", "object": "chat.completion.chunk", "choices": [], "usage": usage})
        await self._send(writer, "[DONE]")

    async def _messages(self, body: dict[str, Any], n: int, midstream: bool, toolcall: bool, writer: asyncio.StreamWriter) -> None:
        usage = {"input_tokens": PROMPT_TOKENS - CACHED_TOKENS, "cache_read_input_tokens": CACHED_TOKENS, "output_tokens": 0}
        await self._send(writer, {"type": "message_start", "message": {"id": f"m{n}", "role": "assistant", "content": [], "usage": usage}}, "message_start")
        await self._send(writer, {"type": "ping"}, "ping")
        await asyncio.sleep(self.first_delay)
        await self._send(writer, {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}, "content_block_start")
        await self._send(writer, {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": f"thinking {n}"}}, "content_block_delta")
        if midstream:
            await self._send(writer, {"type": "error", "error": {"type": "api_error", "message": "fake mid-stream failure"}}, "error")
            return
        await self._send(writer, {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": f"sig{n}"}}, "content_block_delta")
        await self._send(writer, {"type": "content_block_stop", "index": 0}, "content_block_stop")
        await self._send(writer, {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}, "content_block_start")
        for piece in self._pieces(n):
            await asyncio.sleep(self.gap)
            await self._send(writer, {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
        await self._send(writer, {"type": "content_block_stop", "index": 1}, "content_block_stop")
        if toolcall:
            await self._send(writer, {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": f"toolu_live_{n}", "name": "Bash", "input": {}}}, "content_block_start")
            await self._send(writer, {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"command": "ls"}'}}, "content_block_delta")
            await self._send(writer, {"type": "content_block_stop", "index": 2}, "content_block_stop")
        await self._send(writer, {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": self.deltas + 1}}, "message_delta")
        await self._send(writer, {"type": "message_stop"}, "message_stop")

    async def _responses(self, body: dict[str, Any], n: int, midstream: bool, toolcall: bool, writer: asyncio.StreamWriter) -> None:
        await self._send(writer, {"type": "response.created", "response": {"id": f"r{n}"}}, "response.created")
        await asyncio.sleep(self.first_delay)
        if midstream:
            await self._send(writer, {"type": "response.failed", "response": {"error": {"message": "fake mid-stream failure"}}}, "response.failed")
            return
        for piece in self._pieces(n):
            await self._send(writer, {"type": "response.output_text.delta", "delta": piece}, "response.output_text.delta")
            await asyncio.sleep(self.gap)
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": self.deltas, "input_tokens_details": {"cached_tokens": CACHED_TOKENS}}
        await self._send(writer, {"type": "response.completed", "response": {"id": f"r{n}", "usage": usage}}, "response.completed")
