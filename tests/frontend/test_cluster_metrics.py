"""One exposition for every frontend replica (``kvyard.metrics.render_cluster``): each family
once, every sample labelled with its replica, parseable by Prometheus' own parser."""

from __future__ import annotations

import pickle

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from kvyard import metrics


def replica_registry(requests: int, in_flight: int, ttfts: list[float]) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("kvyard_requests_total", "Requests.", ["api", "status"], registry=registry).labels("chat", "200").inc(requests)
    Gauge("kvyard_in_flight_requests", "In flight.", registry=registry).set(in_flight)
    ttft = Histogram("kvyard_ttft_seconds", "TTFT.", ["api"], buckets=(0.1, 1), registry=registry)
    for value in ttfts:
        ttft.labels("chat").observe(value)
    return registry


def parsed(text: bytes) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text.decode())}


def test_each_replica_s_series_are_labelled_and_sum_to_the_cluster_total():
    by_replica = {
        "frontend-b": metrics.families(replica_registry(3, 1, [0.05, 2.0])),
        "frontend-a": metrics.families(replica_registry(4, 0, [0.5])),
    }
    text = metrics.render_cluster(by_replica)
    assert text.decode().count("# TYPE kvyard_requests_total counter") == 1  # a family once, not once per replica
    families = parsed(text)
    requests = {s.labels["frontend"]: s.value for s in families["kvyard_requests"] if s.name == "kvyard_requests_total"}
    assert requests == {"frontend-a": 4.0, "frontend-b": 3.0}
    assert sum(s.value for s in families["kvyard_in_flight_requests"]) == 1.0
    counts = {s.labels["frontend"]: s.value for s in families["kvyard_ttft_seconds"] if s.name == "kvyard_ttft_seconds_count"}
    assert counts == {"frontend-a": 1.0, "frontend-b": 2.0}
    below_1s = [s for s in families["kvyard_ttft_seconds"] if s.name.endswith("_bucket") and s.labels["le"] == "1.0"]
    assert sorted(s.value for s in below_1s) == [1.0, 1.0]


def test_created_samples_are_dropped_and_families_survive_pickling():
    families = metrics.families(replica_registry(1, 0, []))
    assert not any(name.endswith("_created") for fam in families for name, _, _ in fam.samples)
    assert pickle.loads(pickle.dumps(families)) == families  # they cross between replicas through Ray


def test_a_family_whose_type_differs_on_one_replica_is_kept_from_the_first():
    odd = CollectorRegistry()
    Gauge("kvyard_requests", "Requests, once a gauge.", registry=odd).set(9)  # the counter family is kvyard_requests too
    text = metrics.render_cluster({"a": metrics.families(replica_registry(2, 0, [])), "b": metrics.families(odd)})
    samples = parsed(text)["kvyard_requests"]
    assert [(s.labels["frontend"], s.value) for s in samples] == [("a", 2.0)]


def test_the_process_registry_renders_alone():
    assert b"kvyard_requests_total" in metrics.render_cluster({"only": metrics.families()})


def test_engine_series_are_grouped_once_each_with_a_sample_per_replica():
    def stats(replica: str, requests: int) -> dict:
        return {"replica": replica, "node_id": "n1", "prefix_queries": 10, "prefix_hits": 4, "kv_transfers": 1, "kv_transfer_failures": 0,
                "kv_bytes": 2048, "requests": requests, "aborted": 1, "kv_cache_usage": 0.25, "in_flight": 0}  # fmt: skip

    text = metrics.render_engines([("decode", stats("d1", 3)), ("decode", stats("d2", 5)), ("prefill", stats("p1", 8))]).encode()
    families = parsed(text)
    assert {f: len(s) for f, s in families.items()} == {series.removesuffix("_total"): 3 for series, *_ in metrics.ENGINE_SERIES}
    requests = {(s.labels["pool"], s.labels["replica"]): s.value for s in families["kvyard_engine_requests"]}
    assert requests == {("decode", "d1"): 3, ("decode", "d2"): 5, ("prefill", "p1"): 8}
    assert {s.labels["node_id"] for s in families["kvyard_engine_info"]} == {"n1"}
    assert metrics.render_engines([]) == ""
