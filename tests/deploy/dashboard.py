"""The Grafana dashboard shipped with the chart (``helm/kvyard/dashboards/kvyard.json``), written
from the panel list below so that every query names a metric kvyard really exports (a test checks
each name against ``kvyard.metrics`` and the engine series of ``/metrics``). Rewrite it with::

    python -m tests.deploy.dashboard
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DASHBOARD_PATH = Path(__file__).resolve().parents[2] / "helm" / "kvyard" / "dashboards" / "kvyard.json"

# (title, unit, [(PromQL, legend)])
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Requests per second by API and status", "reqps", [('sum by (api, status) (rate(kvyard_requests_total[$__rate_interval]))', "{{api}} {{status}}")]),
    ("Error ratio (5xx)", "percentunit", [('sum(rate(kvyard_requests_total{status=~"5.."}[$__rate_interval])) / clamp_min(sum(rate(kvyard_requests_total[$__rate_interval])), 1e-9)', "5xx")]),
    ("Time to first token", "s", [
        (f'histogram_quantile({q}, sum by (le) (rate(kvyard_ttft_seconds_bucket[$__rate_interval])))', f"p{int(q * 100)}") for q in (0.5, 0.9, 0.99)
    ]),
    ("Requests in flight", "short", [("sum(kvyard_in_flight_requests)", "frontends"), ("sum by (pool) (kvyard_engine_in_flight_requests)", "engines {{pool}}")]),
    ("Prefix-cache hit ratio by pool", "percentunit", [
        ("sum by (pool) (rate(kvyard_prefix_cache_hit_tokens_total[$__rate_interval])) / clamp_min(sum by (pool) (rate(kvyard_prompt_tokens_total[$__rate_interval])), 1e-9)", "{{pool}}")
    ]),
    ("KV transfers by outcome", "ops", [("sum by (outcome) (rate(kvyard_kv_transfer_total[$__rate_interval]))", "{{outcome}}")]),
    ("Prefill leg duration (KV handed over)", "s", [
        (f"histogram_quantile({q}, sum by (le) (rate(kvyard_kv_transfer_seconds_bucket[$__rate_interval])))", f"p{int(q * 100)}") for q in (0.5, 0.9)
    ]),
    ("Engine KV-cache usage", "percentunit", [("kvyard_engine_kv_cache_usage", "{{pool}} {{replica}}")]),
    ("NIXL bytes received by decode engines", "Bps", [("sum by (replica) (rate(kvyard_engine_kv_bytes_total[$__rate_interval]))", "{{replica}}")]),
    ("NIXL transfer failures", "ops", [("sum by (replica) (rate(kvyard_engine_kv_transfer_failures_total[$__rate_interval]))", "{{replica}}")]),
    ("Aborted engine requests (clients gone)", "ops", [("sum by (pool) (rate(kvyard_engine_aborted_total[$__rate_interval]))", "{{pool}}")]),
    ("Output tokens per second", "short", [("sum(rate(kvyard_generated_tokens_total[$__rate_interval]))", "tokens/s")]),
    ("Sanitizer rule firings", "ops", [("sum by (rule) (rate(kvyard_sanitizer_rule_fired_total[$__rate_interval]))", "{{rule}}")]),
    ("Model output surfaced as text (malformed tool calls)", "ops", [("sum(rate(kvyard_parser_malformed_total[$__rate_interval]))", "malformed")]),
]  # fmt: skip


def build() -> dict[str, Any]:
    panels = []
    for i, (title, unit, queries) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + k), "expr": expr, "legendFormat": legend} for k, (expr, legend) in enumerate(queries)
                ],
            }
        )
    return {
        "title": "kvyard",
        "uid": "kvyard-overview",
        "tags": ["kvyard", "llm", "ray"],
        "schemaVersion": 39,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    DASHBOARD_PATH.write_text(render())
    print(f"wrote {DASHBOARD_PATH}")
