"""One request's trip through the engines, as a stream of parser events ending in ``Finished``.

render (chat template) -> tokenize -> engine(s) -> detokenize (special tokens kept) -> stop
strings -> the family's stream parser (the one owner of reasoning/tool parsing). Every HTTP API
encodes this same event stream in its own grammar.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec

from kvyard import metrics
from kvyard.api.common import process_signer
from kvyard.conversation import Conversation
from kvyard.errors import EngineFailure, InvalidRequest
from kvyard.frontend.detokenize import Detokenizer
from kvyard.frontend.history import HistoryStore, InMemoryHistory, TurnRecorder, knows, remember
from kvyard.frontend.render import RenderedPrompt, render
from kvyard.frontend.stability import StabilityTracker
from kvyard.frontend.stops import StopMatcher
from kvyard.kvtransfer.coordinator import EnginePool, Handoff, disaggregated_stream
from kvyard.parsing.registry import get_parser
from kvyard.policies.profiles import ModelProfile
from kvyard.policies.replay import apply_replay, replay_override
from kvyard.policies.sanitizer import CompiledRule, compile_rules, sanitize
from kvyard.protocol import EngineChunk, EngineRequest, Sampling
from kvyard.router.kv_router import KvRouter, Route
from kvyard.tracing import RequestTrace, now_ns


class GenerationOptions(msgspec.Struct):
    max_tokens: int | None
    """Output limit; None means the rest of the model's context."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] = msgspec.field(default_factory=list)
    regex: str | None = None
    json_schema: dict[str, Any] | None = None
    template_kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    cache_salt: str | None = None
    session: str | None = None
    """Session id (from headers or prompt_cache_key) for routing affinity."""


def output_limit(requested: int | None, prompt_tokens: int, max_model_len: int) -> int:
    """Tokens the engine may generate: the request's limit clipped to the context left after the
    prompt, or all of that context when the request names no limit."""
    room = max_model_len - prompt_tokens
    if room < 1:
        raise InvalidRequest(f"the prompt is {prompt_tokens} tokens, and this model's context is {max_model_len}: shorten the conversation")
    return room if requested is None else min(requested, room)


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


class Started(msgspec.Struct, tag="started"):
    """The engine produced its first token: what the prompt cost and what came from cache."""

    prompt_tokens: int
    cached_tokens: int
    route: str | None = None
    """The routing decision, for the ``x-kvyard-route`` header (None when not KV-routed)."""


class Finished(msgspec.Struct, tag="finished"):
    finish_reason: str
    usage: Usage
    stop_sequence: str | None = None
    prompt_token_ids: list[int] = msgspec.field(default_factory=list)
    output_token_ids: list[int] = msgspec.field(default_factory=list)


class Generator:
    """Shared by every request of a frontend replica: tokenizer, profile and the engine pools."""

    def __init__(
        self,
        tokenizer,
        profile: ModelProfile,
        *,
        max_model_len: int,
        decode: EnginePool,
        prefill: EnginePool | None = None,
        prefill_timeout_s: float = 60.0,
        on_handoff: Callable[[Handoff], None] | None = None,
        sanitizer_rules: Sequence[CompiledRule] | None = None,
        history: HistoryStore | None = None,
        signer: Callable[[str], str] | None = None,
        router: KvRouter | None = None,
        stability: StabilityTracker | None = None,
    ):
        self.tokenizer = tokenizer
        self.profile = profile
        self.max_model_len = max_model_len
        self.decode = decode
        self.prefill = prefill
        self.prefill_timeout_s = prefill_timeout_s
        self.on_handoff = on_handoff or _count_handoff
        self.parser_cls = get_parser(profile.parser)
        self.stop_token_ids = _stop_token_ids(tokenizer)
        self.sanitizer_rules = compile_rules() if sanitizer_rules is None else sanitizer_rules
        self.history = InMemoryHistory() if history is None else history
        self.signer = process_signer if signer is None else signer
        self.router = router
        self.stability = stability

    def render(self, conv: Conversation, options: GenerationOptions) -> RenderedPrompt:
        """Sanitize (counting each rule that fired), apply the replay policy, render token-exact."""
        return self._prepare(conv, options)[0]

    def _prepare(
        self, conv: Conversation, options: GenerationOptions, trace: RequestTrace | None = None
    ) -> tuple[RenderedPrompt, Conversation, dict[str, int]]:
        t0 = now_ns()
        conv, fired = sanitize(conv, self.sanitizer_rules)
        for rule, count in fired.items():
            metrics.sanitizer_fired_total.labels(rule).inc(count)
        t1 = now_ns()
        policy = replay_override(options.template_kwargs, None) or self.profile.replay
        conv = apply_replay(conv, policy, signer=self.signer, known=lambda m: knows(self.history, m))
        t2 = now_ns()
        rendered = render(self.tokenizer, conv, options.template_kwargs, self.history)
        if trace is not None:
            t3 = now_ns()
            trace.step("kvyard.sanitize", t0, t1, **{"kvyard.sanitizer.fired": sum(fired.values())})
            trace.step("kvyard.replay", t1, t2, **{"kvyard.replay.policy": policy})
            span = trace.step(
                "kvyard.render", t2, t3, **{"kvyard.prompt_tokens": len(rendered.ids), "kvyard.render.spliced_turns": rendered.spliced}
            )
            trace.busy("kvyard.tokenize", rendered.tokenize_s, t3, parent=span)
        return rendered, conv, fired

    def prompt_ids(self, conv: Conversation, options: GenerationOptions) -> list[int]:
        return self.render(conv, options).ids

    def engine_request(self, prompt_ids: list[int], options: GenerationOptions) -> EngineRequest:
        sampling = Sampling(
            max_tokens=output_limit(options.max_tokens, len(prompt_ids), self.max_model_len),
            temperature=options.temperature,
            top_p=options.top_p,
            top_k=options.top_k,
            seed=options.seed,
            stop_token_ids=self.stop_token_ids,
            regex=options.regex,
            json_schema=options.json_schema,
        )
        return EngineRequest(
            request_id=uuid.uuid4().hex, prompt_token_ids=prompt_ids, sampling=sampling, cache_salt=options.cache_salt
        )

    def engine_stream(self, request: EngineRequest, handoffs: list[Handoff]) -> AsyncIterator[EngineChunk]:
        """The engine's token stream; in P/D mode the prefill leg's outcome is appended to ``handoffs``."""
        if self.prefill is None:
            return self.decode.generate(request)

        def record(handoff: Handoff) -> None:
            chunk = handoff.prefill_chunk
            if chunk is not None:
                metrics.prompt_tokens_total.labels("prefill").inc(chunk.num_prompt_tokens)
                metrics.prefix_cache_hit_tokens_total.labels("prefill").inc(chunk.num_cached_tokens)
            handoffs.append(handoff)
            self.on_handoff(handoff)

        return disaggregated_stream(request, self.prefill, self.decode, timeout_s=self.prefill_timeout_s, on_handoff=record)

    async def stream(
        self,
        conv: Conversation,
        options: GenerationOptions,
        *,
        api: str,
        tool_names: set[str] | None = None,
        trace: RequestTrace | None = None,
    ) -> AsyncIterator[Any]:
        """Yield ``Started``, parser events, then one ``Finished``.

        Errors in the request raise ``KvyardError`` before ``Started``; the caller primes the
        stream with its first item so that those become plain HTTP errors. Steps are recorded as
        spans of ``trace`` (the caller ends it), or of a trace of its own when none is given.
        """
        own_trace = trace is None
        trace = RequestTrace("kvyard.generate", **{"kvyard.api": api}) if trace is None else trace
        try:
            async for item in self._stream(conv, options, api, tool_names, trace):
                yield item
        finally:
            if own_trace:
                trace.end()

    async def _stream(
        self, conv: Conversation, options: GenerationOptions, api: str, tool_names: set[str] | None, trace: RequestTrace
    ) -> AsyncIterator[Any]:
        started = time.monotonic()
        rendered, sanitized, fired = self._prepare(conv, options, trace)
        prompt_ids = rendered.ids
        if self.stability is not None and options.session:
            self.stability.observe(options.session, prompt_ids, sanitized, rendered.text, self.tokenizer.decode, fired)
        request = self.engine_request(prompt_ids, options)
        t_route = now_ns()
        route = await self.router.route(prompt_ids, options.cache_salt, options.session) if self.router else None
        try:
            if route is not None:
                prefill_to = route.prefill.worker if route.prefill else None
                request = msgspec.structs.replace(request, route_to=route.decode.worker, prefill_to=prefill_to)
                chosen = route_attributes(route)
                trace.step("kvyard.route", t_route, **chosen)
                trace.set(**chosen)
            trace.set(**{"kvyard.request_id": request.request_id, "kvyard.session": options.session, "kvyard.prompt_tokens": len(prompt_ids)})
            parser = TurnRecorder(  # records the assistant message for the token-exact history
                self.parser_cls(
                    tool_names=tool_names,
                    tool_schemas={t.name: t.parameters for t in conv.tools} or None,
                    reasoning_started=self.profile.reasoning_opened_by_template,
                    reasoning_enabled=self.profile.reasoning,
                    drop_framing_whitespace=True,
                )
            )
            detok = Detokenizer(self.tokenizer)
            stops = StopMatcher(options.stop)
            usage = Usage(prompt_tokens=len(prompt_ids))
            output_ids: list[int] = []
            finish_reason = "stop"
            first = True
            handoffs: list[Handoff] = []
            parse_s, t_engine = 0.0, now_ns()
            engine = self.engine_stream(request, handoffs)
        except BaseException:
            if self.router is not None:
                self.router.end(route)  # counted as load by route()
            raise
        try:
            async for chunk in engine:
                if first:
                    ttft = time.monotonic() - started
                    metrics.ttft_seconds.labels(api).observe(ttft)
                    metrics.prompt_tokens_total.labels("decode").inc(chunk.num_prompt_tokens)
                    metrics.prefix_cache_hit_tokens_total.labels("decode").inc(chunk.num_cached_tokens)
                    usage.cached_tokens = _cached_tokens(chunk, handoffs)
                    first = False
                    t_first = now_ns()
                    trace.set(**{"kvyard.cached_tokens": usage.cached_tokens, "kvyard.ttft_s": ttft})
                    yield Started(usage.prompt_tokens, usage.cached_tokens, route.header() if route else None)
                ids = chunk.token_ids
                if chunk.finish_reason == "stop" and ids and ids[-1] in self.stop_token_ids:
                    ids = ids[:-1]
                usage.completion_tokens += len(chunk.token_ids)
                output_ids += chunk.token_ids
                t_parse = time.perf_counter()
                text, hit = stops.feed(detok.feed(ids))
                events = parser.feed(text)
                parse_s += time.perf_counter() - t_parse
                for event in events:
                    yield event
                if hit:
                    finish_reason = "stop"
                    break
                if chunk.finish_reason is not None:
                    if chunk.finish_reason in ("error", "abort"):
                        raise EngineFailure(f"the engine ended the request with {chunk.finish_reason!r}")
                    finish_reason = chunk.finish_reason
                    text = stops.flush()
                    for event in parser.feed(text):
                        yield event
        finally:
            if self.router is not None:
                self.router.end(route)
            await _close(engine)
            _engine_spans(trace, handoffs, t_engine, None if first else t_first, parse_s, usage.completion_tokens)
        for event in parser.finish():
            yield event
        trace.set(**{"kvyard.completion_tokens": usage.completion_tokens, "kvyard.finish_reason": finish_reason})
        if parser.malformed:
            metrics.parser_malformed_total.inc(parser.malformed)
        metrics.generated_tokens_total.inc(usage.completion_tokens)
        if finish_reason == "stop" and stops.matched is None and output_ids and output_ids[-1] in self.stop_token_ids:
            remember(self.history, parser.parts(), rendered.turn_tail + output_ids[:-1])  # token-exact history
        yield Finished(
            finish_reason=finish_reason,
            usage=usage,
            stop_sequence=stops.matched,
            prompt_token_ids=prompt_ids,
            output_token_ids=output_ids,
        )



def route_attributes(route: Route) -> dict[str, Any]:
    attrs = {"kvyard.route.decode": route.decode.worker, "kvyard.route.decode_overlap_blocks": route.decode.overlap_blocks}
    if route.prefill is not None:
        attrs |= {"kvyard.route.prefill": route.prefill.worker, "kvyard.route.prefill_overlap_blocks": route.prefill.overlap_blocks}
    return attrs


def _engine_spans(trace: RequestTrace, handoffs: list[Handoff], t_engine: int, t_first: int | None, parse_s: float, tokens: int) -> None:
    """prefill → kv_transfer → decode (and parse, by its busy time) from the recorded times."""
    end = now_ns()
    decode_from = t_engine
    for h in handoffs:
        trace.step("kvyard.prefill", h.started_ns, h.ended_ns, **{"kvyard.kv_transfer.outcome": h.outcome})
        decode_from = h.ended_ns
        if h.outcome == "ok" and t_first is not None:
            trace.step("kvyard.kv_transfer", h.ended_ns, t_first)
    trace.step("kvyard.decode", decode_from, end, **{"kvyard.completion_tokens": tokens})
    trace.busy("kvyard.parse", parse_s, end)
    if handoffs:
        trace.set(**{"kvyard.kv_transfer.outcome": handoffs[-1].outcome})


def _cached_tokens(decode_chunk: EngineChunk, handoffs: list[Handoff]) -> int:
    """Prompt tokens taken from cache: prefill's prefix-cache hits when the KV came over NIXL."""
    for handoff in handoffs:
        if handoff.outcome == "ok" and handoff.prefill_chunk is not None:
            return handoff.prefill_chunk.num_cached_tokens
    return decode_chunk.num_cached_tokens


def _count_handoff(handoff: Handoff) -> None:
    metrics.kv_transfer_total.labels(handoff.outcome).inc()
    if handoff.outcome == "ok":
        metrics.kv_transfer_seconds.observe(handoff.prefill_seconds)


def _stop_token_ids(tokenizer) -> tuple[int, ...]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id is not None:
            ids.add(token_id)
    return tuple(sorted(ids))


async def _close(stream: Any) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
    cancel = getattr(stream, "cancel", None)
    if cancel is not None:
        cancel()
