"""Run a workload against an OpenAI Chat Completions, Anthropic Messages or OpenAI Responses
endpoint, streaming, and measure every request.

Schedule: session *i* becomes eligible at ``arrival_s`` (times ``time_scale``) after the start and
starts when one of ``concurrency`` slots is free (0 = no cap); a session runs its steps turn by
turn, each request sent when the previous one has finished. A step with subagents first runs
them (concurrently, inside the parent's slot) and waits for them, as a harness waits for its
``Task`` calls. Each request's history comes from ``kvyard.bench.conversation``: with
``replies="live"`` the server's real reply is appended, with ``replies="scripted"`` the
workload's fixed reply (the same prompts for every system, so the same ideal). A failed request
appends the scripted reply, so the session keeps its shape; the failure is recorded.

Per request (``RequestRecord``): send time, TTFT (to the first output-bearing event: text,
reasoning or tool-call delta), the gaps between output events (ITL), end-to-end latency, output
tokens (usage, else output events), prompt and cached tokens from usage, and the error (HTTP
status and body, an error event in the stream, a stream that ends without its end event, a
transport error or timeout). Optionally a Prometheus endpoint is scraped before and after
(``kvyard.bench.prom``).

Ideal reuse (``kvyard.bench.reuse``) needs each prompt's token ids. Where they come from
(``ideal``):

- ``tokenizer`` (the default when a tokenizer is given): the runner renders each prompt as sent,
  through the chat mapping of ``kvyard.bench.bodies.template_messages`` and the tokenizer's own
  chat template (``apply_chat_template(..., add_generation_prompt=True)``, then tokenized without
  adding special tokens), *without* the billing line unless ``ideal_keep_billing``. This is the
  reuse the trace's content allows, the same yardstick for every system (whether a system drops
  the billing line is what it is measured on). It approximates the server's own rendering; it
  is computed after the run, off the timed path.
- ``server``: the ``prompt_token_ids`` a server returns in the stream (vLLM with
  ``return_token_ids: true``): exact for that server, but each system is then measured against
  its own prompts (a server that keeps the billing line has an ideal near zero).
- ``none``: no ideal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from kvyard.bench import prom
from kvyard.bench.bodies import BODIES, Prompt, template_messages
from kvyard.bench.conversation import messages_for, reply_for_history
from kvyard.bench.records import (
    Message,
    RequestRecord,
    RunFooter,
    RunHeader,
    Session,
    Step,
    Workload,
)
from kvyard.bench.reuse import PromptTiming, ideal_cached
from kvyard.bench.streams import FOLDS, SSEDecoder
from kvyard.bench.workload import iter_sessions

PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}
SESSION_HEADERS = {"chat": "x-session-id", "messages": "x-claude-code-session-id", "responses": "session_id"}


@dataclass
class RunConfig:
    url: str
    """Base URL, e.g. http://127.0.0.1:8000 (a trailing /v1 is ignored)."""
    api: str = "chat"
    model: str | None = None
    """None: the first id of GET /v1/models."""
    label: str = ""
    replies: str = "live"
    concurrency: int | None = None
    """None: the workload's."""
    time_scale: float = 1.0
    timeout_s: float = 600.0
    budget_s: float | None = None
    """Stop sending new requests this long after the start (in-flight ones finish); what was not
    sent is counted in the footer. None: the whole workload."""
    api_key: str | None = None
    session_header: str | None = None
    """None: the API's usual one; "" sends none."""
    headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    return_token_ids: bool = False
    metrics_url: str | None = None
    metrics: tuple[str, ...] = prom.DEFAULT_SELECTORS
    ideal: str = "auto"
    tokenizer: Any = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    ideal_keep_billing: bool = False
    block_size: int = 32
    workload_path: str = ""
    command: str = ""
    progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.api not in PATHS:
            raise ValueError(f"api must be one of {', '.join(PATHS)}, got {self.api!r}")
        if self.replies not in ("live", "scripted"):
            raise ValueError("replies must be live or scripted")
        if self.ideal not in ("auto", "tokenizer", "server", "none"):
            raise ValueError("ideal must be auto, tokenizer, server or none")
        if self.ideal == "tokenizer" and self.tokenizer is None:
            raise ValueError("ideal=tokenizer needs a tokenizer (--tokenizer MODEL_DIR)")
        self.url = self.url.rstrip("/").removesuffix("/v1")


@dataclass
class _Sent:
    record: RequestRecord
    prompt: Prompt
    server_ids: list[int] | None
    t_send: float
    t_ready: float | None


@dataclass
class RunResult:
    header: RunHeader
    records: list[RequestRecord]
    footer: RunFooter


def render_ids(tokenizer: Any, prompt: Prompt, template_kwargs: dict[str, Any], keep_billing: bool = False) -> list[int]:
    """The prompt's token ids through the tokenizer's chat template (see the module docstring)."""
    msgs, tools = template_messages(prompt, keep_billing)
    text = tokenizer.apply_chat_template(msgs, tools=tools or None, tokenize=False, add_generation_prompt=True, **template_kwargs)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class Runner:
    def __init__(self, workload: Workload, cfg: RunConfig, client: httpx.AsyncClient | None = None):
        self.w, self.cfg = workload, cfg
        self._client = client
        self.sent: list[_Sent] = []
        self.t0 = 0.0

    # -- HTTP ---------------------------------------------------------------------------------

    def _headers(self, session: Session) -> dict[str, str]:
        cfg = self.cfg
        h = {"content-type": "application/json", **cfg.headers}
        if cfg.api == "messages":
            h["anthropic-version"] = "2023-06-01"
            if cfg.api_key:
                h["x-api-key"] = cfg.api_key
        elif cfg.api_key:
            h["authorization"] = f"Bearer {cfg.api_key}"
        name = SESSION_HEADERS[cfg.api] if cfg.session_header is None else cfg.session_header
        if name and session.session_id:
            h[name] = session.session_id
        return h

    async def _model(self, client: httpx.AsyncClient) -> str:
        if self.cfg.model:
            return self.cfg.model
        try:
            resp = await client.get(f"{self.cfg.url}/v1/models", headers=self._headers(Session(id="", session_id="", steps=())))
            return resp.json()["data"][0]["id"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"cannot list models at {self.cfg.url}/v1/models ({exc}); pass --model") from None

    async def _scrape(self, client: httpx.AsyncClient) -> tuple[dict[str, float], str]:
        if not self.cfg.metrics_url:
            return {}, ""
        try:
            resp = await client.get(self.cfg.metrics_url, timeout=30)
            resp.raise_for_status()
            return prom.select(resp.text, self.cfg.metrics), ""
        except (httpx.HTTPError, ValueError) as exc:
            return {}, f"{type(exc).__name__}: {exc}"

    async def _send(self, client: httpx.AsyncClient, session: Session, turn: int, step: Step, prompt: Prompt) -> Message | None:
        cfg = self.cfg
        body = BODIES[cfg.api](prompt, self.model)
        if cfg.return_token_ids and cfg.api == "chat":
            body["return_token_ids"] = True
        body.update(cfg.extra_body)
        content = msgspec.json.encode(body)
        fold = FOLDS[cfg.api]()
        status, error = 0, ""
        first = last = None
        itl: list[float] = []
        start = time.perf_counter()
        try:
            async with client.stream("POST", cfg.url + PATHS[cfg.api], content=content, headers=self._headers(session)) as resp:
                status = resp.status_code
                if status != 200:
                    text = (await resp.aread()).decode("utf-8", "replace")
                    error = f"HTTP {status}: {text[:300]}"
                else:
                    sse = SSEDecoder()
                    async for line in resp.aiter_lines():
                        event = sse.feed(line)
                        if event is None:
                            continue
                        now = time.perf_counter()
                        if fold.feed(*event):
                            if first is None:
                                first = now
                            else:
                                itl.append(now - last)
                            last = now
                        if fold.done:
                            break
                    tail = sse.flush()
                    if tail and not fold.done:
                        fold.feed(*tail)
                    if fold.error:
                        error = fold.error
                    elif not fold.done:
                        error = "stream ended without its end event"
        except (TimeoutError, httpx.HTTPError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        end = time.perf_counter()
        record = RequestRecord(
            session=session.id,
            parent=session.parent,
            turn=turn,
            step_kind=step.kind,
            t_send_s=round(start - self.t0, 6),
            e2e_s=round(end - start, 6),
            ttft_s=None if first is None else round(first - start, 6),
            itl_s=[round(x, 6) for x in itl],
            status=status,
            error=error,
            output_tokens=fold.output_tokens if fold.output_tokens is not None else fold.output_events,
            prompt_tokens=fold.prompt_tokens,
            cached_tokens=fold.cached_tokens,
        )
        t_ready = None if first is None else first - self.t0
        self.sent.append(_Sent(record, prompt, fold.prompt_token_ids, start - self.t0, t_ready))
        return None if error else fold.reply()

    # -- sessions -----------------------------------------------------------------------------

    async def _session(self, client: httpx.AsyncClient, s: Session) -> str:
        """Run ``s`` turn by turn; return its last reply's text (a subagent's result)."""
        history: list[Message] = []
        for turn, step in enumerate(s.steps):
            if self._out_of_budget():
                break
            texts: list[str] = []
            if step.subagents:
                texts = list(await asyncio.gather(*(self._session(client, sub) for sub in step.subagents)))
            msgs = messages_for(history, step, texts)
            prompt = Prompt(
                system=self.w.system_text(s),
                messages=tuple(msgs),
                max_tokens=step.max_tokens,
                tools=self.w.tools_of(s),
                billing=step.billing,
                thinking=self.w.header.thinking,
                session_id=s.session_id,
            )
            live = await self._send(client, s, turn, step, prompt)
            history = msgs + [reply_for_history(step, live, self.cfg.replies)]
        return history[-1].content if history else ""

    async def _top(self, client: httpx.AsyncClient, s: Session, slots: asyncio.Semaphore | None) -> None:
        delay = s.arrival_s * self.cfg.time_scale - (time.perf_counter() - self.t0)
        if delay > 0:
            await asyncio.sleep(delay)
        if slots is None:
            await self._session(client, s)
            return
        async with slots:
            await self._session(client, s)

    def _out_of_budget(self) -> bool:
        return self.cfg.budget_s is not None and time.perf_counter() - self.t0 >= self.cfg.budget_s

    def _say(self, text: str) -> None:
        if self.cfg.progress:
            self.cfg.progress(text)

    async def run(self) -> RunResult:
        cfg = self.cfg
        own = self._client is None
        client = self._client or httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.timeout_s, connect=30.0), limits=httpx.Limits(max_connections=None, max_keepalive_connections=256)
        )
        try:
            self.model = await self._model(client)
            before, err_before = await self._scrape(client)
            cap = self.w.header.concurrency if cfg.concurrency is None else cfg.concurrency
            slots = asyncio.Semaphore(cap) if cap > 0 else None
            started_at = time.time()
            self.t0 = time.perf_counter()
            total = len(self.w.sessions)
            tasks = [asyncio.create_task(self._top(client, s, slots)) for s in self.w.sessions]
            done = 0
            try:
                for fut in asyncio.as_completed(tasks):
                    await fut
                    done += 1
                    errors = sum(1 for x in self.sent if x.record.error)
                    self._say(f"sessions {done}/{total} done, {len(self.sent)} requests, {errors} errors")
            except BaseException:
                for t in tasks:
                    t.cancel()
                raise
            wall = time.perf_counter() - self.t0
            after, err_after = await self._scrape(client)
        finally:
            if own:
                await client.aclose()
        source = self._ideal_source()
        self._fill_ideal(source)
        records = sorted((x.record for x in self.sent), key=lambda r: r.t_send_s)
        header = RunHeader(
            label=cfg.label or cfg.url,
            url=cfg.url,
            api=cfg.api,
            model=self.model,
            workload=cfg.workload_path,
            source=self.w.header.source,
            concurrency=cap,
            replies=cfg.replies,
            started_at=started_at,
            command=cfg.command,
            ideal_source=source,
            block_size=cfg.block_size,
        )
        footer = RunFooter(
            wall_s=round(wall, 6),
            sessions=total,
            requests=len(records),
            errors=sum(1 for r in records if r.error),
            unsent=sum(len(s.steps) for s in iter_sessions(self.w.sessions)) - len(records),
            budget_s=cfg.budget_s,
            metrics_before=before,
            metrics_after=after,
            metrics_error=err_before or err_after,
        )
        return RunResult(header, records, footer)

    # -- ideal reuse --------------------------------------------------------------------------

    def _ideal_source(self) -> str:
        cfg = self.cfg
        if cfg.ideal != "auto":
            return cfg.ideal
        if cfg.tokenizer is not None:
            return "tokenizer"
        ok = [x for x in self.sent if not x.record.error]
        if ok and all(x.server_ids is not None for x in ok):
            return "server"
        return "none"

    def _fill_ideal(self, source: str) -> None:
        if source == "none" or not self.sent:
            return
        cfg = self.cfg
        kwargs = dict(cfg.template_kwargs)
        if self.w.header.thinking:
            kwargs.setdefault("enable_thinking", True)
        ids: list[list[int] | None] = []
        for i, x in enumerate(self.sent):
            if source == "tokenizer":
                ids.append(render_ids(cfg.tokenizer, x.prompt, kwargs, cfg.ideal_keep_billing))
                if (i + 1) % 100 == 0:
                    self._say(f"ideal reuse: tokenized {i + 1}/{len(self.sent)} prompts")
            else:
                ids.append(x.server_ids)
        timings = [PromptTiming(t_send=x.t_send, t_ready=x.t_ready, ids=p) for x, p in zip(self.sent, ids)]
        for x, p, ideal in zip(self.sent, ids, ideal_cached(timings, cfg.block_size)):
            x.record.ideal_cached_tokens = ideal
            x.record.ideal_prompt_tokens = None if p is None else len(p)


async def run(workload: Workload, cfg: RunConfig, client: httpx.AsyncClient | None = None) -> RunResult:
    return await Runner(workload, cfg, client).run()
