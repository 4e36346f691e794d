"""The agentic benchmark's "Aims" verdicts (``benchmarks/agentic.py``), on hand-made FAKE stats."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "agentic.py"
_spec = importlib.util.spec_from_file_location("agentic_bench", _PATH)
agentic = importlib.util.module_from_spec(_spec)
sys.modules["agentic_bench"] = agentic
_spec.loader.exec_module(agentic)


def fake(label: str, ttft_p50: float | None, reuse: float | None = None, errors: int = 0) -> SimpleNamespace:
    return SimpleNamespace(label=label, ttft_s=(ttft_p50, None, None), reuse_of_ideal=reuse, errors=errors, requests=30)


def test_met_against_the_fastest_peer_only():
    text = "\n".join(agentic.aims([fake("kvyard", 0.4, 0.99), fake("kvyard-nosan", 9.0), fake("vllm", 2.0), fake("dynamo", 1.0)]))
    assert "best peer `dynamo`" in text and "0.40x" in text
    assert text.count("**met**") == 2


def test_misses_say_by_how_much():
    text = "\n".join(agentic.aims([fake("kvyard", 0.8, 0.90), fake("vllm", 1.0, errors=3)]))
    assert "missed: 1.60x the aim" in text and "(3 of 30 requests failed)" in text
    assert "missed by 7.0% of the ideal" in text


def test_no_peer_or_no_kvyard():
    assert "no peer answered" in "\n".join(agentic.aims([fake("kvyard", 0.5, 1.0), fake("vllm", None)]))
    assert "has no results" in "\n".join(agentic.aims([fake("vllm", 1.0)]))
