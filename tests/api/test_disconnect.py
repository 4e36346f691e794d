"""``DisconnectAsMessage`` with Starlette's real ``StreamingResponse``: Ray Serve's cancelled-task
exception on ``receive()`` ends the stream as a client disconnect (body generator closed, no
exception); other exceptions still propagate."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import TaskCancelledError
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from kvyard.api.disconnect import DisconnectAsMessage


def streaming_app(closed: asyncio.Event) -> Starlette:
    async def endless():
        try:
            while True:
                yield b"data: tick\n\n"
                await asyncio.sleep(0.01)
        finally:
            closed.set()  # where the frontend aborts the engine request

    async def stream(request):
        return StreamingResponse(endless(), media_type="text/event-stream")

    return Starlette(routes=[Route("/stream", stream)])


async def call(app, receive) -> list[dict]:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    # spec 2.3 as Serve's replicas see it: Starlette then listens on receive() for the disconnect
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/stream", "raw_path": b"/stream", "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


def receiver(error: BaseException):
    calls = 0

    async def receive():
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(0.05)  # the stream is running when the proxy cancels the task
        raise error

    return receive


def test_a_cancelled_receive_ends_the_stream_as_a_disconnect():
    async def main():
        closed = asyncio.Event()
        sent = await call(DisconnectAsMessage(streaming_app(closed)), receiver(TaskCancelledError(b"\x00" * 24)))
        assert closed.is_set()
        assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
        assert any(m.get("body", b"").startswith(b"data: tick") for m in sent[1:])

    asyncio.run(main())


def test_without_the_middleware_the_same_receive_raises():
    async def main():
        await call(streaming_app(asyncio.Event()), receiver(TaskCancelledError(b"\x00" * 24)))

    with pytest.raises(BaseException) as info:  # Starlette re-raises it (perhaps in an exception group)
        asyncio.run(main())
    assert _grouped(info.value, TaskCancelledError)


def test_other_receive_errors_still_propagate():
    async def main():
        await call(DisconnectAsMessage(streaming_app(asyncio.Event())), receiver(ConnectionResetError("boom")))

    with pytest.raises(BaseException) as info:
        asyncio.run(main())
    assert _grouped(info.value, ConnectionResetError)


def _grouped(exc: BaseException, kind: type) -> bool:
    if isinstance(exc, kind):
        return True
    return any(_grouped(e, kind) for e in getattr(exc, "exceptions", ()))
