"""One request, API-neutral (``Prompt``), as an Anthropic Messages, OpenAI Chat Completions or
OpenAI Responses body, and as Hugging Face chat-template messages (for the ideal reuse).

Mappings (as the harnesses send them):

- System prompt. Messages: ``system`` is a list of text blocks, the billing line its own first
  block (as Claude Code sends it), then the system text. Chat: one ``system`` message, the
  billing line, ``"\\n"``, the system text. Responses: ``instructions`` built the same way.
- Assistant turns. Messages: ``thinking`` (with the server's signature, "" for scripted text),
  ``text``, ``tool_use`` blocks. Chat: ``content`` (``None`` when only tool calls),
  ``reasoning_content``, ``tool_calls``. Responses: ``function_call`` items and an assistant
  ``message`` item; reasoning is not replayed (Responses reasoning items are opaque).
- Tool results. Messages: ``tool_result`` blocks in a user message; consecutive user-side
  messages merge into one user message (Anthropic needs alternating roles). Chat: ``tool``
  messages. Responses: ``function_call_output`` items.
- Reasoning on: Messages ``thinking`` ``enabled`` with ``budget_tokens = max_tokens - 1`` when
  ``max_tokens > 1024`` (the API's minimum budget is 1024), else ``adaptive``; Chat
  ``chat_template_kwargs.enable_thinking``; Responses ``reasoning.effort``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from kvyard.bench.records import Message, Tool


class Prompt(msgspec.Struct, frozen=True):
    system: str
    messages: tuple[Message, ...]
    max_tokens: int
    tools: tuple[Tool, ...] = ()
    billing: str = ""
    thinking: bool = False
    session_id: str = ""


def system_text(p: Prompt, keep_billing: bool = True) -> str:
    if keep_billing and p.billing:
        return p.billing + "\n" + p.system
    return p.system


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"raw": text}
    return value if isinstance(value, dict) else {"value": value}


# -- OpenAI Chat Completions ------------------------------------------------------------------


def chat_messages(p: Prompt, keep_billing: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = system_text(p, keep_billing)
    if system:
        out.append({"role": "system", "content": system})
    for m in p.messages:
        if m.role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": m.content if (m.content or not m.tool_calls) else None}
            if m.reasoning:
                msg["reasoning_content"] = m.reasoning
            if m.tool_calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls
                ]
            out.append(msg)
        elif m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        else:
            out.append({"role": "user", "content": m.content})
    return out


def chat_tools(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}} for t in tools]


def chat_body(p: Prompt, model: str, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": chat_messages(p), "max_tokens": p.max_tokens, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if p.tools:
        body["tools"] = chat_tools(p.tools)
    if p.thinking:
        body["chat_template_kwargs"] = {"enable_thinking": True}
    return body


# -- Anthropic Messages -------------------------------------------------------------------------


def _anthropic_blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "assistant":
        blocks: list[dict[str, Any]] = []
        if m.reasoning:
            blocks.append({"type": "thinking", "thinking": m.reasoning, "signature": m.signature})
        if m.content:
            blocks.append({"type": "text", "text": m.content})
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments(c.arguments)} for c in m.tool_calls]
        return blocks or [{"type": "text", "text": " "}]
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
    return [{"type": "text", "text": m.content}]


def anthropic_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _anthropic_blocks(m)
        if out and out[-1]["role"] == role:
            out[-1]["content"] += blocks
        else:
            out.append({"role": role, "content": blocks})
    return out


def messages_body(p: Prompt, model: str, stream: bool = True) -> dict[str, Any]:
    system = [{"type": "text", "text": p.billing}] if p.billing else []
    if p.system:
        system.append({"type": "text", "text": p.system, "cache_control": {"type": "ephemeral"}})
    body: dict[str, Any] = {"model": model, "max_tokens": p.max_tokens, "messages": anthropic_messages(p.messages), "stream": stream}
    if system:
        body["system"] = system
    if p.tools:
        body["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in p.tools]
    if p.thinking:
        body["thinking"] = (
            {"type": "enabled", "budget_tokens": p.max_tokens - 1} if p.max_tokens > 1024 else {"type": "adaptive"}
        )
    return body


# -- OpenAI Responses ---------------------------------------------------------------------------


def responses_body(p: Prompt, model: str, stream: bool = True) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for m in p.messages:
        if m.role == "assistant":
            if m.content:
                items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": m.content}]})
            items += [{"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls]
        elif m.role == "tool":
            items.append({"type": "function_call_output", "call_id": m.tool_call_id, "output": m.content})
        else:
            items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": m.content}]})
    body: dict[str, Any] = {"model": model, "input": items, "max_output_tokens": p.max_tokens, "stream": stream, "store": False}
    system = system_text(p)
    if system:
        body["instructions"] = system
    if p.tools:
        body["tools"] = [{"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters} for t in p.tools]
    if p.session_id:
        body["prompt_cache_key"] = p.session_id
    if p.thinking:
        body["reasoning"] = {"effort": "medium"}
    return body


BODIES = {"chat": chat_body, "messages": messages_body, "responses": responses_body}


# -- chat template (ideal reuse) -------------------------------------------------------------


def template_messages(p: Prompt, keep_billing: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(messages, tools)`` for ``tokenizer.apply_chat_template``: the chat mapping, with tool-call
    arguments as objects (what templates expect) and, by default, without the billing line."""
    msgs = chat_messages(p, keep_billing)
    for m in msgs:
        for c in m.get("tool_calls") or ():
            c["function"] = {"name": c["function"]["name"], "arguments": _arguments(c["function"]["arguments"])}
    return msgs, chat_tools(p.tools)
