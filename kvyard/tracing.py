"""OpenTelemetry traces: one trace per request, a span per pipeline step.

Spans (children of ``kvyard.request``): ``kvyard.decode_api`` (the API body into a
Conversation), ``kvyard.sanitize``, ``kvyard.replay``, ``kvyard.render`` (chat template) with
its child ``kvyard.tokenize``, ``kvyard.route``, ``kvyard.prefill``, ``kvyard.kv_transfer``
(prefill done → decode's first token: the NIXL read plus decode's first step, as the frontend
sees it), ``kvyard.decode`` and ``kvyard.parse``. Steps that run interleaved with others
(tokenizing between template pieces, parsing between engine chunks) are recorded with their
summed busy time, ending where the enclosing step ends. Attributes carry ids, counts and timings,
never prompt or output text.

Export is configured by the standard environment (what the Helm chart sets):
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf`` or ``grpc``), ``OTEL_TRACES_SAMPLER[_ARG]``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``; ``OTEL_SDK_DISABLED=true`` turns it off.
Without an endpoint, spans go to whatever provider the process already has (the no-op one by
default, which costs nothing). An incoming W3C ``traceparent`` header becomes the parent.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

log = logging.getLogger("kvyard.tracing")

_configured = False


def configure_from_env(environ: Mapping[str, str] = os.environ) -> bool:
    """Install an OTLP-exporting tracer provider when the environment names an endpoint (once per
    process). Returns whether this call installed one."""
    global _configured
    if _configured or environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter,
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
    provider = TracerProvider(resource=Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", "kvyard")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # reads the same OTEL_* variables
    trace.set_tracer_provider(provider)
    _configured = True
    log.info("tracing: exporting spans over OTLP (%s) to %s", protocol, endpoint)
    return True


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


class RequestTrace:
    """The root span of one request and its step spans, recorded with explicit times so that they
    can be written after the fact from async generators (no context variables across yields)."""

    def __init__(self, name: str = "kvyard.request", headers: Mapping[str, str] | None = None, **attributes: Any):
        parent = propagate.extract(headers) if headers is not None else None
        self.span = trace.get_tracer("kvyard").start_span(name, context=parent, attributes=_clean(attributes))
        self._context = trace.set_span_in_context(self.span)
        self._ended = False

    def step(self, name: str, start_ns: int, end_ns: int | None = None, *, parent: Any = None, **attributes: Any) -> Any:
        """Record a finished step; returns its span (a parent for sub-steps)."""
        context = trace.set_span_in_context(parent) if parent is not None else self._context
        span = trace.get_tracer("kvyard").start_span(name, context=context, start_time=start_ns, attributes=_clean(attributes))
        span.end(end_time=end_ns if end_ns is not None else time.time_ns())
        return span

    def busy(self, name: str, seconds: float, end_ns: int, *, parent: Any = None, **attributes: Any) -> Any:
        """A step whose work was interleaved with others: its summed time, ending at ``end_ns``."""
        return self.step(name, end_ns - int(seconds * 1e9), end_ns, parent=parent, **attributes)

    def set(self, **attributes: Any) -> None:
        self.span.set_attributes(_clean(attributes))

    def fail(self, exc: BaseException, status: int | None = None) -> None:
        """Mark the request failed: the error's type and status, not its message (it may quote input)."""
        self.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self.set(**{"error.type": type(exc).__name__, "http.response.status_code": status})

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self.span.end()


def now_ns() -> int:
    return time.time_ns()
