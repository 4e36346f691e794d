"""OpenAI Responses: request -> (Conversation, options); parser events -> response / SSE events.

kvyard is stateless: nothing is stored, whatever ``store`` says (``store: true``, the SDK's
default, is accepted and simply not honoured); ``previous_response_id``, ``conversation`` and
``item_reference`` items are a 400 that says to send the whole conversation in ``input`` with
``store: false`` (what Codex does).

Decoding (``decode_request``):

- ``input`` as a string (one user message) or items. ``message`` items (``type`` may be omitted)
  with role user/system/developer/assistant and content as a string or ``input_text`` /
  ``output_text`` / ``text`` / ``refusal`` parts (one ``TextPart`` each); ``input_image`` /
  ``input_file`` / ``input_audio`` -> 400 (text-only models), except inside a
  ``function_call_output``, where an image becomes ``[image omitted: …]`` text.
- ``instructions`` and the system/developer messages before the first other item form
  ``Conversation.system``, joined with ``"\\n\\n"`` as the chat codec joins leading system messages;
  later system/developer messages stay messages.
- Assistant-side items in a row (``reasoning``, assistant ``message``, ``function_call``) form one
  assistant message, in order. ``function_call_output`` -> a ``tool`` message; its ``call_id`` must
  match an earlier ``function_call`` (400 otherwise).
- ``reasoning`` items -> ``ReasoningPart``: the text kvyard sent is recovered byte-exact from
  ``encrypted_content`` when it is kvyard's (``kvyard.v1.<signature>.<base64url text>``, sent when
  ``include`` asks for ``reasoning.encrypted_content``, as Codex does), else from ``content``
  (``reasoning_text``), else from ``summary``; an item with only a foreign ``encrypted_content``
  becomes a redacted part (kept, never rendered).
- ``tools``: ``function`` tools (Responses' flat shape). Every other type (``web_search``,
  ``local_shell``, ``custom``, ``file_search``, ``mcp``, …) is ignored, never rejected: Codex
  sends them in every request.
- ``tool_choice``: ``auto`` / ``none`` (removes the tools from the prompt) / ``required`` /
  ``{"type": "function", "name"}`` / ``{"type": "allowed_tools", "mode"}``; see ``tool_choice()``.
- ``reasoning.effort``: ``none`` / ``minimal`` -> ``template_kwargs["enable_thinking"] = False``;
  ``low`` / ``medium`` / ``high`` / ``xhigh`` -> ``True`` plus ``reasoning_effort`` (``xhigh`` as
  ``high``; gpt-oss templates read it, others ignore it).

Encoding (``ResponsesEncoder``): one output item per reasoning region (``reasoning`` with
``reasoning_text`` content, streamed as ``response.reasoning_text.delta``), text run
(``message`` with one ``output_text`` part) and tool call (``function_call``), in the order the
model produced them. A ``function_call`` item's ``response.function_call_arguments.done`` and
``response.output_item.done`` go out with ``ToolCallComplete`` (streaming dispatch). Every event
carries ``sequence_number`` (0, 1, …). The stream ends with ``response.completed``, or
``response.incomplete`` (``incomplete_details.reason = "max_output_tokens"``) when the token limit
ended the turn; a failure after the stream began is ``response.failed``. Usage: ``input_tokens``
= all prompt tokens, ``input_tokens_details.cached_tokens`` = those read from cache,
``output_tokens_details.reasoning_tokens`` = the reasoning text re-counted by
``count_tokens`` (0 without one).
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from kvyard.api.common import (
    Temperature,
    TopP,
    decode_body,
    parse_arguments,
    process_signer,
    typed_sse,
)
from kvyard.conversation import (
    Conversation,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
    empty_parameters,
)
from kvyard.errors import InvalidRequest, KvyardError
from kvyard.frontend.generation import Finished, GenerationOptions, Usage
from kvyard.parsing.events import (
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallComplete,
    ToolCallStart,
)

IMAGE_PLACEHOLDER = "[image omitted: this model reads text only]"
STATELESS = "kvyard is stateless and keeps no responses: send the whole conversation in 'input' (with store=false)"
TEXT_PARTS = ("input_text", "output_text", "text")
MEDIA_PARTS = ("input_image", "input_file", "input_audio")

# --- request -------------------------------------------------------------------------------


class ContentPart(msgspec.Struct):
    type: str
    text: str | None = None
    refusal: str | None = None


class SummaryPart(msgspec.Struct):
    type: str = "summary_text"
    text: str = ""


class InputItem(msgspec.Struct):
    """Any input item; which fields matter depends on ``type`` (checked in decoding)."""

    type: str = "message"
    role: str | None = None
    content: str | list[ContentPart] | None = None
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | dict[str, Any] | None = None
    output: str | list[ContentPart] | None = None
    summary: list[SummaryPart] | None = None
    encrypted_content: str | None = None


class ToolDef(msgspec.Struct):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ReasoningConfig(msgspec.Struct):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class ResponsesRequest(msgspec.Struct):
    input: str | list[InputItem]
    model: str | None = None
    instructions: str | None = None
    tools: list[ToolDef] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    max_output_tokens: int | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    reasoning: ReasoningConfig | None = None
    prompt_cache_key: str | None = None
    store: bool | None = None
    stream: bool = False
    include: list[str] | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None


# --- reasoning carried in encrypted_content -------------------------------------------------

_REASONING_PREFIX = "kvyard.v1."


def pack_reasoning(text: str, signature: str) -> str:
    """``encrypted_content`` for kvyard's reasoning: the signature and the exact text (not secret)."""
    return f"{_REASONING_PREFIX}{signature}.{base64.urlsafe_b64encode(text.encode()).decode()}"


def unpack_reasoning(encrypted: str) -> tuple[str, str] | None:
    """``(text, signature)`` from ``pack_reasoning``'s output; ``None`` for anyone else's."""
    if not encrypted.startswith(_REASONING_PREFIX):
        return None
    signature, _, body = encrypted[len(_REASONING_PREFIX) :].partition(".")
    try:
        return base64.urlsafe_b64decode(body.encode()).decode(), signature
    except (binascii.Error, ValueError):
        return None


# --- decoding --------------------------------------------------------------------------------


def _texts(content: str | list[ContentPart] | None, where: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for k, part in enumerate(content):
        if part.type in TEXT_PARTS:
            texts.append(part.text or "")
        elif part.type == "refusal":
            texts.append(part.refusal or "")
        elif part.type in MEDIA_PARTS:
            raise InvalidRequest(f"{where}.content[{k}]: {part.type} is not supported: this model reads text only; send text", param=f"{where}.content")
        else:
            raise InvalidRequest(f"{where}.content[{k}].type: unsupported content part {part.type!r}", param=f"{where}.content")
    return texts


def _output_text(output: str | list[ContentPart] | None, where: str) -> str:
    if output is None:
        raise InvalidRequest(f"{where}.output: field required for a function_call_output item", param=f"{where}.output")
    if isinstance(output, str):
        return output
    texts: list[str] = []
    for k, part in enumerate(output):
        if part.type in TEXT_PARTS:
            texts.append(part.text or "")
        elif part.type == "input_image":
            texts.append(IMAGE_PLACEHOLDER)
        else:
            raise InvalidRequest(f"{where}.output[{k}].type: unsupported output part {part.type!r}; send text", param=f"{where}.output")
    return "\n".join(texts)


def _reasoning(item: InputItem) -> ReasoningPart:
    if item.encrypted_content:
        ours = unpack_reasoning(item.encrypted_content)
        if ours is not None:
            return ReasoningPart(text=ours[0], signature=ours[1])
    if isinstance(item.content, str):
        text = item.content
    elif item.content:
        text = "".join(p.text or "" for p in item.content if p.type in ("reasoning_text", "text"))
    else:
        text = "\n\n".join(s.text for s in item.summary or [])
    if not text and item.encrypted_content:
        return ReasoningPart(text="", signature=item.encrypted_content, redacted=True)
    return ReasoningPart(text=text)


def _required(value: Any, where: str, field: str, item_type: str) -> Any:
    if not value or not isinstance(value, str):
        raise InvalidRequest(f"{where}.{field}: field required for a {item_type} item", param=f"{where}.{field}")
    return value


def _messages(req: ResponsesRequest) -> tuple[list[str], list[Message]]:
    items = [InputItem(role="user", content=req.input)] if isinstance(req.input, str) else req.input
    system: list[str] = [req.instructions] if req.instructions else []
    messages: list[Message] = []
    assistant: Message | None = None  # the assistant message that consecutive items extend
    call_ids: set[str] = set()

    def extend(part: Part) -> None:
        nonlocal assistant
        if assistant is None:
            assistant = Message("assistant", [])
            messages.append(assistant)
        assistant.parts.append(part)

    for i, item in enumerate(items):
        where = f"input[{i}]"
        if item.type == "message":
            role = item.role
            if role not in ("user", "system", "developer", "assistant"):
                raise InvalidRequest(f"{where}.role: expected user, system, developer or assistant, got {role!r}", param=f"{where}.role")
            texts = _texts(item.content, where)
            if role == "assistant":
                for text in texts:
                    extend(TextPart(text))
                continue
            assistant = None
            if role in ("system", "developer") and not messages:
                system.append("\n".join(texts))
            else:
                messages.append(Message(role, [TextPart(t) for t in texts] or [TextPart("")]))
        elif item.type == "function_call":
            call_id = _required(item.call_id, where, "call_id", "function_call")
            name = _required(item.name, where, "name", "function_call")
            try:
                arguments = parse_arguments(item.arguments if item.arguments is not None else "{}")
            except InvalidRequest as exc:
                raise InvalidRequest(f"{where}.arguments: {exc.message}", param=f"{where}.arguments") from None
            call_ids.add(call_id)
            extend(ToolCallPart(id=call_id, name=name, arguments=arguments))
        elif item.type == "function_call_output":
            call_id = _required(item.call_id, where, "call_id", "function_call_output")
            if call_id not in call_ids:
                raise InvalidRequest(
                    f"{where}.call_id: no function_call with call_id {call_id!r} before this function_call_output", param=f"{where}.call_id"
                )
            assistant = None
            messages.append(Message("tool", [ToolResultPart(tool_call_id=call_id, content=_output_text(item.output, where))]))
        elif item.type == "reasoning":
            extend(_reasoning(item))
        elif item.type == "item_reference":
            raise InvalidRequest(f"{where}: item_reference needs stored items; {STATELESS}", param=f"{where}.type")
        else:
            raise InvalidRequest(f"{where}.type: unsupported input item type {item.type!r}", param=f"{where}.type")
    return system, messages


def _tools(req: ResponsesRequest) -> list[Tool]:
    tools: list[Tool] = []
    for k, t in enumerate(req.tools or []):
        if t.type != "function":
            continue  # hosted / custom tools: nothing this model can call (Codex sends them always)
        if not t.name:
            raise InvalidRequest(f"tools[{k}].name: field required for a function tool", param=f"tools[{k}].name")
        tools.append(Tool(name=t.name, description=t.description or "", parameters=t.parameters or empty_parameters()))
    return tools


def tool_choice(req: ResponsesRequest) -> tuple[Literal["auto", "none", "required"], str | None]:
    """What the engine must enforce: ``("required", None)`` any tool, ``("required", name)`` that one."""
    choice = req.tool_choice
    if choice is None or choice == "auto":
        return "auto", None
    if choice in ("none", "required"):
        return choice, None  # type: ignore[return-value]
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function":
            name = choice.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest("tool_choice.name: field required for a function tool_choice", param="tool_choice.name")
            return "required", name
        if kind == "allowed_tools" and choice.get("mode", "auto") in ("auto", "required"):
            return choice.get("mode", "auto"), None
    raise InvalidRequest(
        f"tool_choice: expected 'auto', 'none', 'required' or {{'type': 'function', 'name': ...}}, got {choice!r}", param="tool_choice"
    )


def _template_kwargs(req: ResponsesRequest) -> dict[str, Any]:
    effort = req.reasoning.effort if req.reasoning else None
    if effort is None:
        return {}
    if effort in ("none", "minimal"):
        return {"enable_thinking": False}
    return {"enable_thinking": True, "reasoning_effort": "high" if effort == "xhigh" else effort}


def decode_request(body: bytes, default_max_tokens: int | None) -> tuple[ResponsesRequest, Conversation, GenerationOptions]:
    """Decode a ``POST /v1/responses`` body; every problem is an ``InvalidRequest`` naming the field."""
    req = decode_body(body, ResponsesRequest)
    if req.previous_response_id:
        raise InvalidRequest(f"previous_response_id is not supported: {STATELESS}", param="previous_response_id")
    if req.conversation:
        raise InvalidRequest(f"conversation is not supported: {STATELESS}", param="conversation")
    system, messages = _messages(req)
    if not messages:
        raise InvalidRequest("input: send at least one user message", param="input")
    conv = Conversation(system="\n\n".join(system), messages=messages, tools=_tools(req))
    mode, name = tool_choice(req)
    if mode == "required" and not conv.tools:
        raise InvalidRequest("tool_choice: 'required' needs at least one function tool in 'tools'", param="tool_choice")
    if name is not None and name not in {t.name for t in conv.tools}:
        raise InvalidRequest(f"tool_choice.name: no function tool named {name!r} in 'tools'", param="tool_choice.name")
    if mode == "none":
        conv.tools = []
    max_tokens = req.max_output_tokens if req.max_output_tokens is not None else default_max_tokens
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequest("max_output_tokens: must be at least 1", param="max_output_tokens")
    options = GenerationOptions(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        template_kwargs=_template_kwargs(req),
    )
    return req, conv, options


# --- encoding --------------------------------------------------------------------------------



sse = typed_sse


def _error_code(exc: KvyardError) -> str:
    return "invalid_prompt" if exc.status == 400 else "server_error"


class ResponsesEncoder:
    """Folds parser events into one ``response`` object, or into Responses stream events (dicts).

    Streaming: ``start()``, then ``encode(event)`` for every parser event and the final
    ``Finished`` (which closes the open item and adds ``response.completed`` or
    ``response.incomplete``); on a failure after ``start()``, ``failed(exc)``. Non-streaming:
    ``encode()`` every event, then ``response()``. ``signer`` signs reasoning text (carried in
    ``encrypted_content`` when ``include`` asks for it); ``count_tokens`` re-counts reasoning text
    for ``output_tokens_details.reasoning_tokens``.
    """

    def __init__(
        self,
        model: str,
        req: ResponsesRequest | None = None,
        *,
        signer: Callable[[str], str] | None = None,
        count_tokens: Callable[[str], int] | None = None,
        response_id: str | None = None,
    ):
        self.model = model
        self.req = req or ResponsesRequest(input="")
        self.signer = signer or process_signer
        self.count_tokens = count_tokens
        self.id = response_id or f"resp_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.encrypted = "reasoning.encrypted_content" in (self.req.include or [])
        self.output: list[dict[str, Any]] = []
        self.open: str | None = None  # type of output[-1] while it is open
        self.calls: dict[int, int] = {}  # parser tool index -> output index
        self.seq = 0
        self.finished: Finished | None = None
        self.error: dict[str, Any] | None = None

    # streaming entry points

    def start(self) -> list[dict[str, Any]]:
        snapshot = self._response("in_progress")
        return [self._event("response.created", response=snapshot), self._event("response.in_progress", response=snapshot)]

    def encode(self, event: Any) -> list[dict[str, Any]]:
        """Stream events for one parser event (also folded into the final response)."""
        if isinstance(event, ReasoningDelta):
            if not event.text:
                return []
            out = self._open_reasoning() if self.open != "reasoning" else []
            item = self.output[-1]
            item["content"][0]["text"] += event.text
            return out + [self._event("response.reasoning_text.delta", **self._where(), delta=event.text)]
        if isinstance(event, ReasoningEnd):
            return self._close() if self.open == "reasoning" else []
        if isinstance(event, TextDelta):
            if not event.text:
                return []
            out = self._open_message() if self.open != "message" else []
            self.output[-1]["content"][0]["text"] += event.text
            return out + [self._event("response.output_text.delta", **self._where(), delta=event.text, logprobs=[])]
        if isinstance(event, ToolCallStart):
            return self._open_call(event.index, event.id, event.name)
        if isinstance(event, ToolCallArgsDelta):
            out = [] if event.index in self.calls else self._open_call(event.index, f"call_{event.index}", "")
            index = self.calls[event.index]
            self.output[index]["arguments"] += event.delta
            return out + [self._event("response.function_call_arguments.delta", item_id=self.output[index]["id"], output_index=index, delta=event.delta)]
        if isinstance(event, ToolCallComplete):
            out = [] if event.index in self.calls else self._open_call(event.index, event.id, event.name)
            index = self.calls[event.index]
            item = self.output[index]
            item["arguments"] = event.raw_arguments
            item["status"] = "completed"
            if self.open == "function_call" and index == len(self.output) - 1:
                self.open = None
            return out + [
                self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index, arguments=item["arguments"]),
                self._event("response.output_item.done", output_index=index, item=dict(item)),
            ]
        if isinstance(event, Finished):
            self.finished = event
            out = self._close()
            status = self.status()
            name = "response.completed" if status == "completed" else "response.incomplete"
            return out + [self._event(name, response=self.response())]
        return []

    def failed(self, exc: KvyardError) -> list[dict[str, Any]]:
        """``response.failed`` for a failure after ``start()`` (Codex retries ``server_error``)."""
        self.error = {"code": _error_code(exc), "message": exc.message}
        return [self._event("response.failed", response=self._response("failed"))]

    # non-streaming

    def response(self) -> dict[str, Any]:
        return self._response(self.status())

    def status(self) -> Literal["completed", "incomplete"]:
        return "incomplete" if self.finished is not None and self.finished.finish_reason == "length" else "completed"

    # the response object

    def _response(self, status: str) -> dict[str, Any]:
        req = self.req
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": self.error if status == "failed" else None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens,
            "model": self.model,
            "output": [dict(item) for item in self.output] if status != "in_progress" else [],
            "parallel_tool_calls": req.parallel_tool_calls,
            "previous_response_id": None,
            "prompt_cache_key": req.prompt_cache_key,
            "reasoning": {"effort": req.reasoning.effort, "summary": req.reasoning.summary} if req.reasoning else None,
            "store": False,
            "temperature": req.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": self._tool_choice(),
            "tools": [
                {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters, "strict": bool(t.strict)}
                for t in req.tools or []
                if t.type == "function" and t.name
            ],
            "top_p": req.top_p,
            "truncation": "disabled",
            "usage": self._usage() if self.finished is not None else None,
            "user": req.user,
            "metadata": req.metadata or {},
        }
        return body

    def _tool_choice(self) -> str | dict[str, Any]:
        choice = self.req.tool_choice
        if isinstance(choice, dict) and choice.get("type") == "function":
            return {"type": "function", "name": choice.get("name")}
        return choice if choice in ("none", "required") else "auto"

    def _usage(self) -> dict[str, Any]:
        usage = self.finished.usage if self.finished else Usage()
        reasoning = 0
        if self.count_tokens is not None:
            texts = [item["content"][0]["text"] for item in self.output if item["type"] == "reasoning"]
            reasoning = min(sum(self.count_tokens(t) for t in texts), usage.completion_tokens)
        return {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        }

    # items

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.output[-1]["id"], "output_index": len(self.output) - 1, "content_index": 0}

    def _add(self, kind: str, item: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._close()
        self.output.append(item)
        self.open = kind
        return out + [self._event("response.output_item.added", output_index=len(self.output) - 1, item=_snapshot(item))]

    def _open_reasoning(self) -> list[dict[str, Any]]:
        item = {"id": f"rs_{uuid.uuid4().hex}", "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": ""}], "status": "in_progress"}
        out = self._add("reasoning", item)
        return out + [self._event("response.content_part.added", **self._where(), part={"type": "reasoning_text", "text": ""})]

    def _open_message(self) -> list[dict[str, Any]]:
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        item = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "status": "in_progress", "content": [part]}
        out = self._add("message", item)
        return out + [self._event("response.content_part.added", **self._where(), part=dict(part))]

    def _open_call(self, index: int, call_id: str, name: str) -> list[dict[str, Any]]:
        item = {"id": f"fc_{uuid.uuid4().hex}", "type": "function_call", "call_id": call_id, "name": name, "arguments": "", "status": "in_progress"}
        out = self._add("function_call", item)
        self.calls[index] = len(self.output) - 1
        return out

    def _close(self) -> list[dict[str, Any]]:
        kind, self.open = self.open, None
        if kind is None or kind == "function_call":
            return []  # a call closes itself on ToolCallComplete
        item = self.output[-1]
        part = item["content"][0]
        item["status"] = "completed"
        if kind == "reasoning":
            if self.encrypted:
                item["encrypted_content"] = pack_reasoning(part["text"], self.signer(part["text"]))
            done = self._event("response.reasoning_text.done", **self._where(), text=part["text"])
        else:
            done = self._event("response.output_text.done", **self._where(), text=part["text"], logprobs=[])
        return [
            done,
            self._event("response.content_part.done", **self._where(), part=dict(part)),
            self._event("response.output_item.done", output_index=len(self.output) - 1, item=_snapshot(item, full=True)),
        ]


def _snapshot(item: dict[str, Any], full: bool = False) -> dict[str, Any]:
    """An item as sent in ``output_item.added`` (content parts not yet added) or ``.done``."""
    copy = dict(item)
    if "content" in copy:
        copy["content"] = [dict(p) for p in copy["content"]] if full else []
    return copy
