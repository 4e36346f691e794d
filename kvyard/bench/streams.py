"""Streaming responses, parsed: SSE framing, then one fold per API grammar (pure, no I/O).

``SSEDecoder.feed(line)`` implements the SSE framing the servers use: ``event:`` and ``data:``
fields (several ``data:`` lines join with ``"\\n"``), ``:`` comments ignored, an event dispatched
at the blank line. A fold (``ChatFold``, ``MessagesFold``, ``ResponsesFold``) takes the events in
order; ``feed`` returns True when the event carried output (a text, reasoning or tool-call
delta, or the start of a tool call), which is what the runner times (TTFT = first such event,
ITL = gaps between them). Each fold keeps the reply (``reply()``, an assistant ``Message`` as
the history should hold it), the usage, the first error, and ``prompt_token_ids`` when the
server sent them (vLLM with ``return_token_ids``).

Usage, per grammar: Chat ``usage.prompt_tokens``, ``usage.completion_tokens``,
``usage.prompt_tokens_details.cached_tokens``; Messages ``input_tokens`` (uncached) +
``cache_read_input_tokens`` + ``cache_creation_input_tokens`` = prompt tokens, cached =
``cache_read_input_tokens`` (``message_start``, updated by ``message_delta``); Responses
``usage.input_tokens``, ``output_tokens``, ``input_tokens_details.cached_tokens`` (in
``response.completed``). Errors: Chat a ``{"error": …}`` payload (or vLLM's ``{"object":
"error"}``), Messages an ``error`` event, Responses ``error`` / ``response.failed``.
"""

from __future__ import annotations

import json
from typing import Any

from kvyard.bench.records import Message, ToolCall


class SSEDecoder:
    def __init__(self) -> None:
        self.event = ""
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        """One line without its terminator; returns ``(event, data)`` at an event's end."""
        if not line:
            if not self.data:
                self.event = ""
                return None
            out = (self.event or "message", "\n".join(self.data))
            self.event, self.data = "", []
            return out
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self.event = value
        elif field == "data":
            self.data.append(value)
        return None

    def flush(self) -> tuple[str, str] | None:
        return self.feed("")


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or err)
    return str(err)


class Fold:
    api = ""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.signature = ""
        self.calls: list[dict[str, str]] = []
        self.prompt_tokens: int | None = None
        self.cached_tokens: int | None = None
        self.output_tokens: int | None = None
        self.output_events = 0
        self.error = ""
        self.done = False
        self.prompt_token_ids: list[int] | None = None

    def feed(self, event: str, data: str) -> bool:
        if self.done:
            return False
        try:
            obj = json.loads(data)
        except ValueError:
            if data.strip() == "[DONE]":
                self.done = True
            return False
        if not isinstance(obj, dict):
            return False
        out = self._fold(event, obj)
        self.output_events += out
        return out

    def _fold(self, event: str, obj: dict[str, Any]) -> bool:
        raise NotImplementedError

    def fail(self, text: str) -> None:
        if not self.error:
            self.error = text
        self.done = True

    def reply(self) -> Message:
        calls = tuple(ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"]) for c in self.calls)
        return Message(
            role="assistant",
            content="".join(self.content),
            reasoning="".join(self.reasoning),
            signature=self.signature,
            tool_calls=calls,
        )


class ChatFold(Fold):
    api = "chat"

    def _fold(self, event: str, obj: dict[str, Any]) -> bool:
        if obj.get("error") or obj.get("object") == "error":
            self.fail(_error_text(obj.get("error") or obj))
            return False
        if isinstance(obj.get("prompt_token_ids"), list):
            self.prompt_token_ids = obj["prompt_token_ids"]
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.output_tokens = usage.get("completion_tokens", self.output_tokens)
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and details.get("cached_tokens") is not None:
                self.cached_tokens = details["cached_tokens"]
        out = False
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(delta["content"])
                out = True
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                self.reasoning.append(reasoning)
                out = True
            for tc in delta.get("tool_calls") or ():
                i = tc.get("index", len(self.calls))
                while len(self.calls) <= i:
                    self.calls.append({"id": "", "name": "", "arguments": ""})
                fn = tc.get("function") or {}
                self.calls[i]["id"] = tc.get("id") or self.calls[i]["id"]
                self.calls[i]["name"] += fn.get("name") or ""
                self.calls[i]["arguments"] += fn.get("arguments") or ""
                out = True
        return out


class MessagesFold(Fold):
    api = "messages"

    def _usage(self, usage: dict[str, Any]) -> None:
        if "input_tokens" in usage or "cache_read_input_tokens" in usage:
            uncached = usage.get("input_tokens") or 0
            read = usage.get("cache_read_input_tokens")
            created = usage.get("cache_creation_input_tokens") or 0
            self.prompt_tokens = uncached + (read or 0) + created
            if read is not None:
                self.cached_tokens = read
        if usage.get("output_tokens"):
            self.output_tokens = usage["output_tokens"]

    def _fold(self, event: str, obj: dict[str, Any]) -> bool:
        kind = obj.get("type", event)
        if kind == "error":
            self.fail(_error_text(obj.get("error") or obj))
        elif kind == "message_start":
            self._usage((obj.get("message") or {}).get("usage") or {})
        elif kind == "message_delta":
            self._usage(obj.get("usage") or {})
        elif kind == "message_stop":
            self.done = True
        elif kind == "content_block_start":
            block = obj.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.calls.append({"id": block.get("id", ""), "name": block.get("name", ""), "arguments": ""})
                return True
        elif kind == "content_block_delta":
            delta = obj.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta" and delta.get("text"):
                self.content.append(delta["text"])
                return True
            if dtype == "thinking_delta" and delta.get("thinking"):
                self.reasoning.append(delta["thinking"])
                return True
            if dtype == "input_json_delta" and self.calls:
                self.calls[-1]["arguments"] += delta.get("partial_json", "")
                return bool(delta.get("partial_json"))
            if dtype == "signature_delta":
                self.signature = delta.get("signature", "")
        return False


class ResponsesFold(Fold):
    api = "responses"

    def _fold(self, event: str, obj: dict[str, Any]) -> bool:
        kind = obj.get("type", event)
        if kind == "error":
            self.fail(_error_text(obj.get("error") or obj.get("message") or obj))
        elif kind == "response.failed":
            self.fail(_error_text((obj.get("response") or {}).get("error") or "response.failed"))
        elif kind in ("response.completed", "response.incomplete"):
            usage = (obj.get("response") or {}).get("usage") or {}
            self.prompt_tokens = usage.get("input_tokens", self.prompt_tokens)
            self.output_tokens = usage.get("output_tokens", self.output_tokens)
            details = usage.get("input_tokens_details") or {}
            if details.get("cached_tokens") is not None:
                self.cached_tokens = details["cached_tokens"]
            self.done = True
        elif kind == "response.output_item.added":
            item = obj.get("item") or {}
            if item.get("type") == "function_call":
                self.calls.append({"id": item.get("call_id", ""), "name": item.get("name", ""), "arguments": ""})
                return True
        elif kind == "response.output_text.delta" and obj.get("delta"):
            self.content.append(obj["delta"])
            return True
        elif kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta") and obj.get("delta"):
            self.reasoning.append(obj["delta"])
            return True
        elif kind == "response.function_call_arguments.delta" and self.calls:
            self.calls[-1]["arguments"] += obj.get("delta", "")
            return bool(obj.get("delta"))
        return False


FOLDS = {"chat": ChatFold, "messages": MessagesFold, "responses": ResponsesFold}
