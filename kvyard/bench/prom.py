"""Engine-side counters from a Prometheus text endpoint, scraped before and after a run.

A selector is a metric name with optional exact label matchers, ``name`` or
``name{label="value",...}``; its value is the sum of every sample of that name (a counter's
``name_total`` sample counts for ``name``) whose labels include the matchers. The run records
each selector's value before and after; the report shows the differences. Useful selectors:

- vLLM 0.32 (``/metrics`` of ``vllm serve``): ``vllm:prefix_cache_queries`` and
  ``vllm:prefix_cache_hits`` (tokens looked up / found in the local prefix cache);
  ``vllm:external_prefix_cache_queries`` / ``..._hits`` (a KV connector's cache);
- kvyard: ``kvyard_prompt_tokens_total{pool="prefill"}``,
  ``kvyard_prefix_cache_hit_tokens_total{pool="prefill"}``,
  ``kvyard_engine_prefix_queries_total`` / ``kvyard_engine_prefix_hits_total``.
"""

from __future__ import annotations

import re

_SELECTOR = re.compile(r'^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$')
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')

DEFAULT_SELECTORS = ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits")


def parse_selector(selector: str) -> tuple[str, dict[str, str]]:
    m = _SELECTOR.match(selector)
    if not m:
        raise ValueError(f"bad metric selector {selector!r}; use name or name{{label=\"value\"}}")
    labels: dict[str, str] = {}
    body = m.group(2) or ""
    pos = 0
    while pos < len(body.strip()):
        lm = _MATCHER.match(body, pos)
        if not lm or lm.end() == pos:
            raise ValueError(f"bad label matchers in {selector!r}")
        labels[lm.group(1)] = lm.group(2)
        pos = lm.end()
    return m.group(1), labels


def select(text: str, selectors: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``{selector: summed value}`` for the selectors present in the exposition ``text``."""
    from prometheus_client.parser import text_string_to_metric_families

    parsed = [(s, *parse_selector(s)) for s in selectors]
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for sel, name, labels in parsed:
                if sample.name in (name, name + "_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
                    out[sel] = out.get(sel, 0.0) + sample.value
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}
