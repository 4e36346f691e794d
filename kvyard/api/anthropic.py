"""Anthropic Messages: request -> (Conversation, options); parser events -> message / SSE events.

Decoding (``decode_request``, ``decode_count_tokens``) follows the Messages API, with these
decisions:

- ``system`` as text blocks is joined with ``"\\n"`` (empty blocks skipped). Anthropic does not
  publish how it renders system blocks, and peers differ (vLLM joins with ``""``, proxies with
  ``"\\n\\n"``). ``"\\n"`` keeps blocks on separate lines, matches how vLLM joins the text parts
  of one message, and makes the sanitizer's removal of Claude Code's leading
  ``x-anthropic-billing-header: …;`` block (the line plus one terminator) leave exactly the
  prompt that the request would give without that block.
- Content blocks: ``text`` -> ``TextPart`` (one per block, in order); ``thinking`` ->
  ``ReasoningPart(text, signature)``; ``redacted_thinking`` -> ``ReasoningPart("",
  signature=data, redacted=True)`` (opaque, never rendered); ``tool_use`` -> ``ToolCallPart``;
  ``tool_result`` -> ``ToolResultPart`` in the user message (text blocks joined with ``"\\n"``).
  ``image`` / ``document`` at the top of a message -> 400 (kvyard serves text-only models); an
  image *inside* a ``tool_result`` (Claude Code's Read on a picture) becomes the text
  ``[image omitted: this model reads text only]`` so one screenshot does not brick a session.
  Any other block type -> 400 naming it. ``cache_control`` and ``citations`` are ignored.
- A ``tool_result`` whose ``tool_use_id`` matches no earlier ``tool_use`` -> 400.
- ``tools``: custom tools (no ``type``, or ``type: "custom"``) are offered to the model; Anthropic
  server / schema-less tools (``web_search_20250305``, ``bash_…``, ``text_editor_…``, …) are
  skipped silently, never rejected (Claude Code sends ``web_search`` in side requests).
- ``tool_choice``: ``none`` removes the tools from the prompt (as the chat codec does); ``any`` /
  ``tool`` are reported by ``tool_choice()`` for the engine to force; ``disable_parallel_tool_use``
  is ignored.
- ``thinking``: ``enabled`` / ``adaptive`` -> ``template_kwargs["enable_thinking"] = True``,
  ``disabled`` -> ``False``, absent -> the template's default. ``budget_tokens`` is not enforced.
- ``max_tokens`` is required (400 if missing), as Anthropic requires it. Unknown fields are
  ignored (``context_management``, ``mcp_servers``, ``output_config``, …).

Tool-use ids: Anthropic clients require ``^[a-zA-Z0-9_-]+$``. Parser ids that do not match
(Kimi's ``functions.get_weather:0``) are sent as ``kv_`` + base64url(id) and mapped back on the
next request, so the replayed prompt holds the model's own id byte-exact.

Encoding (``MessagesEncoder``): Anthropic's streaming grammar. One content block per reasoning
region / text run / tool call, in the order the model produced them; a ``tool_use`` block's
``content_block_stop`` goes out with ``ToolCallComplete`` (streaming dispatch); every thinking
block gets a ``signature_delta`` (``signer(thinking text)``) just before its stop. Usage:
``input_tokens`` = prompt tokens *not* read from cache, ``cache_read_input_tokens`` = cached
prompt tokens, ``cache_creation_input_tokens`` = 0 (vLLM's prefix cache is written for free, there
is no separate cache-write price to report), ``output_tokens`` = generated tokens.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from kvyard.api.common import (
    TopP,
    anthropic_error,
    decode_body,
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

# --- request -------------------------------------------------------------------------------


class SystemBlock(msgspec.Struct):
    type: str = "text"
    text: str = ""


class ResultBlock(msgspec.Struct):
    """A block inside ``tool_result.content``."""

    type: str
    text: str | None = None


class ContentBlock(msgspec.Struct):
    """Any block of a message; which fields matter depends on ``type`` (checked in decoding)."""

    type: str
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[ResultBlock] | None = None
    is_error: bool = False


class InputMessage(msgspec.Struct):
    role: Literal["user", "assistant", "system"]
    """Claude Code also sends mid-conversation ``system`` messages (rendered in place)."""
    content: str | list[ContentBlock]


class ToolDef(msgspec.Struct):
    name: str = ""
    type: str | None = None
    description: str = ""
    input_schema: dict[str, Any] | None = None


class ToolChoice(msgspec.Struct):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class ThinkingConfig(msgspec.Struct):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class MessagesRequest(msgspec.Struct):
    model: str
    messages: list[InputMessage]
    max_tokens: int | None = None
    system: str | list[SystemBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    top_p: TopP | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    metadata: dict[str, Any] | None = None


# --- tool-use ids ----------------------------------------------------------------------------

_ID_OK = re.compile(r"^[a-zA-Z0-9_-]+$")
_ID_PREFIX = "kv_"


def to_anthropic_id(call_id: str) -> str:
    """A tool-use id Anthropic clients accept; ids that already match are kept as they are."""
    if _ID_OK.match(call_id):
        return call_id
    return _ID_PREFIX + base64.urlsafe_b64encode(call_id.encode()).rstrip(b"=").decode()


def from_anthropic_id(tool_use_id: str) -> str:
    """Inverse of ``to_anthropic_id``: the model's own id for an id kvyard sent."""
    if not tool_use_id.startswith(_ID_PREFIX):
        return tool_use_id
    body = tool_use_id[len(_ID_PREFIX) :]
    try:
        original = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, ValueError):
        return tool_use_id
    # Only ids that needed mapping were mapped: anything else is a client id that looks alike.
    return original if original and not _ID_OK.match(original) else tool_use_id


# --- decoding --------------------------------------------------------------------------------


def _system_text(system: str | list[SystemBlock] | None) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    texts: list[str] = []
    for i, block in enumerate(system):
        if block.type != "text":
            raise InvalidRequest(f"system.{i}.type: only text blocks are allowed in 'system', got {block.type!r}", param=f"system.{i}.type")
        if block.text:
            texts.append(block.text)
    return "\n".join(texts)


def _result_text(content: str | list[ResultBlock] | None, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for k, block in enumerate(content):
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "image":
            texts.append(IMAGE_PLACEHOLDER)
        else:
            raise InvalidRequest(
                f"{where}.content.{k}.type: unsupported block {block.type!r} in a tool_result; send text", param=f"{where}.content.{k}.type"
            )
    return "\n".join(texts)


def _need(value: Any, where: str, field: str, kind: type) -> Any:
    if not isinstance(value, kind):
        raise InvalidRequest(f"{where}.{field}: field required for this block type", param=f"{where}.{field}")
    return value


def _parts(i: int, m: InputMessage, tool_use_ids: set[str]) -> list[Part]:
    blocks = [ContentBlock(type="text", text=m.content)] if isinstance(m.content, str) else m.content
    parts: list[Part] = []
    for j, b in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        assistant_only = b.type in ("thinking", "redacted_thinking", "tool_use")
        if (assistant_only and m.role != "assistant") or (b.type == "tool_result" and m.role != "user"):
            role = "assistant" if assistant_only else "user"
            raise InvalidRequest(f"{where}: a {b.type!r} block belongs in a {role} message", param=where)
        if b.type == "text":
            parts.append(TextPart(_need(b.text, where, "text", str)))
        elif b.type == "thinking":
            parts.append(ReasoningPart(text=_need(b.thinking, where, "thinking", str), signature=b.signature))
        elif b.type == "redacted_thinking":
            parts.append(ReasoningPart(text="", signature=_need(b.data, where, "data", str), redacted=True))
        elif b.type == "tool_use":
            call_id = _need(b.id, where, "id", str)
            tool_use_ids.add(call_id)
            parts.append(ToolCallPart(id=from_anthropic_id(call_id), name=_need(b.name, where, "name", str), arguments=b.input or {}))
        elif b.type == "tool_result":
            ref = _need(b.tool_use_id, where, "tool_use_id", str)
            if ref not in tool_use_ids:
                raise InvalidRequest(
                    f"{where}.tool_use_id: unexpected `tool_use_id` found in `tool_result` blocks: {ref}. "
                    "Each `tool_result` block must have a corresponding `tool_use` block in an earlier assistant message.",
                    param=f"{where}.tool_use_id",
                )
            parts.append(ToolResultPart(tool_call_id=from_anthropic_id(ref), content=_result_text(b.content, where), is_error=b.is_error))
        elif b.type in ("image", "document"):
            raise InvalidRequest(f"{where}: {b.type} blocks are not supported: this model reads text only; send text", param=where)
        else:
            raise InvalidRequest(f"{where}.type: unsupported content block type {b.type!r}", param=f"{where}.type")
    return parts


def _conversation(req: MessagesRequest) -> Conversation:
    if not req.messages:
        raise InvalidRequest("messages: send at least one message", param="messages")
    conv = Conversation(system=_system_text(req.system))
    tool_use_ids: set[str] = set()
    for i, m in enumerate(req.messages):
        conv.messages.append(Message(m.role, _parts(i, m, tool_use_ids)))
    for k, t in enumerate(req.tools or []):
        if t.type not in (None, "custom"):
            continue  # Anthropic server / schema-less tool: nothing this model can call
        if not t.name:
            raise InvalidRequest(f"tools.{k}.name: field required", param=f"tools.{k}.name")
        conv.tools.append(Tool(name=t.name, description=t.description, parameters=t.input_schema or empty_parameters()))
    choice = req.tool_choice
    if choice is not None and choice.type in ("any", "tool"):
        if not conv.tools:
            raise InvalidRequest(f"tool_choice: {choice.type!r} needs at least one tool in 'tools'", param="tool_choice")
        if choice.type == "tool" and choice.name not in {t.name for t in conv.tools}:
            raise InvalidRequest(f"tool_choice.name: no tool named {choice.name!r} in 'tools'", param="tool_choice.name")
    if choice is not None and choice.type == "none":
        conv.tools = []
    return conv


def _template_kwargs(req: MessagesRequest) -> dict[str, Any]:
    if req.thinking is None:
        return {}
    return {"enable_thinking": req.thinking.type != "disabled"}


def decode_request(body: bytes) -> tuple[MessagesRequest, Conversation, GenerationOptions]:
    """Decode a ``POST /v1/messages`` body; every problem is an ``InvalidRequest`` naming the field."""
    req = decode_body(body, MessagesRequest)
    if req.max_tokens is None:
        raise InvalidRequest("max_tokens: field required", param="max_tokens")
    if req.max_tokens < 1:
        raise InvalidRequest("max_tokens: must be at least 1", param="max_tokens")
    conv = _conversation(req)
    options = GenerationOptions(
        max_tokens=req.max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        stop=list(req.stop_sequences or []),
        template_kwargs=_template_kwargs(req),
    )
    return req, conv, options


def decode_count_tokens(body: bytes) -> tuple[MessagesRequest, Conversation, GenerationOptions]:
    """Decode a ``POST /v1/messages/count_tokens`` body (no ``max_tokens``).

    Count with ``len(generator.prompt_ids(conv, options))``: ``options.template_kwargs`` carries
    the thinking switch, which changes the rendered prompt. ``options.max_tokens`` is a placeholder.
    """
    req = decode_body(body, MessagesRequest)
    return req, _conversation(req), GenerationOptions(max_tokens=1, template_kwargs=_template_kwargs(req))


def count_tokens_response(input_tokens: int) -> dict[str, Any]:
    return {"input_tokens": input_tokens}


def tool_choice(req: MessagesRequest) -> tuple[Literal["auto", "none", "required"], str | None]:
    """What the engine must enforce: ``("required", None)`` any tool, ``("required", name)`` that tool."""
    choice = req.tool_choice
    if choice is None or choice.type == "auto":
        return "auto", None
    if choice.type == "none":
        return "none", None
    return "required", choice.name if choice.type == "tool" else None


# --- encoding --------------------------------------------------------------------------------


STOP_REASONS = {"length": "max_tokens"}


def _usage(usage: Usage, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": output_tokens,
    }


sse = typed_sse


class MessagesEncoder:
    """Folds parser events into one ``message``, or into Anthropic stream events (dicts).

    Streaming: ``start()``, then ``encode(event)`` for every parser event and the final
    ``Finished`` (which closes the open block and adds ``message_delta`` and ``message_stop``).
    Each returned dict's ``type`` is its SSE event name (``sse()`` frames it). Non-streaming:
    ``encode()`` every event, then ``response()``.
    """

    def __init__(self, model: str, *, signer: Callable[[str], str] | None = None, message_id: str | None = None):
        self.model = model
        self.signer = signer or process_signer
        self.id = message_id or f"msg_{uuid.uuid4().hex}"
        self.content: list[dict[str, Any]] = []
        self.open: str | None = None  # type of content[-1] while it is open
        self.tool_block: dict[int, int] = {}  # parser tool index -> content index
        self.finished: Finished | None = None

    # streaming entry points

    def start(self, usage: Usage | None = None) -> list[dict[str, Any]]:
        """``message_start`` (usage as far as known: pass the prompt/cached counts if you have them)."""
        usage = usage or Usage()
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(usage, 0),
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def encode(self, event: Any) -> list[dict[str, Any]]:
        """Stream events for one parser event (also folded into the non-streaming message)."""
        if isinstance(event, ReasoningDelta):
            if not event.text:
                return []
            out = self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self.content[-1]["thinking"] += event.text
            return out + [self._delta({"type": "thinking_delta", "thinking": event.text})]
        if isinstance(event, ReasoningEnd):
            return self._close() if self.open == "thinking" else []
        if isinstance(event, TextDelta):
            if not event.text:
                return []
            out = self._open("text", {"type": "text", "text": ""})
            self.content[-1]["text"] += event.text
            return out + [self._delta({"type": "text_delta", "text": event.text})]
        if isinstance(event, ToolCallStart):
            return self._open_tool(event.index, event.id, event.name)
        if isinstance(event, ToolCallArgsDelta):
            out = [] if event.index in self.tool_block else self._open_tool(event.index, f"call_{event.index}", "")
            index = self.tool_block[event.index]
            return out + [self._delta({"type": "input_json_delta", "partial_json": event.delta}, index)]
        if isinstance(event, ToolCallComplete):
            out = [] if event.index in self.tool_block else self._open_tool(event.index, event.id, event.name)
            index = self.tool_block[event.index]
            self.content[index]["input"] = event.arguments
            if self.open == "tool_use" and index == len(self.content) - 1:
                out += self._close()
            return out
        if isinstance(event, Finished):
            self.finished = event
            out = self._close()
            reason, sequence = self.stop_reason()
            delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": self._final_usage()}
            return out + [delta, {"type": "message_stop"}]
        return []

    def error(self, exc: KvyardError) -> dict[str, Any]:
        """The ``error`` stream event for a failure after the stream began (the SDK raises on it)."""
        return anthropic_error(exc)

    # non-streaming

    def response(self) -> dict[str, Any]:
        reason, sequence = self.stop_reason()
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [dict(block) for block in self.content],
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": self._final_usage(),
        }

    def stop_reason(self) -> tuple[str, str | None]:
        """``(stop_reason, stop_sequence)`` from ``Finished`` and the blocks seen."""
        finished = self.finished
        if finished is None:
            return "end_turn", None
        if finished.finish_reason in STOP_REASONS:
            return STOP_REASONS[finished.finish_reason], None
        sequence = getattr(finished, "stop_sequence", None)  # set once the generator reports it
        if sequence:
            return "stop_sequence", sequence
        if any(block["type"] == "tool_use" for block in self.content):
            return "tool_use", None
        return "end_turn", None

    # blocks

    def _final_usage(self) -> dict[str, Any]:
        usage = self.finished.usage if self.finished else Usage()
        return _usage(usage, usage.completion_tokens)

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": len(self.content) - 1 if index is None else index, "delta": delta}

    def _open(self, kind: str, block: dict[str, Any]) -> list[dict[str, Any]]:
        if self.open == kind:
            return []
        out = self._close()
        self.content.append(block)
        self.open = kind
        return out + [{"type": "content_block_start", "index": len(self.content) - 1, "content_block": dict(block)}]

    def _open_tool(self, index: int, call_id: str, name: str) -> list[dict[str, Any]]:
        out = self._close()
        block = {"type": "tool_use", "id": to_anthropic_id(call_id), "name": name, "input": {}}
        self.content.append(block)
        self.open = "tool_use"
        self.tool_block[index] = len(self.content) - 1
        return out + [{"type": "content_block_start", "index": len(self.content) - 1, "content_block": dict(block, input={})}]

    def _close(self) -> list[dict[str, Any]]:
        if self.open is None:
            return []
        out: list[dict[str, Any]] = []
        block = self.content[-1]
        if self.open == "thinking":
            block["signature"] = self.signer(block["thinking"])
            out.append(self._delta({"type": "signature_delta", "signature": block["signature"]}))
        self.open = None
        return out + [{"type": "content_block_stop", "index": len(self.content) - 1}]
