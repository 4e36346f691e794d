"""Token-exact history: an assistant turn replayed verbatim is rendered as the ids the engine generated.

Why: decode -> encode is not the identity. A model may generate ``"ab"`` as two tokens where the
tokenizer would write one; re-tokenizing the replayed text then gives different ids, and the
prefix cache of everything from that token on is lost (and the model sees a tokenization it
never produced). So when a turn finishes, the generator remembers
``turn_key(assistant message as the client will replay it) -> the ids it generated``, and the
renderer (``kvyard.frontend.render.render``) splices those ids in place of re-tokenizing that
turn's text whenever the replayed message has the same key.

Key (``turn_key``): SHA-256 over the canonical content of one assistant message: its reasoning
text (non-redacted reasoning parts joined), its text (text parts joined), and its tool calls in
order as ``[name, JSON of the arguments with sorted keys]``. Kinds are hashed separately, so the
key does not depend on how an API splits or orders blocks of different kinds (OpenAI chat keeps
``reasoning_content``, ``content`` and ``tool_calls`` apart; Anthropic interleaves blocks).
Tool-call ids are ignored unless ``include_ids`` (the parsers make them up; the model does not
generate them in most families). A message with redacted reasoning has no key: kvyard never
generates redacted reasoning, so such a turn is not one of its own. Keys are not namespaced by
model: a store serves one model (a shared store prefixes keys with the model, see ``HistoryStore``).

Because the key covers the reasoning text, a known key also proves kvyard generated that
reasoning: ``kvyard.policies.replay.apply_replay`` trusts unsigned reasoning of known turns.

Value: the ids of the whole turn as the model saw it: the generation prompt's tail after the
assistant header (e.g. ``<think>\\n\\n</think>\\n\\n`` when thinking is off, ``<think>\\n`` when the
template opens reasoning) followed by the output ids without the final stop token, which the
template renders itself.

Store: ``HistoryStore`` is the tiny ``get``/``put`` protocol (a plain dict also satisfies the
renderer, which only calls ``get``); ``InMemoryHistory`` is an LRU bounded by turns and by
tokens. A Redis-backed store (shared by frontend replicas) implements the same two methods; an
async one should prefetch the keys of a request (``turn_keys``) with one ``MGET`` and hand the
renderer the resulting dict, so rendering never blocks the event loop.

Cost: ``turn_key`` is O(size of the message) (one JSON encode, one SHA-256); the LRU is O(1) per
``get``/``put`` plus O(len(ids)) to copy.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from kvyard.conversation import Conversation, Message, Part, ReasoningPart, TextPart, ToolCallPart
from kvyard.parsing.events import ReasoningDelta, ReasoningEnd, TextDelta, ToolCallComplete

_KEY_VERSION = "kvyard.turn.v1"


class HistoryStore(Protocol):
    """Where generated turns are kept: ``turn_key -> token ids``."""

    def get(self, key: str) -> Sequence[int] | None: ...

    def put(self, key: str, ids: Sequence[int]) -> None: ...


class InMemoryHistory:
    """An in-process LRU of turns, bounded by ``max_turns`` and by ``max_tokens`` ids in all."""

    def __init__(self, max_turns: int = 10_000, max_tokens: int = 4_000_000):
        if max_turns < 1 or max_tokens < 1:
            raise ValueError("max_turns and max_tokens must be at least 1")
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self.tokens = 0
        self._turns: OrderedDict[str, array] = OrderedDict()

    def __len__(self) -> int:
        return len(self._turns)

    def get(self, key: str) -> list[int] | None:
        ids = self._turns.get(key)
        if ids is None:
            return None
        self._turns.move_to_end(key)
        return ids.tolist()

    def put(self, key: str, ids: Sequence[int]) -> None:
        if len(ids) > self.max_tokens:
            return
        old = self._turns.pop(key, None)
        if old is not None:
            self.tokens -= len(old)
        stored = array("q", ids)
        self._turns[key] = stored
        self.tokens += len(stored)
        while len(self._turns) > self.max_turns or self.tokens > self.max_tokens:
            _, evicted = self._turns.popitem(last=False)
            self.tokens -= len(evicted)


def _canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def turn_key(parts: Iterable[Part], *, include_ids: bool = False) -> str | None:
    """The history key of an assistant message's parts; None when it cannot be kvyard's own turn."""
    reasoning: list[str] = []
    text: list[str] = []
    calls: list[list[str]] = []
    for p in parts:
        if isinstance(p, ReasoningPart):
            if p.redacted:
                return None
            reasoning.append(p.text)
        elif isinstance(p, TextPart):
            text.append(p.text)
        elif isinstance(p, ToolCallPart):
            calls.append([p.name, _canonical_json(p.arguments)] + ([p.id] if include_ids else []))
        else:
            return None  # tool results do not belong in an assistant message
    payload = _canonical_json([_KEY_VERSION, "".join(reasoning), "".join(text), calls])
    return hashlib.sha256(payload.encode()).hexdigest()


def turn_keys(conv: Conversation) -> list[str]:
    """Keys of the assistant messages of ``conv`` (what a remote store should prefetch)."""
    keys = (turn_key(m.parts) for m in conv.messages if m.role == "assistant")
    return [k for k in keys if k is not None]


def knows(history: HistoryStore | None, msg: Message) -> bool:
    """``history`` holds this exact assistant message (so kvyard generated its reasoning verbatim)."""
    if history is None or msg.role != "assistant":
        return False
    key = turn_key(msg.parts)
    return key is not None and history.get(key) is not None


def remember(history: HistoryStore, parts: Iterable[Part], ids: Sequence[int]) -> str | None:
    """Store ``ids`` as the token-exact rendering of the assistant message ``parts``; returns the key."""
    key = turn_key(parts)
    if key is not None and ids:
        history.put(key, list(ids))
    return key


class TurnRecorder:
    """Wraps a stream parser and records the assistant message its events describe.

    ``parts()`` is the message as the APIs return it and clients replay it: one
    ``ReasoningPart`` per reasoning region, one ``TextPart`` per run of text, one ``ToolCallPart``
    per complete tool call, in stream order (signatures are not needed for the key).
    Everything else (``feed``, ``finish``, ``malformed``, …) is the wrapped parser's.
    """

    def __init__(self, parser: Any):
        self.parser = parser
        self._parts: list[Part] = []
        self._open: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)

    def feed(self, text: str) -> list[Any]:
        return self.record(self.parser.feed(text))

    def finish(self) -> list[Any]:
        return self.record(self.parser.finish())

    def record(self, events: Iterable[Any]) -> list[Any]:
        events = list(events)
        for event in events:
            if isinstance(event, ReasoningDelta) and event.text:
                if self._open != "reasoning":
                    self._parts.append(ReasoningPart(""))
                    self._open = "reasoning"
                self._parts[-1].text += event.text
            elif isinstance(event, TextDelta) and event.text:
                if self._open != "text":
                    self._parts.append(TextPart(""))
                    self._open = "text"
                self._parts[-1].text += event.text
            elif isinstance(event, ReasoningEnd):
                if self._open == "reasoning":
                    self._open = None
            elif isinstance(event, ToolCallComplete):
                self._parts.append(ToolCallPart(id=event.id, name=event.name, arguments=event.arguments))
                self._open = None
        return events

    def parts(self) -> list[Part]:
        return list(self._parts)
