"""Reasoning-replay policies: which earlier reasoning the next prompt renders *as reasoning*.

Whether a model sees its earlier reasoning again is model- and turn-specific, and replay that
differs from what was generated throws the KV cache away from that point. A policy is a pure
decision over the conversation: for each assistant message, keep its reasoning or drop it.

Policies (a "user query" is a non-assistant, non-system message that renders as a user turn:
one with text of its own, or with neither text nor tool results; tool results alone are not a
query, as in Qwen3's template):

- ``drop``: no earlier reasoning (DeepSeek-R1).
- ``after_last_user``: reasoning of the assistant messages after the last user query (Qwen3,
  GLM-4.5, Kimi-K2): the current tool loop keeps its thoughts, earlier exchanges lose them.
- ``keep_with_tool_calls``: reasoning of every assistant message that made tool calls
  (Nemotron with ``truncate_history_thinking=false``).
- ``keep_all``: every earlier reasoning.
- ``harmony``: gpt-oss's rule, analysis only before a pending tool call: the assistant messages
  after the last user query that made tool calls and follow the last tool-call-free (final)
  assistant message of that stretch.

``apply_replay(conv, policy, signer=..., known=...)`` returns a new ``Conversation`` (messages it
does not change are shared; treat them as immutable) in which

1. redacted reasoning is removed, whatever the policy (opaque: never rendered);
2. reasoning the policy does not keep is removed, verified or not;
3. kept reasoning stays a ``ReasoningPart`` only when kvyard can prove it generated that exact
   text: its ``signature`` equals ``signer(text)`` (compared in constant time), or ``known(msg)``
   says the token-exact history holds this whole assistant message (that is how unsigned
   reasoning, e.g. OpenAI chat ``reasoning_content``, is trusted: the history key hashes the
   reasoning text, see ``kvyard.frontend.history``);
4. kept reasoning that is not proven (no signature, a foreign one, or text changed after signing)
   becomes a ``TextPart`` with the same text, at the same place in the message (so usually a
   prefix of the visible answer).

Why (4) and not "drop" or "trust": the client's conversation keeps all its content (meaning is
preserved: the model sees what the client says it said), but unproven text is never presented to
the model as its own chain of thought, and never spliced as generated tokens (the history key no
longer matches once reasoning became text). Cache: a changed block differs from what was
generated anyway, and a foreign block (another provider's) was never in this cache, so nothing
that could have been reused is lost. Policy first: unproven reasoning the policy drops is dropped,
so an unproven block can never add more to the prompt than the policy allows.

Per-request override (``replay_override``): ``chat_template_kwargs.kvyard_replay`` (OpenAI chat),
``metadata.kvyard_replay`` (Anthropic Messages, OpenAI Responses) or the ``x-kvyard-replay``
header, first found wins, else the model profile's ``replay``. The API layer copies the value into
``GenerationOptions.template_kwargs["kvyard_replay"]``; the renderer never passes ``kvyard_*``
keys to the chat template.

Cost: O(parts) plus one ``signer`` call (HMAC-SHA256 over the text) per kept signed part.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

from kvyard.conversation import Conversation, Message, Part, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from kvyard.errors import InvalidRequest

POLICIES = ("drop", "after_last_user", "keep_with_tool_calls", "keep_all", "harmony")
REPLAY_KWARG = "kvyard_replay"
"""Key of the override in ``chat_template_kwargs`` / ``template_kwargs`` and in ``metadata``."""
REPLAY_HEADER = "x-kvyard-replay"


def is_user_query(msg: Message) -> bool:
    """The message renders as a user turn (mirrors ``kvyard.frontend.render.to_template_messages``)."""
    if msg.role in ("system", "developer", "assistant"):
        return False
    text = "\n".join(p.text for p in msg.parts if isinstance(p, TextPart))
    has_results = any(isinstance(p, ToolResultPart) for p in msg.parts)
    return bool(text) or not has_results


def _has_calls(msg: Message) -> bool:
    return any(isinstance(p, ToolCallPart) for p in msg.parts)


def kept_reasoning(conv: Conversation, policy: str) -> list[bool]:
    """Per message of ``conv``: does ``policy`` keep this message's reasoning? (False for non-assistants.)"""
    if policy not in POLICIES:
        raise ValueError(f"unknown replay policy {policy!r}; known: {', '.join(POLICIES)}")
    msgs = conv.messages
    assistant = [m.role == "assistant" for m in msgs]
    last_query = max((i for i, m in enumerate(msgs) if is_user_query(m)), default=-1)
    if policy == "drop":
        keep = [False] * len(msgs)
    elif policy == "keep_all":
        keep = list(assistant)
    elif policy == "after_last_user":
        keep = [i > last_query for i in range(len(msgs))]
    elif policy == "keep_with_tool_calls":
        keep = [_has_calls(m) for m in msgs]
    else:  # harmony
        last_final = max(
            (i for i in range(last_query + 1, len(msgs)) if assistant[i] and not _has_calls(msgs[i])),
            default=last_query,
        )
        keep = [i > last_final and _has_calls(m) for i, m in enumerate(msgs)]
    return [a and k for a, k in zip(assistant, keep, strict=True)]


def verified(part: ReasoningPart, signer: Callable[[str], str]) -> bool:
    """``part.signature`` is kvyard's signature of exactly ``part.text``."""
    if part.redacted or not part.signature:
        return False
    return hmac.compare_digest(signer(part.text).encode(), part.signature.encode())


def apply_replay(
    conv: Conversation,
    policy: str,
    *,
    signer: Callable[[str], str],
    known: Callable[[Message], bool] | None = None,
) -> Conversation:
    """The conversation whose remaining ``ReasoningPart``s are exactly those to render as reasoning."""
    keep = kept_reasoning(conv, policy)
    messages: list[Message] = []
    for msg, kept in zip(conv.messages, keep, strict=True):
        if not any(isinstance(p, ReasoningPart) for p in msg.parts):
            messages.append(msg)
            continue
        trusted = kept and known is not None and known(msg)
        parts: list[Part] = []
        for p in msg.parts:
            if not isinstance(p, ReasoningPart):
                parts.append(p)
            elif p.redacted or not kept:
                continue
            elif trusted or verified(p, signer):
                parts.append(p)
            elif p.text:
                parts.append(TextPart(p.text))
        messages.append(Message(msg.role, parts))
    return Conversation(system=conv.system, messages=messages, tools=conv.tools)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def replay_override(
    template_kwargs: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
) -> str | None:
    """The policy a request asks for, or None for the profile's.

    First found wins: ``template_kwargs["kvyard_replay"]``, ``metadata["kvyard_replay"]``, header
    ``x-kvyard-replay``. An unknown value is an ``InvalidRequest`` naming the field.
    """
    for source, where in (
        ((template_kwargs or {}).get(REPLAY_KWARG), f"chat_template_kwargs.{REPLAY_KWARG}"),
        ((metadata or {}).get(REPLAY_KWARG), f"metadata.{REPLAY_KWARG}"),
        (_header(headers, REPLAY_HEADER), REPLAY_HEADER),
    ):
        if source is None:
            continue
        if not isinstance(source, str) or source not in POLICIES:
            raise InvalidRequest(
                f"{where}: unknown reasoning-replay policy {source!r}; use one of {', '.join(POLICIES)}", param=where
            )
        return source
    return None
