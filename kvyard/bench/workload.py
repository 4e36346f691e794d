"""Seeded generator of harness-like agent sessions (Claude Code / Codex shaped traffic).

Every session shares one large prefix: the system prompt (``system_tokens``) and the tool
definitions (``n_tools`` tools, ``tools_tokens`` in all; the first is ``Task``, which launches
subagents). A session is ``tasks`` user tasks; each task is a tool loop of ``tool_loops``
(min:max) assistant turns, each with reasoning and one tool call (sometimes two in parallel),
whose results are appended before the next request, and ends with a text answer. Then:

- **billing line**: with ``billing``, every request's system prompt starts with Claude Code's
  ``x-anthropic-billing-header: cc_version=2.1.332.<3 hex, per session>; cc_entrypoint=cli;
  cch=<5 hex, per request>;`` line, so the first prompt block differs on every request unless
  the server drops that line;
- **subagents**: with probability ``subagent_prob`` a tool-loop turn calls ``Task`` 1..n times
  (``subagents`` min:max); each call is a subagent session with the same system prompt and tools
  and the session id of its parent, whose first user message is the call's ``prompt``; it runs
  ``subagent_loops`` tool turns and a final answer, which becomes the ``Task`` tool result;
- **compaction**: once the history after the system prompt exceeds ``compact_at_tokens``
  (approximate tokens; 0 = never), the next task is preceded by a summarize request, and the
  request after it starts a new history whose first user message is the summary;
- **arrivals**: session start times are a Poisson process of ``rate`` sessions per second
  (0 = all at once), with at most ``concurrency`` sessions in flight (enforced by the runner).

Determinism: each part draws from its own ``random.Random`` seeded by a string derived from
``seed`` (``"<seed>/session/<i>"``, ``"<seed>/billing/<i>"``, ...), so the same parameters give
byte-identical workloads, and switching the billing line off changes nothing else. Sizes are
approximate tokens (``kvyard.bench.filler``). Replies are scripted text; the runner replaces them
with the server's real replies when run with ``replies="live"``.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass

from kvyard.bench.filler import approx_tokens, code, hex_id, prose
from kvyard.bench.records import (
    Message,
    Session,
    Step,
    Tool,
    ToolCall,
    Workload,
    WorkloadHeader,
)

SYSTEM_HEAD = (
    "You are an interactive CLI tool that helps users with software engineering tasks. Use the "
    "instructions below and the tools available to you to assist the user.\n\n"
)
SUMMARIZE_PROMPT = (
    "Your task is to create a detailed summary of the conversation so far, paying close attention "
    "to the user's explicit requests and your previous actions. "
)
CONTINUATION_PREFIX = (
    "This session is being continued from a previous conversation that ran out of context. "
    "The conversation is summarized below:\n"
)
TOOL_NAMES = (
    "Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit", "MultiEdit", "Write",
    "NotebookEdit", "WebFetch", "TodoWrite", "WebSearch", "BashOutput", "KillShell",
    "SlashCommand", "Skill", "AskUserQuestion", "EnterPlanMode",
)
_PARAMS = ("command", "file_path", "pattern", "path", "description", "content", "old_string", "new_string", "url", "query")


@dataclass(frozen=True)
class HarnessParams:
    sessions: int = 8
    seed: int = 0
    system_tokens: int = 12000
    tools_tokens: int = 8000
    n_tools: int = 20
    tasks: int = 2
    tool_loops: tuple[int, int] = (2, 5)
    reasoning_tokens: int = 60
    text_tokens: int = 40
    user_tokens: int = 120
    tool_result_tokens: int = 300
    subagent_prob: float = 0.15
    subagents: tuple[int, int] = (1, 2)
    subagent_loops: tuple[int, int] = (1, 3)
    compact_at_tokens: int = 0
    summary_tokens: int = 400
    output_tokens: int = 64
    billing: bool = True
    thinking: bool = True
    rate: float = 0.0
    concurrency: int = 4

    def __post_init__(self) -> None:
        for name in ("tool_loops", "subagents", "subagent_loops"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be min:max with 0 <= min <= max, got {lo}:{hi}")
        if self.n_tools < 1:
            raise ValueError("n_tools must be at least 1 (Task is always the first tool)")
        if self.sessions < 1 or self.tasks < 1 or self.output_tokens < 1:
            raise ValueError("sessions, tasks and output_tokens must be at least 1")
        if not 0 <= self.subagent_prob <= 1:
            raise ValueError("subagent_prob must be in [0, 1]")
        if self.rate < 0 or self.concurrency < 0:
            raise ValueError("rate and concurrency must be >= 0")


def make_tools(rng: random.Random, n_tools: int, tools_tokens: int) -> tuple[Tool, ...]:
    """``n_tools`` tool definitions of about ``tools_tokens`` in all (Claude Code's names first)."""
    per_tool = max(tools_tokens // n_tools, 8)
    tools = []
    for i in range(n_tools):
        name = TOOL_NAMES[i] if i < len(TOOL_NAMES) else f"Tool{i}"
        if name == "Task":
            props = ("description", "prompt", "subagent_type")
        else:
            props = tuple(rng.sample(_PARAMS, rng.randint(1, 4)))
        prop_tokens = max(per_tool * 2 // 5 // len(props), 2)
        schema = {
            "type": "object",
            "properties": {p: {"type": "string", "description": prose(rng, prop_tokens)} for p in props},
            "required": list(props[:1]),
            "additionalProperties": False,
        }
        desc_tokens = max(per_tool - approx_tokens(json.dumps(schema)), 4)
        tools.append(Tool(name=name, description=prose(rng, desc_tokens), parameters=schema))
    return tuple(tools)


def billing_line(version: str, rng: random.Random) -> str:
    return f"x-anthropic-billing-header: cc_version=2.1.332.{version}; cc_entrypoint=cli; cch={hex_id(rng, 5)};"


class _SessionBuilder:
    """Draws one session's script; ``sid`` seeds everything it draws."""

    def __init__(self, p: HarnessParams, tools: tuple[Tool, ...], sid: str, session_id: str, version: str):
        self.p, self.tools, self.sid, self.session_id, self.version = p, tools, sid, session_id, version
        self.rng = random.Random(f"{p.seed}/session/{sid}")
        self.bill_rng = random.Random(f"{p.seed}/billing/{sid}")
        self.calls = 0

    def billing(self) -> str:
        return billing_line(self.version, self.bill_rng) if self.p.billing else ""

    def call_id(self) -> str:
        self.calls += 1
        return f"toolu_{self.sid.replace('.', '_')}_{self.calls:04d}"

    def tool_call(self) -> ToolCall:
        tool = self.rng.choice(self.tools[1:] or self.tools)
        args = {p: prose(self.rng, 6) for p in list(tool.parameters.get("properties", {}))[:2]}
        return ToolCall(id=self.call_id(), name=tool.name, arguments=json.dumps(args))

    def tool_result(self, call: ToolCall) -> Message:
        size = max(int(self.p.tool_result_tokens * self.rng.lognormvariate(0, 0.5)), 1)
        text = code(self.rng, size) if self.rng.random() < 0.6 else prose(self.rng, size)
        return Message(role="tool", content=text, tool_call_id=call.id)

    def reasoning(self) -> str:
        return prose(self.rng, self.p.reasoning_tokens) if self.p.reasoning_tokens else ""

    def script(self, first_user: str, tasks: int, loops: tuple[int, int], spawn: bool) -> tuple[Step, ...]:
        p, rng = self.p, self.rng
        steps: list[Step] = []
        pending: tuple[Message, ...] = (Message(role="user", content=first_user),)
        kind, reset, summary_prefix, subs = "task", False, "", ()
        history = approx_tokens(first_user)

        def add(reply: Message) -> None:
            nonlocal reset, summary_prefix, subs, history
            steps.append(
                Step(
                    append=pending,
                    reply=reply,
                    max_tokens=p.output_tokens,
                    kind=kind,
                    billing=self.billing(),
                    reset=reset,
                    summary_prefix=summary_prefix,
                    subagents=subs,
                )
            )
            history += sum(approx_tokens(m.content) for m in pending) + approx_tokens(reply.content + reply.reasoning)
            reset, summary_prefix, subs = False, "", ()

        for task in range(tasks):
            for _ in range(rng.randint(*loops)):
                if spawn and rng.random() < p.subagent_prob:
                    n = rng.randint(*p.subagents)
                    new_subs = tuple(self.subagent() for _ in range(n))
                    calls = tuple(
                        ToolCall(
                            id=self.call_id(),
                            name="Task",
                            arguments=json.dumps({"description": "subagent", "prompt": s.steps[0].append[0].content, "subagent_type": "general-purpose"}),
                        )
                        for s in new_subs
                    )
                    results = tuple(
                        Message(role="tool", content=s.steps[-1].reply.content, tool_call_id=c.id) for s, c in zip(new_subs, calls)
                    )
                else:
                    new_subs = ()
                    calls = tuple(self.tool_call() for _ in range(2 if rng.random() < 0.2 else 1))
                    results = tuple(self.tool_result(c) for c in calls)
                text = prose(rng, 12) if rng.random() < 0.3 else ""
                add(Message(role="assistant", content=text, reasoning=self.reasoning(), tool_calls=calls))
                pending, subs, kind = results, new_subs, "subagent" if new_subs else "tool"
            add(Message(role="assistant", content=prose(rng, p.text_tokens), reasoning=self.reasoning()))
            if task == tasks - 1:
                break
            if p.compact_at_tokens and history > p.compact_at_tokens:
                pending, kind = (Message(role="user", content=SUMMARIZE_PROMPT + prose(rng, 40)),), "summarize"
                add(Message(role="assistant", content=prose(rng, p.summary_tokens)))
                reset, summary_prefix, kind, history = True, CONTINUATION_PREFIX, "compacted", p.summary_tokens
            else:
                kind = "task"
            pending = (Message(role="user", content=prose(rng, p.user_tokens)),)
        return tuple(steps)

    def subagent(self) -> Session:
        self.calls += 1
        sub = _SessionBuilder(self.p, self.tools, f"{self.sid}.{self.calls}", self.session_id, self.version)
        first = "Subagent task: " + prose(sub.rng, self.p.user_tokens)
        steps = sub.script(first, 1, self.p.subagent_loops, spawn=False)
        return Session(id=sub.sid, session_id=self.session_id, steps=steps, system="main", tools="main", parent=self.sid)


def generate(p: HarnessParams) -> Workload:
    """The workload for ``p`` (pure: same parameters, same workload)."""
    system = SYSTEM_HEAD + prose(random.Random(f"{p.seed}/system"), p.system_tokens)
    tools = make_tools(random.Random(f"{p.seed}/tools"), p.n_tools, p.tools_tokens)
    arrivals = random.Random(f"{p.seed}/arrivals")
    t = 0.0
    sessions = []
    for i in range(p.sessions):
        if i and p.rate > 0:
            t += arrivals.expovariate(p.rate)
        ids = random.Random(f"{p.seed}/ids/{i}")
        session_id = f"{hex_id(ids, 8)}-{hex_id(ids, 4)}-{hex_id(ids, 4)}-{hex_id(ids, 4)}-{hex_id(ids, 12)}"
        b = _SessionBuilder(p, tools, f"s{i}", session_id, hex_id(ids, 3))
        steps = b.script(prose(b.rng, p.user_tokens), p.tasks, p.tool_loops, spawn=True)
        sessions.append(Session(id=b.sid, session_id=session_id, steps=steps, arrival_s=round(t, 6), system="main", tools="main"))
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(p).items()}
    header = WorkloadHeader(
        source="harness",
        params=params,
        concurrency=p.concurrency,
        thinking=p.thinking,
        systems={"main": system},
        toolsets={"main": tools},
    )
    return Workload(header=header, sessions=tuple(sessions))


def iter_sessions(sessions: tuple[Session, ...]):
    """Every session, subagents included (depth first, parents before their subagents)."""
    for s in sessions:
        yield s
        for step in s.steps:
            yield from iter_sessions(step.subagents)
