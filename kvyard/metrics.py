"""Prometheus metrics of a frontend replica, in one registry; ``GET /metrics`` serves them for
every frontend replica at once.

Engine-side counts (prefix-cache hits per pool, NIXL transfers) are reported by the engines with
each request and by their ``stats()``; the frontend turns them into the series below.

Cluster-wide exposition: the replica answering a scrape gathers each live frontend replica's
``families()`` and renders them once (``render_cluster``), every sample labelled with the
``frontend`` replica it came from. One scrape of any replica thus sees every replica's series,
and ``sum()`` in PromQL adds them up; per-replica counters would otherwise depend on which
replica the scrape happened to reach.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

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


FRONTEND_LABEL = "frontend"


class Family(msgspec.Struct, array_like=True):
    """One metric family of one replica, as it travels between replicas."""

    name: str
    type: str
    documentation: str
    samples: list[tuple[str, dict[str, str], float]]


def families(registry: CollectorRegistry = REGISTRY) -> list[Family]:
    """This replica's metric families (``*_created`` samples dropped: they are per-process)."""
    return [
        Family(m.name, m.type, m.documentation, [(s.name, dict(s.labels), s.value) for s in m.samples if not s.name.endswith("_created")])
        for m in registry.collect()
    ]


class _Merged:
    """A collector over already-gathered families (for ``generate_latest``)."""

    def __init__(self, metrics: Iterable[Metric]):
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def render_cluster(by_replica: Mapping[str, list[Family]]) -> bytes:
    """One exposition of several replicas' families: each family once (first replica's help and
    type), each sample labelled ``frontend=<replica id>``; replicas in id order."""
    merged: dict[str, Metric] = {}
    for replica in sorted(by_replica):
        for fam in by_replica[replica]:
            metric = merged.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type))
            if metric.type != fam.type:  # a replica on another version: skip what cannot merge
                continue
            metric.samples.extend(Sample(name, {**labels, FRONTEND_LABEL: replica}, value) for name, labels, value in fam.samples)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(merged.values()))
    return generate_latest(registry)


ENGINE_SERIES: tuple[tuple[str, str, str, str], ...] = (
    # (series, type, stats key, help)
    ("kvyard_engine_info", "gauge", "", "An engine replica (always 1), with its node and the CPU cores its model threads are bound to."),
    ("kvyard_engine_prefix_queries_total", "counter", "prefix_queries", "Prompt tokens looked up in the engine's prefix cache."),
    ("kvyard_engine_prefix_hits_total", "counter", "prefix_hits", "Prompt tokens found in the engine's prefix cache."),
    ("kvyard_engine_kv_transfers_total", "counter", "kv_transfers", "KV transfers this engine took part in over NIXL (vLLM connector stats)."),
    ("kvyard_engine_kv_transfer_failures_total", "counter", "kv_transfer_failures", "Failed NIXL transfers, handshakes and notifications."),
    ("kvyard_engine_kv_bytes_total", "counter", "kv_bytes", "Bytes of KV moved over NIXL."),
    ("kvyard_engine_requests_total", "counter", "requests", "Requests the engine started (counted at their first output)."),
    ("kvyard_engine_aborted_total", "counter", "aborted", "Requests aborted because their caller went away."),
    ("kvyard_engine_kv_cache_usage", "gauge", "kv_cache_usage", "Fraction of the engine's KV cache in use."),
    ("kvyard_engine_in_flight_requests", "gauge", "in_flight", "Requests the engine is running or has queued."),
)


def render_engines(stats: list[tuple[str, dict]]) -> str:
    """Prometheus text for engine replicas' ``stats()`` (``(pool, stats)`` pairs): each series once,
    with its HELP and TYPE, one sample per replica labelled ``pool`` and ``replica``."""
    lines: list[str] = []
    for series, kind, key, help_text in ENGINE_SERIES:
        lines += [f"# HELP {series} {help_text}", f"# TYPE {series} {kind}"]
        for pool, st in stats:
            labels = f'pool="{pool}",replica="{st["replica"]}"'
            if not key:
                lines.append(f'{series}{{{labels},node_id="{st["node_id"]}",cpu_cores="{st.get("cpu_cores", "")}"}} 1')
            else:
                lines.append(f"{series}{{{labels}}} {st[key]}")
    return "\n".join(lines) + "\n" if stats else ""
