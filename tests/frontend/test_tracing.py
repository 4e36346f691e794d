"""Request traces: every pipeline step is a child span of the request, with ids, counts and
timings as attributes and no prompt or output text (Generator driven by named fake engine pools)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kvyard.conversation import Conversation, Message, TextPart
from kvyard.frontend.generation import Finished, GenerationOptions, Generator
from kvyard.policies.profiles import get_profile
from kvyard.protocol import EngineChunk
from kvyard.tracing import RequestTrace, configure_from_env

SECRET = "zebra-quartz-secret-prompt"


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


class FakePrefillDecode:
    """A named fake P/D pool pair: prefill answers with a KV location, decode streams ``outputs``."""

    def __init__(self, output: list[int], prefill_ok: bool = True):
        self.output, self.prefill_ok = output, prefill_ok

    async def prefill(self, request):
        await asyncio.sleep(0.01)
        if not self.prefill_ok:
            raise RuntimeError("prefill replica died")
        params = {"do_remote_prefill": True, "remote_engine_id": "e1", "remote_block_ids": [1], "remote_host": "h", "remote_port": 1}
        return EngineChunk(token_ids=[self.output[0]], num_prompt_tokens=len(request.prompt_token_ids), kv_transfer_params=params)

    async def generate(self, request):
        await asyncio.sleep(0.01)
        for i, token in enumerate(self.output):
            yield EngineChunk(token_ids=[token], finish_reason="length" if i == len(self.output) - 1 else None,
                              num_prompt_tokens=len(request.prompt_token_ids))  # fmt: skip


def run(gen: Generator, trace_: RequestTrace | None) -> list:
    conv = Conversation(system="be brief", messages=[Message("user", [TextPart(SECRET)])])

    async def go():
        return [i async for i in gen.stream(conv, GenerationOptions(max_tokens=5, session="s-1"), api="chat", trace=trace_)]

    return asyncio.run(go())


def by_name(exporter) -> dict[str, list]:
    out: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


@pytest.mark.parametrize("prefill_ok", [True, False], ids=["kv-over-nixl", "prefill-fallback"])
def test_every_step_is_a_child_span_without_text(spans, tokenizer, prefill_ok):
    spans.clear()
    output = tokenizer("alpha beta gamma", add_special_tokens=False)["input_ids"]
    pools = FakePrefillDecode(output, prefill_ok)
    gen = Generator(tokenizer, get_profile("qwen3"), max_model_len=2048, decode=pools, prefill=pools)
    root = RequestTrace(**{"kvyard.api": "chat"})
    items = run(gen, root)
    root.end()
    assert isinstance(items[-1], Finished)

    found = by_name(spans)
    steps = ["kvyard.sanitize", "kvyard.replay", "kvyard.render", "kvyard.tokenize", "kvyard.prefill", "kvyard.decode", "kvyard.parse"]
    if prefill_ok:
        steps.append("kvyard.kv_transfer")
    for name in steps:
        assert len(found.get(name, [])) == 1, (name, sorted(found))
    assert ("kvyard.kv_transfer" in found) == prefill_ok
    request = found["kvyard.request"][0]
    for name in steps:
        span = found[name][0]
        assert span.context.trace_id == request.context.trace_id
        assert span.start_time <= span.end_time
    render = found["kvyard.render"][0]
    assert found["kvyard.tokenize"][0].parent.span_id == render.context.span_id
    assert found["kvyard.prefill"][0].parent.span_id == request.context.span_id
    assert found["kvyard.prefill"][0].attributes["kvyard.kv_transfer.outcome"] == ("ok" if prefill_ok else "fallback")
    attrs = request.attributes
    assert attrs["kvyard.session"] == "s-1"
    assert attrs["kvyard.prompt_tokens"] == render.attributes["kvyard.prompt_tokens"] > 0
    assert attrs["kvyard.completion_tokens"] == len(output)
    assert attrs["kvyard.ttft_s"] > 0
    assert "kvyard.cached_tokens" in attrs
    for span in spans.get_finished_spans():
        assert SECRET not in repr(dict(span.attributes)), span.name


def test_a_traceparent_header_becomes_the_parent(spans):
    spans.clear()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    root = RequestTrace(headers={"traceparent": parent})
    root.end()
    (span,) = spans.get_finished_spans()
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"


def test_failure_records_the_error_type_not_its_message(spans):
    spans.clear()
    root = RequestTrace()
    root.fail(ValueError(f"bad input: {SECRET}"), 400)
    root.end()
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.attributes["error.type"] == "ValueError" and span.attributes["http.response.status_code"] == 400
    assert SECRET not in repr(span.attributes) and SECRET not in (span.status.description or "")


def test_export_is_configured_only_by_an_endpoint():
    assert configure_from_env({}) is False
    assert configure_from_env({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}) is False
