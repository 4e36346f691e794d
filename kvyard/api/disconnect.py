"""ASGI middleware: a client disconnect reported by Ray Serve as an exception becomes the ASGI
``http.disconnect`` message Starlette waits for.

When a client goes away mid-stream, Ray Serve's proxy cancels the replica's task that forwards
the client's messages, and the replica's ``receive()`` raises ``TaskCancelledError`` instead of
returning ``{"type": "http.disconnect"}``. Starlette's ``StreamingResponse`` listens for that
message to stop the stream; the exception stops it too, but Serve then logs the request as
failed with a long traceback, once per disconnect. With this middleware the stream ends as
Starlette intends (the body generator is closed, so the engine request is aborted) and nothing
is logged as an error. Any other exception from ``receive()`` passes through.
"""

from __future__ import annotations

from typing import Any

DISCONNECT = {"type": "http.disconnect"}


def _is_disconnect(exc: BaseException) -> bool:
    from ray.exceptions import TaskCancelledError

    return isinstance(exc, TaskCancelledError)


class DisconnectAsMessage:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def receive_or_disconnect() -> dict[str, Any]:
            try:
                return await receive()
            except Exception as exc:
                if _is_disconnect(exc):
                    return DISCONNECT
                raise

        await self.app(scope, receive_or_disconnect, send)
