"""Counters an engine replica keeps: prefix-cache hits and the NIXL connector's own transfer stats.

vLLM calls ``record`` with each scheduler step's stats; the NIXL connector's stats arrive as the
serialized ``NixlKVConnectorStats.data`` (lists of per-transfer observations).
"""

from __future__ import annotations

from typing import Any


class EngineCounters:
    def __init__(self) -> None:
        self.requests = 0
        self.aborted = 0
        """Requests whose caller stopped reading before the end (the engine aborted them)."""
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.kv_transfers = 0
        self.kv_transfer_failures = 0
        self.kv_bytes = 0
        self.kv_transfer_seconds = 0.0
        self.running = 0
        self.waiting = 0
        self.kv_cache_usage = 0.0

    def record_request(self, prompt_tokens: int, cached_tokens: int) -> None:
        self.requests += 1
        self.prompt_tokens += prompt_tokens
        self.cached_tokens += cached_tokens

    def record_scheduler(self, stats: Any) -> None:
        self.running = stats.num_running_reqs
        self.waiting = stats.num_waiting_reqs
        self.kv_cache_usage = stats.kv_cache_usage
        prefix = stats.prefix_cache_stats
        if prefix is not None:
            self.prefix_queries += prefix.queries
            self.prefix_hits += prefix.hits
        transfer = stats.kv_connector_stats or {}
        # MultiConnector nests per-connector dicts; NixlConnector reports its data directly.
        data = transfer.get("NixlConnector", transfer) if isinstance(transfer, dict) else {}
        if isinstance(data, dict) and "transfer_duration" in data:
            self.kv_transfers += len(data["transfer_duration"])
            self.kv_transfer_seconds += float(sum(data["transfer_duration"]))
            self.kv_bytes += int(sum(data["bytes_transferred"]))
            self.kv_transfer_failures += sum(
                len(data.get(key, ())) for key in ("num_failed_transfers", "num_failed_handshakes", "num_failed_notifications")
            )

    def snapshot(self) -> dict[str, Any]:
        return dict(vars(self))

    def logger_factory(self, vllm_config: Any, engine_index: int = 0) -> Any:
        """A vLLM ``StatLoggerBase`` that feeds these counters (pass as ``stat_loggers=[...]``)."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        counters = self

        class _Logger(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0):
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
                if scheduler_stats is not None:
                    counters.record_scheduler(scheduler_stats)

            def log_engine_initialized(self):
                pass

        return _Logger(vllm_config, engine_index)
