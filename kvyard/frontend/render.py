"""Conversation -> prompt token ids, through the model's own chat template.

Pure given the tokenizer: ``to_template_messages`` maps kvyard's neutral conversation onto the
Hugging Face chat-template message shape; ``render_prompt`` applies the template and tokenizes
the result without adding special tokens twice.
"""

from __future__ import annotations

import json
from typing import Any

from kvyard.conversation import Conversation, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from kvyard.errors import InvalidRequest


def to_template_messages(conv: Conversation) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if conv.system:
        messages.append({"role": "system", "content": conv.system})
    for msg in conv.messages:
        # Separate text blocks (e.g. Claude Code's <system-reminder> and the prompt) by a newline.
        text = "\n".join(p.text for p in msg.parts if isinstance(p, TextPart))
        if msg.role in ("system", "developer"):
            messages.append({"role": "system", "content": text})
        elif msg.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": text}
            reasoning = "".join(p.text for p in msg.parts if isinstance(p, ReasoningPart) and not p.redacted)
            if reasoning:
                entry["reasoning_content"] = reasoning
            calls = [p for p in msg.parts if isinstance(p, ToolCallPart)]
            if calls:
                entry["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
                ]
            messages.append(entry)
        else:
            results = [p for p in msg.parts if isinstance(p, ToolResultPart)]
            for r in results:
                messages.append({"role": "tool", "tool_call_id": r.tool_call_id, "content": r.content})
            if text or not results:
                messages.append({"role": "user", "content": text})
    return messages


def template_tools(conv: Conversation) -> list[dict[str, Any]] | None:
    if not conv.tools:
        return None
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in conv.tools
    ]


def render_prompt(tokenizer, conv: Conversation, template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """Token ids of the prompt, ending with the assistant generation prompt."""
    messages = to_template_messages(conv)
    if not messages:
        raise InvalidRequest("the conversation is empty: send at least one message")
    try:
        text = tokenizer.apply_chat_template(
            messages,
            tools=template_tools(conv),
            add_generation_prompt=True,
            tokenize=False,
            **(template_kwargs or {}),
        )
    except Exception as exc:  # template errors are caused by the request's shape
        raise InvalidRequest(f"the chat template rejected this conversation: {exc}") from exc
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def dumps_arguments(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False)
