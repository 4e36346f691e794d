"""The ingress deployment: three HTTP APIs over one shared text pipeline (``kvyard.frontend``).

A thin shell. Every generation endpoint takes the same path: decode the API's request into a
Conversation, enforce a forced ``tool_choice`` with structured output, run ``Generator.stream``,
and hand the items to the API's ``ApiExchange`` (SSE frames or one JSON body, errors in the API's
own shape). ``serve.ingress(app)`` is applied by the builder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from kvyard import metrics
from kvyard.api import anthropic, openai_chat, openapi, responses
from kvyard.api.common import Extensions, anthropic_error, decode_body, hmac_signer, openai_error, process_signer
from kvyard.api.disconnect import DisconnectAsMessage
from kvyard.api.streams import ApiExchange, ChatExchange, MessagesExchange, ResponsesExchange
from kvyard.config import AppConfig
from kvyard.deployments.handles import ServePool
from kvyard.errors import (
    InvalidRequest,
    KvyardError,
    MethodNotAllowed,
    ModelNotFound,
    RequestTooLarge,
    RouteNotFound,
    as_kvyard_error,
)
from kvyard.frontend.forcing import forced_call_regex
from kvyard.frontend.generation import GenerationOptions, Generator
from kvyard.frontend.stability import StabilityTracker
from kvyard.frontend.tenancy import Caller, ConcurrencyLimiter, KeyRing, combine_salts
from kvyard.policies.profiles import detect_profile, get_profile
from kvyard.policies.replay import REPLAY_KWARG, replay_override
from kvyard.policies.sanitizer import compile_rules
from kvyard.router.kv_router import KvRouter
from kvyard.router.serve_router import RouteTo, live_replicas
from kvyard.router.session import session_id
from kvyard.router.sessions import LocalSessions, RedisSessions
from kvyard.tracing import RequestTrace, configure_from_env, now_ns

log = logging.getLogger("kvyard.frontend")

app = FastAPI(title="kvyard", description="OpenAI and Anthropic APIs over disaggregated vLLM engines")
app.openapi = openapi.document  # /openapi.json with the request bodies (the handlers read raw requests)
app.add_middleware(DisconnectAsMessage)  # a client that left ends its stream quietly (see kvyard.api.disconnect)

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@app.exception_handler(HTTPException)
async def routing_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's routing errors (no such path, wrong method) in the shape of the API asked."""
    path = request.url.path.removeprefix(request.scope.get("root_path", "").rstrip("/"))
    if exc.status_code == 405:
        err: KvyardError = MethodNotAllowed(f"{request.method} is not allowed on {path}")
    elif exc.status_code == 404:
        err = RouteNotFound(f"there is no endpoint {path}")
    else:  # no kvyard route raises another; kept in the API's shape all the same
        err = InvalidRequest(str(exc.detail))
        err.status = exc.status_code
    shape = anthropic_error if path.startswith("/v1/messages") else openai_error
    return JSONResponse(shape(err), err.status, headers=exc.headers)


def _app_name() -> str:
    try:
        from ray import serve

        return serve.get_replica_context().app_name
    except Exception:  # outside a Serve replica (in-process tests)
        return ""


async def ask_engines(pools: list[tuple[str, Any]], targets: Callable[[Any], list[str]], timeout_s: float = 5.0) -> list[tuple[str, dict]]:
    """``(pool, stats)`` of every engine replica ``targets(handle)`` names, asked by replica id
    through kvyard's request routers (one unhinted call for a pool with none known yet), all at
    once. A replica that fails or does not answer within ``timeout_s`` (restarting, or a pool whose
    replicas are all starting) is left out: a scrape never waits on a pool coming back."""
    calls = [(pool, call) for pool, handle in pools for call in ([handle.stats.remote(RouteTo(t)) for t in targets(handle)] or [handle.stats.remote()])]
    answers = await asyncio.gather(*(asyncio.wait_for(call, timeout_s) for _, call in calls), return_exceptions=True)
    stats = []
    for (pool, call), answer in zip(calls, answers):
        if isinstance(answer, BaseException):
            log.warning("stats from %s failed: %r", pool, answer)
            if hasattr(call, "cancel"):
                call.cancel()
        else:
            stats.append((pool, answer))
    return stats


def _own_deployment() -> tuple[str, Any] | tuple[()]:
    """``("app/deployment", handle)`` of this replica's deployment; ``()`` outside Serve."""
    try:
        from ray import serve

        ctx = serve.get_replica_context()
    except Exception:
        return ()
    return f"{ctx.app_name}/{ctx.deployment}", serve.get_deployment_handle(ctx.deployment, ctx.app_name)


def _replica_id() -> str:
    from ray import serve

    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # constructed outside Serve (scripts)
        return "local"


class Frontend:
    def __init__(self, config: dict[str, Any], decode: Any, prefill: Any = None):
        from transformers import AutoTokenizer

        self.config = AppConfig.model_validate(config)
        cfg = self.config
        configure_from_env()
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
        self.profile = (
            detect_profile(self.tokenizer.get_vocab(), self.tokenizer.chat_template)
            if cfg.model.profile == "auto"
            else get_profile(cfg.model.profile)
        )
        key = cfg.frontend.signing_key
        self.signer = hmac_signer(key.encode()) if key else process_signer
        self.decode_handle, self.prefill_handle = decode, prefill
        self.keys = KeyRing(cfg.frontend)
        self.limiter = ConcurrencyLimiter()
        self.app_name = _app_name()
        self.router = self._make_router(cfg, decode, prefill, self.app_name)
        self.replica_id = _replica_id()
        self._peers: tuple[str, Any] | tuple[()] | None = None  # _own_deployment(), at the first scrape
        self.generator = Generator(
            self.tokenizer,
            self.profile,
            max_model_len=cfg.model.max_model_len,
            decode=ServePool(decode),
            prefill=ServePool(prefill) if prefill is not None else None,
            prefill_timeout_s=cfg.frontend.prefill_timeout_s,
            sanitizer_rules=compile_rules(cfg.sanitizer),
            router=self.router,
            signer=self.signer,
            stability=StabilityTracker(cfg.model.block_size),
        )
        log.info("frontend ready: model=%s profile=%s mode=%s", cfg.model.served_name, self.profile.name, cfg.mode)

    @staticmethod
    def _make_router(cfg: AppConfig, decode: Any, prefill: Any, app_name: str) -> KvRouter | None:
        if cfg.router.policy != "kv_aware":
            return None
        pools = {"decode": (decode.deployment_name, decode)}
        if prefill is not None:
            pools["prefill"] = (prefill.deployment_name, prefill)
        sessions = RedisSessions(cfg.redis_url) if cfg.redis_url else LocalSessions()
        return KvRouter(
            app=app_name,
            model=cfg.model.served_name,
            block_size=cfg.model.block_size,
            pools=pools,
            sessions=sessions,
            weights=cfg.router.weights,
        )

    async def check_health(self) -> None:
        """Ray Serve's periodic probe (on the replica's event loop): also starts following the
        engines' KV events, so a new replica rebuilds its view before its first request."""
        if self.router is not None:
            self.router.start()

    # --- edge checks -------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Caller:
        return self.keys.authenticate(request.headers)

    async def _body(self, request: Request) -> bytes:
        limit = self.config.frontend.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"the body is {declared} bytes; the limit is {limit}")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise RequestTooLarge(f"the body is over the {limit}-byte limit")
        return bytes(body)

    def _model(self, name: str | None) -> str:
        if self.config.resolve_model_name(name) is None:
            raise ModelNotFound(f"model {name!r} is not served here; GET /v1/models lists what is")
        return name or self.config.model.served_name

    def _force_tool(self, conv, options: GenerationOptions, choice: tuple[str, str | None]) -> None:
        mode, name = choice
        if mode == "none":
            conv.tools = []
        elif mode == "required":
            options.regex = forced_call_regex(self.profile, conv.tools, name)

    def _apply_extensions(self, body: bytes, options: GenerationOptions, headers, caller: Caller) -> None:
        ext = decode_body(body, Extensions)
        options.cache_salt = combine_salts(caller.cache_salt, ext.cache_salt)
        if ext.structured_outputs is not None:
            so = ext.structured_outputs
            options.regex = so.regex if so.regex is not None else options.regex
            options.json_schema = so.json if so.json is not None else options.json_schema
        policy = replay_override(options.template_kwargs, ext.metadata, headers)
        if policy is not None:
            options.template_kwargs = {**options.template_kwargs, REPLAY_KWARG: policy}

    # --- plain endpoints ---------------------------------------------------------------------

    @app.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except KvyardError as exc:
            return JSONResponse(openai_error(exc), exc.status)
        return JSONResponse({"object": "list", "data": [self._model_card(self.config.model.served_name)]})

    @app.get("/v1/models/{model_id:path}")
    async def model(self, model_id: str, request: Request) -> Response:
        try:
            self._authorize(request)
            self._model(model_id)
        except KvyardError as exc:
            return JSONResponse(openai_error(exc), exc.status)
        return JSONResponse(self._model_card(model_id))

    def _model_card(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "kvyard", "max_model_len": self.config.model.max_model_len}

    @app.get("/metrics")
    async def metrics_text(self) -> PlainTextResponse:
        text = (await self._frontend_metrics()).decode() + await self._engine_metrics()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4", headers={"x-kvyard-frontend": self.replica_id})

    async def metric_families(self, route: RouteTo | None = None) -> tuple[str, list[metrics.Family]]:
        """This replica's id and metric families (a peer's scrape asks by replica id)."""
        return self.replica_id, metrics.families()

    async def _frontend_metrics(self, timeout_s: float = 5.0) -> bytes:
        """Every live frontend replica's series, labelled by replica (``metrics.render_cluster``):
        asked by id through the frontend deployment's own router; a replica that does not answer
        in ``timeout_s`` is left out of this scrape."""
        by_replica = {self.replica_id: metrics.families()}
        if self._peers is None:
            self._peers = _own_deployment()
        if self._peers:
            key, handle = self._peers

            async def ask(replica: str) -> tuple[str, list[metrics.Family]]:
                return await asyncio.wait_for(handle.metric_families.remote(RouteTo(replica)), timeout_s)

            if not live_replicas().ids(key):  # this process's router for its own deployment starts with a first call
                await asyncio.gather(ask(self.replica_id), return_exceptions=True)
            others = sorted(live_replicas().ids(key) - by_replica.keys())
            for replica, answer in zip(others, await asyncio.gather(*map(ask, others), return_exceptions=True)):
                if isinstance(answer, BaseException):
                    log.warning("metrics from frontend %s failed: %s", replica, answer)
                else:  # keyed by the id it reports: a hint can fall through to another replica
                    by_replica.setdefault(answer[0], answer[1])
        return metrics.render_cluster(by_replica)

    async def _engine_metrics(self) -> str:
        """Every live engine replica's counters, as Prometheus text."""
        pools = [("decode", self.decode_handle)] + ([("prefill", self.prefill_handle)] if self.prefill_handle else [])
        return metrics.render_engines(await ask_engines(pools, lambda h: sorted(live_replicas().ids(f"{self.app_name}/{h.deployment_name}"))))

    @app.post("/v1/messages/count_tokens")
    async def count_tokens(self, request: Request) -> Response:
        try:
            caller = self._authorize(request)
            body = await self._body(request)
            req, conv, options = anthropic.decode_count_tokens(body)
            self._apply_extensions(body, options, request.headers, caller)
            self._model(req.model)
            count = len(self.generator.prompt_ids(conv, options))
        except Exception as exc:
            err = as_kvyard_error(exc)
            return JSONResponse(anthropic_error(err), err.status)
        return JSONResponse(anthropic.count_tokens_response(count))

    @app.get("/v1/kvyard/sessions/{session:path}/stability")
    async def stability(self, session: str, request: Request) -> Response:
        """Where this session's consecutive prompts stopped sharing a prefix (this replica's view)."""
        try:
            self._authorize(request)
        except KvyardError as exc:
            return JSONResponse(openai_error(exc), exc.status)
        reports = self.generator.stability.reports(session)
        return JSONResponse({"session": session, "frontend": self.replica_id, "requests": msgspec.to_builtins(reports)})

    @app.post("/v1/kvyard/route")
    async def explain_route(self, request: Request) -> Response:
        """Score a chat-completions body against every live worker without running it."""
        try:
            caller = self._authorize(request)
            body = await self._body(request)
            _req, conv, options = openai_chat.decode_request(body, self.config.frontend.default_max_tokens)
            self._apply_extensions(body, options, request.headers, caller)
            if self.router is None:
                raise InvalidRequest("router.policy is not kv_aware: there is no KV-aware decision to explain")
            self.router.start()  # a fresh replica may not have routed anything yet
            prompt_ids = self.generator.prompt_ids(conv, options)
            route = self.router.score(prompt_ids, options.cache_salt)
        except Exception as exc:
            err = as_kvyard_error(exc)
            return JSONResponse(openai_error(err), err.status)
        body = {"prompt_tokens": len(prompt_ids), "route": msgspec.to_builtins(route)}
        return JSONResponse(body, headers={"x-kvyard-frontend": self.replica_id})

    # --- generation endpoints ----------------------------------------------------------------

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        def decode(body: bytes):
            req, conv, options = openai_chat.decode_request(body, self.config.frontend.default_max_tokens)
            options.session = session_id(request.headers, None)
            dispatch = self.config.frontend.tool_call_dispatch or request.headers.get("x-kvyard-tool-dispatch", "").lower() in ("1", "true")
            return ChatExchange(req, self._model(req.model), dispatch), conv, options, openai_chat.tool_choice(req)

        return await self._generate(request, "chat", decode, openai_error)

    @app.post("/v1/messages")
    async def messages(self, request: Request) -> Response:
        def decode(body: bytes):
            req, conv, options = anthropic.decode_request(body)
            options.session = session_id(request.headers, None)
            return MessagesExchange(req, self._model(req.model), self.signer), conv, options, anthropic.tool_choice(req)

        return await self._generate(request, "messages", decode, anthropic_error)

    @app.post("/v1/responses")
    async def responses(self, request: Request) -> Response:
        def count(text: str) -> int:
            return len(self.tokenizer.encode(text, add_special_tokens=False))

        def decode(body: bytes):
            req, conv, options = responses.decode_request(body, self.config.frontend.default_max_tokens)
            options.session = session_id(request.headers, req.prompt_cache_key)
            exchange = ResponsesExchange(req, self._model(req.model), self.signer, count)
            return exchange, conv, options, responses.tool_choice(req)

        return await self._generate(request, "responses", decode, openai_error)

    async def _generate(self, request: Request, api: str, decode: Callable, error_shape: Callable) -> Response:
        metrics.in_flight.inc()
        trace = RequestTrace(headers=request.headers, **{"kvyard.api": api, "kvyard.frontend": self.replica_id})
        try:
            caller = self._authorize(request)
            self.limiter.acquire(caller)
        except Exception as exc:
            return self._refuse(api, exc, error_shape, trace)
        try:
            t_decode = now_ns()
            body = await self._body(request)
            exchange, conv, options, choice = decode(body)
            self._force_tool(conv, options, choice)
            self._apply_extensions(body, options, request.headers, caller)
            trace.step("kvyard.decode_api", t_decode, **{"kvyard.request_bytes": len(body), "kvyard.messages": len(conv.messages)})
            trace.set(**{"kvyard.tenant": caller.tenant, "gen_ai.request.model": exchange.model})
            tools = {t.name for t in conv.tools} or None
            items = self.generator.stream(conv, options, api=api, tool_names=tools, trace=trace)
            started = await anext(items)  # request errors surface here, as plain HTTP errors
        except Exception as exc:
            self.limiter.release(caller)
            return self._refuse(api, exc, error_shape, trace)
        headers = {"x-kvyard-frontend": self.replica_id}
        if started.route:
            headers["x-kvyard-route"] = started.route
        if exchange.stream:
            return StreamingResponse(
                self._sse(exchange, started, items, caller, trace),
                media_type="text/event-stream",
                headers={**SSE_HEADERS, **headers},
            )
        status = 200
        try:
            async for item in items:
                exchange.frames(item)
        except Exception as exc:
            err = as_kvyard_error(exc)
            status = err.status
            trace.fail(exc, err.status)
            log.warning("%s request failed: %s", api, exc)
            return JSONResponse(error_shape(err), err.status)
        finally:
            metrics.in_flight.dec()
            metrics.requests_total.labels(api, str(status)).inc()
            self.limiter.release(caller)
            trace.end()
        return JSONResponse(exchange.response(), headers=headers)

    @staticmethod
    def _refuse(api: str, exc: Exception, error_shape: Callable, trace: RequestTrace) -> Response:
        """A request that failed before any output: a plain HTTP error in the API's shape."""
        err = as_kvyard_error(exc)
        metrics.in_flight.dec()
        metrics.requests_total.labels(api, str(err.status)).inc()
        trace.fail(exc, err.status)
        trace.end()
        if err.status >= 500:
            log.warning("%s request failed before streaming: %s", api, exc)
        return JSONResponse(error_shape(err), err.status)

    async def _sse(
        self, exchange: ApiExchange, started, items: AsyncIterator[Any], caller: Caller, trace: RequestTrace
    ) -> AsyncIterator[bytes]:
        status = "200"
        try:
            for frame in exchange.head(started):
                yield frame
            async for item in items:
                for frame in exchange.frames(item):
                    yield frame
            for frame in exchange.tail():
                yield frame
        except Exception as exc:  # mid-stream: the client gets an error event in its API's grammar
            err = as_kvyard_error(exc)
            status = str(err.status)
            trace.fail(exc, err.status)
            log.warning("%s stream failed: %s", exchange.api, exc)
            for frame in exchange.error_frames(err):
                yield frame
        finally:
            await items.aclose()
            metrics.in_flight.dec()
            self.limiter.release(caller)
            metrics.requests_total.labels(exchange.api, status).inc()
            trace.end()
