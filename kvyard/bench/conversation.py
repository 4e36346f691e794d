"""A session's history, turn by turn: which messages each request sends (pure functions).

``messages_for(history, step, subagent_texts)`` is the conversation a step sends:

1. ``step.reset`` (compaction) drops ``history``; with ``summary_prefix``, a user message
   ``summary_prefix + <text of the last reply>`` comes first.
2. Subagent results: the i-th tool message of ``step.append`` gets the i-th subagent's final
   reply text.
3. Tool results are bound to the tool calls of the reply actually in the history (its last
   assistant message), by position: scripted result i answers that reply's call i. A scripted
   reply (``replies="scripted"``) has exactly the scripted calls, so nothing changes. A live reply
   is kept exactly as the server returned it (its text, reasoning, signature and calls): calls
   beyond the scripted ones get the result ``"(no output)"`` (every call must be answered), and
   scripted results left without a call (a random-weight model rarely calls tools) are sent as a
   user message ``"Tool output:\\n" + result`` — the prompt grows as the script says without
   inventing a call the model did not make, which would break the server's token-exact replay of
   that turn.

``reply_for_history(step, live, replies)`` is what the history keeps after the request: the live
reply (``replies="live"`` and the request succeeded) or the scripted one.

Cost: O(messages in the step) plus one list copy of the history per request.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvyard.bench.records import Message, Step

NO_OUTPUT = "(no output)"
ORPHAN_PREFIX = "Tool output:\n"


def last_reply(history: Sequence[Message]) -> Message | None:
    for m in reversed(history):
        if m.role == "assistant":
            return m
    return None


def _fill_subagents(append: Sequence[Message], texts: Sequence[str]) -> list[Message]:
    out, i = [], 0
    for m in append:
        if m.role == "tool" and i < len(texts):
            m = Message(role="tool", content=texts[i], tool_call_id=m.tool_call_id)
            i += 1
        out.append(m)
    return out


def bind_results(append: Sequence[Message], reply: Message | None) -> list[Message]:
    """Tool results of ``append`` re-addressed to ``reply``'s calls by position (see module doc)."""
    calls = reply.tool_calls if reply else ()
    results = [m for m in append if m.role == "tool"]
    others = [m for m in append if m.role != "tool"]
    if [r.tool_call_id for r in results] == [c.id for c in calls]:
        return list(append)
    bound = [
        Message(role="tool", content=results[i].content if i < len(results) else NO_OUTPUT, tool_call_id=c.id)
        for i, c in enumerate(calls)
    ]
    orphans = [Message(role="user", content=ORPHAN_PREFIX + r.content) for r in results[len(calls):]]
    return bound + orphans + others


def messages_for(history: Sequence[Message], step: Step, subagent_texts: Sequence[str] = ()) -> list[Message]:
    """The conversation (after the system prompt) that ``step`` sends."""
    previous = last_reply(history)
    msgs: list[Message] = []
    if not step.reset:
        msgs = list(history)
    elif step.summary_prefix:
        msgs = [Message(role="user", content=step.summary_prefix + (previous.content if previous else ""))]
    append = _fill_subagents(step.append, subagent_texts)
    return msgs + bind_results(append, None if step.reset else previous)


def reply_for_history(step: Step, live: Message | None, replies: str) -> Message:
    return live if replies == "live" and live is not None else step.reply
