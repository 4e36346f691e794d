"""One interface over the three API encoders, so the frontend has a single request path.

An ``ApiExchange`` turns the generator's items (``Started``, parser events, ``Finished``) into SSE
frames in its API's grammar, or into one JSON response, and renders errors in its API's shape.
"""

from __future__ import annotations

from typing import Any

from kvyard.api import anthropic, openai_chat, responses
from kvyard.api.common import anthropic_error, openai_error, sse_frame
from kvyard.errors import KvyardError
from kvyard.frontend.generation import Started, Usage
from kvyard.parsing.events import ToolCallComplete


class ApiExchange:
    api: str
    stream: bool
    model: str
    """The model name the client asked for (answered back as given)."""

    def head(self, started: Started) -> list[bytes]:
        """Frames sent once the engine produced its first token."""
        raise NotImplementedError

    def frames(self, item: Any) -> list[bytes]:
        raise NotImplementedError

    def tail(self) -> list[bytes]:
        return []

    def error_frames(self, err: KvyardError) -> list[bytes]:
        raise NotImplementedError

    def error_body(self, err: KvyardError) -> dict[str, Any]:
        return openai_error(err)

    def response(self) -> dict[str, Any]:
        raise NotImplementedError


class ChatExchange(ApiExchange):
    api = "chat"

    def __init__(self, req: openai_chat.ChatRequest, model: str, dispatch: bool = False):
        self.model = model
        self.stream = req.stream
        self.dispatch = dispatch
        self.include_usage = bool(req.stream_options and req.stream_options.include_usage)
        self.enc = openai_chat.ChatEncoder(model, req.return_token_ids)

    def head(self, started: Started) -> list[bytes]:
        return [sse_frame(self.enc.first_chunk())]

    def frames(self, item: Any) -> list[bytes]:
        frames = [sse_frame(p) for p in self.enc.chunks(item)]
        if self.dispatch and isinstance(item, ToolCallComplete):
            frames.append(sse_frame(openai_chat.dispatch_event(item), "tool_call_dispatch"))
        return frames

    def tail(self) -> list[bytes]:
        usage = [sse_frame(self.enc.usage_chunk())] if self.include_usage else []
        return usage + [b"data: [DONE]\n\n"]

    def error_frames(self, err: KvyardError) -> list[bytes]:
        return [sse_frame(openai_error(err))]

    def response(self) -> dict[str, Any]:
        return self.enc.response()


class MessagesExchange(ApiExchange):
    api = "messages"

    def __init__(self, req: anthropic.MessagesRequest, model: str, signer):
        self.model = model
        self.stream = bool(req.stream)
        self.enc = anthropic.MessagesEncoder(model, signer=signer)

    def head(self, started: Started) -> list[bytes]:
        usage = Usage(prompt_tokens=started.prompt_tokens, cached_tokens=started.cached_tokens)
        return [anthropic.sse(p) for p in self.enc.start(usage)]

    def frames(self, item: Any) -> list[bytes]:
        return [anthropic.sse(p) for p in self.enc.encode(item)]

    def error_frames(self, err: KvyardError) -> list[bytes]:
        return [anthropic.sse(self.enc.error(err))]

    def error_body(self, err: KvyardError) -> dict[str, Any]:
        return anthropic_error(err)

    def response(self) -> dict[str, Any]:
        return self.enc.response()


class ResponsesExchange(ApiExchange):
    api = "responses"

    def __init__(self, req: responses.ResponsesRequest, model: str, signer, count_tokens):
        self.model = model
        self.stream = bool(req.stream)
        self.enc = responses.ResponsesEncoder(model, req, signer=signer, count_tokens=count_tokens)

    def head(self, started: Started) -> list[bytes]:
        return [responses.sse(p) for p in self.enc.start()]

    def frames(self, item: Any) -> list[bytes]:
        return [responses.sse(p) for p in self.enc.encode(item)]

    def error_frames(self, err: KvyardError) -> list[bytes]:
        return [responses.sse(p) for p in self.enc.failed(err)]

    def response(self) -> dict[str, Any]:
        return self.enc.response()
