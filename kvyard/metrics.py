"""Prometheus metrics of a frontend replica, in one registry served at ``GET /metrics``.

Engine-side counts (prefix-cache hits per pool, NIXL transfers) are reported by the engines with
each request and by their ``stats()``; the frontend turns them into the series below.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

requests_total = Counter(
    "kvyard_requests_total", "Requests by API and HTTP status.", ["api", "status"], registry=REGISTRY
)
ttft_seconds = Histogram(
    "kvyard_ttft_seconds",
    "Time from request arrival to the first output token.",
    ["api"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
kv_transfer_total = Counter(
    "kvyard_kv_transfer_total",
    "P/D handoffs by outcome: ok (KV pulled over NIXL), fallback (decode computed the prompt), error.",
    ["outcome"],
    registry=REGISTRY,
)
kv_transfer_seconds = Histogram(
    "kvyard_kv_transfer_seconds",
    "Prefill leg latency of a P/D handoff (prompt compute + KV ready for pull).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
    registry=REGISTRY,
)
prompt_tokens_total = Counter(
    "kvyard_prompt_tokens_total", "Prompt tokens sent to engines, by pool.", ["pool"], registry=REGISTRY
)
prefix_cache_hit_tokens_total = Counter(
    "kvyard_prefix_cache_hit_tokens_total",
    "Prompt tokens the engine took from its prefix cache, by pool (engine-reported).",
    ["pool"],
    registry=REGISTRY,
)
generated_tokens_total = Counter(
    "kvyard_generated_tokens_total", "Output tokens returned to clients.", registry=REGISTRY
)
sanitizer_fired_total = Counter(
    "kvyard_sanitizer_rule_fired_total", "Sanitizer rule firings, by rule.", ["rule"], registry=REGISTRY
)
parser_malformed_total = Counter(
    "kvyard_parser_malformed_total", "Model output the parser surfaced as text (bad tool call etc.).", registry=REGISTRY
)
in_flight = Gauge("kvyard_in_flight_requests", "Requests being served by this frontend.", registry=REGISTRY)


def render() -> bytes:
    """The Prometheus text exposition of this replica's metrics."""
    return generate_latest(REGISTRY)
