"""The ingress deployment: HTTP APIs over one shared text pipeline (``kvyard.frontend``).

A thin shell: decode the API's request, run ``Generator.stream``, encode the events in the API's
grammar, map ``KvyardError`` to the API's error shape. ``serve.ingress(app)`` is applied by the
builder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from kvyard import metrics
from kvyard.api import openai_chat
from kvyard.api.common import openai_error
from kvyard.config import AppConfig
from kvyard.deployments.handles import ServePool
from kvyard.errors import AuthenticationFailed, KvyardError, ModelNotFound, RequestTooLarge, as_kvyard_error
from kvyard.frontend.generation import Generator
from kvyard.policies.profiles import detect_profile, get_profile

log = logging.getLogger("kvyard.frontend")

app = FastAPI(title="kvyard", description="OpenAI and Anthropic APIs over disaggregated vLLM engines")


def sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


class Frontend:
    def __init__(self, config: dict[str, Any], decode: Any, prefill: Any = None):
        from transformers import AutoTokenizer

        self.config = AppConfig.model_validate(config)
        cfg = self.config
        tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
        profile = (
            detect_profile(tokenizer.get_vocab(), tokenizer.chat_template)
            if cfg.model.profile == "auto"
            else get_profile(cfg.model.profile)
        )
        self.decode_handle, self.prefill_handle = decode, prefill
        self.generator = Generator(
            tokenizer,
            profile,
            max_model_len=cfg.model.max_model_len,
            decode=ServePool(decode),
            prefill=ServePool(prefill) if prefill is not None else None,
            prefill_timeout_s=cfg.frontend.prefill_timeout_s,
        )
        log.info("frontend ready: model=%s profile=%s mode=%s", cfg.model.served_name, profile.name, cfg.mode)

    # --- edge checks -------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        keys = self.config.frontend.api_keys
        if not keys:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        if given not in keys:
            raise AuthenticationFailed("missing or invalid API key: send it as 'x-api-key' or 'Authorization: Bearer'")

    async def _body(self, request: Request) -> bytes:
        limit = self.config.frontend.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"the body is {declared} bytes; the limit is {limit}")
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise RequestTooLarge(f"the body is over the {limit}-byte limit")
        return body

    def _model(self, name: str | None) -> str:
        served = self.config.resolve_model_name(name)
        if served is None:
            raise ModelNotFound(f"model {name!r} is not served here; GET /v1/models lists what is")
        return name or served

    # --- endpoints ---------------------------------------------------------------------------

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
            if self.config.resolve_model_name(model_id) is None:
                raise ModelNotFound(f"model {model_id!r} is not served here; GET /v1/models lists what is")
        except KvyardError as exc:
            return JSONResponse(openai_error(exc), exc.status)
        return JSONResponse(self._model_card(model_id))

    def _model_card(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "kvyard", "max_model_len": self.config.model.max_model_len}

    @app.get("/metrics")
    async def metrics_text(self) -> PlainTextResponse:
        text = metrics.render().decode() + await self._engine_metrics()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def _engine_metrics(self) -> str:
        """Engine counters (one replica per pool per scrape), as Prometheus text."""
        lines: list[str] = []
        pools = [("decode", self.decode_handle)] + ([("prefill", self.prefill_handle)] if self.prefill_handle else [])
        for pool, handle in pools:
            try:
                stats = await handle.stats.remote()
            except Exception as exc:  # a scrape must not fail because one replica is restarting
                log.warning("stats from %s failed: %s", pool, exc)
                continue
            labels = f'pool="{pool}",replica="{stats["replica"]}"'
            for key in ("prefix_queries", "prefix_hits", "kv_transfers", "kv_transfer_failures", "kv_bytes", "requests"):
                lines.append(f"kvyard_engine_{key}_total{{{labels}}} {stats[key]}")
            lines.append(f"kvyard_engine_kv_cache_usage{{{labels}}} {stats['kv_cache_usage']}")
        return "\n".join(lines) + ("\n" if lines else "")

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        api = "chat"
        metrics.in_flight.inc()
        try:
            self._authorize(request)
            req, conv, options = openai_chat.decode_request(await self._body(request), self.config.frontend.default_max_tokens)
            encoder = openai_chat.ChatEncoder(self._model(req.model), req.return_token_ids)
            events = self.generator.stream(conv, options, api=api, tool_names={t.name for t in conv.tools} or None)
            first = await anext(events)  # errors before the first event are plain HTTP errors
        except Exception as exc:
            err = as_kvyard_error(exc)
            metrics.in_flight.dec()
            metrics.requests_total.labels(api, str(err.status)).inc()
            return JSONResponse(openai_error(err), err.status)
        if not req.stream:
            try:
                encoder.chunks(first)
                async for event in events:
                    encoder.chunks(event)
            except Exception as exc:
                err = as_kvyard_error(exc)
                metrics.requests_total.labels(api, str(err.status)).inc()
                return JSONResponse(openai_error(err), err.status)
            finally:
                metrics.in_flight.dec()
            metrics.requests_total.labels(api, "200").inc()
            return JSONResponse(encoder.response())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(
            self._chat_sse(encoder, first, events, include_usage),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def _chat_sse(self, encoder, first, events: AsyncIterator[Any], include_usage: bool) -> AsyncIterator[bytes]:
        status = "200"
        try:
            yield sse(encoder.first_chunk())
            for payload in encoder.chunks(first):
                yield sse(payload)
            async for event in events:
                for payload in encoder.chunks(event):
                    yield sse(payload)
            if include_usage:
                yield sse(encoder.usage_chunk())
            yield b"data: [DONE]\n\n"
        except Exception as exc:  # mid-stream: the client gets an error event in the stream
            err = as_kvyard_error(exc)
            status = str(err.status)
            log.warning("stream failed: %s", exc)
            yield sse(openai_error(err))
        finally:
            await events.aclose()
            metrics.in_flight.dec()
            metrics.requests_total.labels("chat", status).inc()
