"""The API-neutral conversation every HTTP API decodes into, and every later stage consumes.

Stages: decode API -> ``Conversation`` -> sanitize -> render (replay policy) -> tokenize.
msgspec structs: they are built per request on the hot path and cross process boundaries.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Role = Literal["system", "developer", "user", "assistant", "tool"]


class TextPart(msgspec.Struct, tag="text"):
    text: str


class ReasoningPart(msgspec.Struct, tag="reasoning"):
    """Earlier reasoning; ``signature`` is kvyard's proof that it generated this text verbatim."""

    text: str
    signature: str | None = None
    redacted: bool = False


class ToolCallPart(msgspec.Struct, tag="tool_call"):
    id: str
    name: str
    arguments: dict[str, Any]


class ToolResultPart(msgspec.Struct, tag="tool_result"):
    tool_call_id: str
    content: str
    is_error: bool = False


Part = TextPart | ReasoningPart | ToolCallPart | ToolResultPart


class Message(msgspec.Struct):
    role: Role
    parts: list[Part]


def empty_parameters() -> dict[str, Any]:
    """The JSON schema of a tool that takes no arguments (a fresh dict each call)."""
    return {"type": "object", "properties": {}}


class Tool(msgspec.Struct):
    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=empty_parameters)


class Conversation(msgspec.Struct):
    """What the model is asked: system text, messages in order, the tools on offer."""

    system: str = ""
    messages: list[Message] = msgspec.field(default_factory=list)
    tools: list[Tool] = msgspec.field(default_factory=list)
