"""The benchmark's records, as msgspec structs, and their JSONL files.

A *workload* file is one ``WorkloadHeader`` line followed by one ``Session`` line per top-level
session. Large texts shared by many sessions (the system prompt, the tool definitions) live once
in the header, under a key; sessions name the key. A session is a script of ``Step``s: what the
harness appends before each request (a user message, tool results), and a *scripted* reply,
which is what goes into the history when the workload is replayed offline (``replies="scripted"``)
or what the runner falls back to when a live reply cannot stand in for it (see
``kvyard.bench.conversation``).

A *results* file is one ``RunHeader`` line, one ``RequestRecord`` line per request sent, and one
``RunFooter`` line. Every line carries a ``kind`` tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

Role = Literal["user", "assistant", "tool"]


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    name: str
    arguments: str
    """JSON text of the arguments object."""


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """One conversation message in an API-neutral shape (the system prompt is not a message)."""

    role: Role
    content: str = ""
    reasoning: str = ""
    signature: str = ""
    """Anthropic thinking signature, as returned by the server (live replies only)."""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    """For ``role="tool"``: the call this is the result of."""


class Tool(msgspec.Struct, frozen=True):
    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments object."""


class Step(msgspec.Struct, frozen=True, omit_defaults=True):
    """One request of a session."""

    append: tuple[Message, ...]
    """Messages the harness appends to the history before sending (user text, tool results)."""
    reply: Message
    """The scripted assistant reply to this request."""
    max_tokens: int
    kind: str = "turn"
    """Label for reports: task, tool, subagent, summarize, compacted, turn."""
    billing: str = ""
    """Claude Code billing line to put first in the system prompt of this request ("" = none)."""
    reset: bool = False
    """Compaction: the history is dropped before ``append`` (the system prompt and tools stay)."""
    summary_prefix: str = ""
    """With ``reset``: a user message ``summary_prefix + previous reply's text`` leads ``append``."""
    subagents: tuple[Session, ...] = ()
    """Sessions run (concurrently) before this request; the i-th one's last reply text becomes the
    content of the i-th tool message in ``append``."""


class Session(msgspec.Struct, frozen=True, tag="session", tag_field="kind", omit_defaults=True):
    id: str
    session_id: str
    """Sent as the session header; subagents share their parent's (as Claude Code's do)."""
    steps: tuple[Step, ...]
    arrival_s: float = 0.0
    """Start time, seconds after the run starts (the runner may start it later: concurrency cap)."""
    system: str = ""
    """Key into ``WorkloadHeader.systems``."""
    tools: str = ""
    """Key into ``WorkloadHeader.toolsets``."""
    parent: str = ""
    """For subagents: the id of the session that launched it."""


class WorkloadHeader(msgspec.Struct, frozen=True, tag="workload", tag_field="kind", omit_defaults=True):
    source: str
    """harness, mooncake or vllm-multi-turn."""
    params: dict[str, Any] = {}
    concurrency: int = 0
    """Default cap on sessions in flight (0 = none)."""
    thinking: bool = False
    """Ask for reasoning (Anthropic ``thinking``, chat ``enable_thinking``)."""
    systems: dict[str, str] = {}
    toolsets: dict[str, tuple[Tool, ...]] = {}


class Workload(msgspec.Struct, frozen=True):
    header: WorkloadHeader
    sessions: tuple[Session, ...]

    def system_text(self, session: Session) -> str:
        return self.header.systems.get(session.system, "")

    def tools_of(self, session: Session) -> tuple[Tool, ...]:
        return self.header.toolsets.get(session.tools, ())


class RunHeader(msgspec.Struct, tag="run", tag_field="kind", omit_defaults=True):
    label: str
    url: str
    api: str
    model: str
    workload: str
    source: str
    concurrency: int
    replies: str
    started_at: float
    command: str = ""
    ideal_source: str = "none"
    """tokenizer, server or none: where the prompts' token ids for the ideal reuse came from."""
    block_size: int = 32


class RequestRecord(msgspec.Struct, tag="request", tag_field="kind", omit_defaults=True):
    session: str
    turn: int
    step_kind: str
    t_send_s: float
    """Seconds after the run started."""
    e2e_s: float
    ttft_s: float | None = None
    """To the first output-bearing event (text, reasoning or tool-call delta); None if none came."""
    itl_s: list[float] = []
    """Gaps between consecutive output-bearing events."""
    status: int = 0
    error: str = ""
    output_tokens: int = 0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    """From the response's usage; None when the server reported none."""
    ideal_cached_tokens: int | None = None
    ideal_prompt_tokens: int | None = None
    """Length of the prompt whose ideal reuse was computed (tokenizer or server ids)."""
    parent: str = ""


class RunFooter(msgspec.Struct, tag="footer", tag_field="kind", omit_defaults=True):
    wall_s: float
    sessions: int
    requests: int
    errors: int
    unsent: int = 0
    """Workload requests not sent because the run's time budget ran out."""
    budget_s: float | None = None
    metrics_before: dict[str, float] = {}
    metrics_after: dict[str, float] = {}
    metrics_error: str = ""


WorkloadLine = WorkloadHeader | Session
ResultLine = RunHeader | RequestRecord | RunFooter

_enc = msgspec.json.Encoder()


def write_jsonl(path: str | Path, items: Iterable[msgspec.Struct]) -> int:
    n = 0
    with open(path, "wb") as fh:
        for item in items:
            fh.write(_enc.encode(item) + b"\n")
            n += 1
    return n


def _lines(path: str | Path, decoder: msgspec.json.Decoder) -> Iterator[Any]:
    with open(path, "rb") as fh:
        for no, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield decoder.decode(line)
                except msgspec.ValidationError as exc:
                    raise ValueError(f"{path}:{no}: {exc}") from None


def write_workload(path: str | Path, workload: Workload) -> int:
    return write_jsonl(path, [workload.header, *workload.sessions]) - 1


def read_workload(path: str | Path) -> Workload:
    items = list(_lines(path, msgspec.json.Decoder(WorkloadLine)))
    if not items or not isinstance(items[0], WorkloadHeader):
        raise ValueError(f"{path}: not a workload file (its first line must be the workload header)")
    sessions = tuple(s for s in items[1:] if isinstance(s, Session))
    return Workload(header=items[0], sessions=sessions)


def read_results(path: str | Path) -> tuple[RunHeader, list[RequestRecord], RunFooter | None]:
    header, records, footer = None, [], None
    for item in _lines(path, msgspec.json.Decoder(ResultLine)):
        if isinstance(item, RunHeader):
            header = item
        elif isinstance(item, RequestRecord):
            records.append(item)
        else:
            footer = item
    if header is None:
        raise ValueError(f"{path}: not a results file (no run header line)")
    return header, records, footer
