"""OpenAI Chat Completions: request -> (Conversation, options); parser events -> response / SSE chunks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

import msgspec

from kvyard.api.common import Seed, Temperature, TopK, TopP, decode_body, parse_arguments
from kvyard.conversation import (
    Conversation,
    Message,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
    empty_parameters,
)
from kvyard.errors import InvalidRequest
from kvyard.frontend.generation import Finished, GenerationOptions, Usage
from kvyard.parsing.events import (
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallComplete,
    ToolCallStart,
)


class ContentPart(msgspec.Struct):
    type: str
    text: str | None = None


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCall(msgspec.Struct):
    function: FunctionCall
    id: str = ""
    type: str = "function"


class ChatMessage(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class FunctionDef(msgspec.Struct):
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


class ToolDef(msgspec.Struct):
    type: str = "function"
    function: FunctionDef | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatRequest(msgspec.Struct):
    messages: list[ChatMessage]
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    seed: Seed | None = None
    stop: str | list[str] | None = None
    n: int = 1
    tools: list[ToolDef] | None = None
    tool_choice: str | dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    return_token_ids: bool = False
    """kvyard/vLLM extension: include prompt_token_ids and choices[0].token_ids in the response."""


def _text(content: str | list[ContentPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text or "" for p in content if p.type in ("text", "input_text"))


def decode_request(body: bytes, default_max_tokens: int | None) -> tuple[ChatRequest, Conversation, GenerationOptions]:
    req = decode_body(body, ChatRequest)
    if not req.messages:
        raise InvalidRequest("'messages' is empty: send at least one message", param="messages")
    if req.n != 1:
        raise InvalidRequest("only n=1 is supported", param="n")
    conv = Conversation()
    system: list[str] = []
    call_ids: set[str] = set()
    for i, m in enumerate(req.messages):
        text = _text(m.content)
        if m.role in ("system", "developer") and not conv.messages:
            system.append(text)
        elif m.role in ("tool", "function"):
            if m.role == "tool":
                if not m.tool_call_id:
                    raise InvalidRequest(f"messages[{i}]: a tool message needs 'tool_call_id'", param=f"messages[{i}].tool_call_id")
                if m.tool_call_id not in call_ids:
                    raise InvalidRequest(
                        f"messages[{i}].tool_call_id: no assistant tool call with id {m.tool_call_id!r} before this tool message",
                        param=f"messages[{i}].tool_call_id",
                    )
            conv.messages.append(Message("tool", [ToolResultPart(tool_call_id=m.tool_call_id or m.name or "", content=text)]))
        elif m.role == "assistant":
            parts: list[Any] = []
            reasoning = m.reasoning_content or m.reasoning
            if reasoning:
                parts.append(ReasoningPart(text=reasoning))
            if text:
                parts.append(TextPart(text))
            for k, call in enumerate(m.tool_calls or []):
                where = f"messages[{i}].tool_calls[{k}].function.arguments"
                try:
                    arguments = parse_arguments(call.function.arguments)
                except InvalidRequest as exc:
                    raise InvalidRequest(f"{where}: {exc.message}", param=where) from None
                call_ids.add(call.id)
                parts.append(ToolCallPart(id=call.id, name=call.function.name, arguments=arguments))
            conv.messages.append(Message("assistant", parts))
        else:
            conv.messages.append(Message(m.role, [TextPart(text)]))
    conv.system = "\n\n".join(system)
    for k, t in enumerate(req.tools or []):
        if t.type != "function" or t.function is None:
            raise InvalidRequest(f"unsupported tool type {t.type!r}: only function tools", param="tools")
        if not t.function.name:
            raise InvalidRequest(f"tools[{k}].function.name: a function tool needs a name", param=f"tools[{k}].function.name")
        conv.tools.append(Tool(name=t.function.name, description=t.function.description, parameters=t.function.parameters or empty_parameters()))
    if req.tool_choice == "none":
        conv.tools = []
    max_tokens = next((v for v in (req.max_completion_tokens, req.max_tokens) if v is not None), default_max_tokens)
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequest("'max_tokens' must be at least 1", param="max_tokens")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    options = GenerationOptions(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        seed=req.seed,
        stop=stop,
        template_kwargs=req.chat_template_kwargs or {},
    )
    return req, conv, options


FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


class ChatEncoder:
    """Folds parser events into one response, or into ``chat.completion.chunk`` SSE payloads."""

    def __init__(self, model: str, return_token_ids: bool = False):
        self.return_token_ids = return_token_ids
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.finished: Finished | None = None

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }

    def first_chunk(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""})

    def chunks(self, event: Any) -> list[dict[str, Any]]:
        """SSE payloads for one event (also folds it into the non-streaming result)."""
        if isinstance(event, TextDelta):
            self.content.append(event.text)
            return [self._chunk({"content": event.text})]
        if isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
            return [self._chunk({"reasoning_content": event.text, "reasoning": event.text})]
        if isinstance(event, ToolCallStart):
            self.tool_calls.append({"id": event.id, "type": "function", "function": {"name": event.name, "arguments": ""}})
            delta = {"index": event.index, "id": event.id, "type": "function", "function": {"name": event.name, "arguments": ""}}
            return [self._chunk({"tool_calls": [delta]})]
        if isinstance(event, ToolCallArgsDelta):
            self.tool_calls[event.index]["function"]["arguments"] += event.delta
            return [self._chunk({"tool_calls": [{"index": event.index, "function": {"arguments": event.delta}}]})]
        if isinstance(event, ToolCallComplete):
            self.tool_calls[event.index]["function"]["arguments"] = json.dumps(event.arguments, ensure_ascii=False)
            return []
        if isinstance(event, Finished):
            self.finished = event
            return [self._chunk({}, self.finish_reason())]
        return []

    def finish_reason(self) -> str:
        if self.tool_calls and self.finished and self.finished.finish_reason == "stop":
            return "tool_calls"
        return FINISH.get(self.finished.finish_reason, "stop") if self.finished else "stop"

    def usage_chunk(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": _usage(self.finished.usage if self.finished else Usage()),
        }

    def response(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or (None if self.tool_calls else "")}
        if self.reasoning:
            message["reasoning_content"] = message["reasoning"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": self.finish_reason(), "logprobs": None}
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": _usage(self.finished.usage if self.finished else Usage()),
        }
        if self.return_token_ids and self.finished:
            choice["token_ids"] = self.finished.output_token_ids
            body["prompt_token_ids"] = self.finished.prompt_token_ids
        return body


def tool_choice(req: ChatRequest) -> tuple[Literal["auto", "none", "required"], str | None]:
    """What the engine must enforce: ``("required", None)`` any tool, ``("required", name)`` that one."""
    choice = req.tool_choice
    if choice is None or choice == "auto":
        return "auto", None
    if choice in ("none", "required"):
        return choice, None
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if isinstance(name, str) and name:
        return "required", name
    raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': …}}", param="tool_choice")


def dispatch_event(call: ToolCallComplete) -> dict[str, Any]:
    """Payload of the ``tool_call_dispatch`` SSE event: a complete call, sent the moment its closing
    delimiter is decoded, so the harness can start running it before the turn ends."""
    arguments = json.dumps(call.arguments, ensure_ascii=False)
    return {"choice_index": 0, "tool_call": {"index": call.index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}}
