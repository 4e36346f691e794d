"""One vLLM ``AsyncLLM`` behind a Ray Serve replica: token ids in, token ids out.

The same class serves the prefill, decode and aggregated pools; the role only picks the NIXL
connector settings (``kvyard.kvtransfer.connector``). Text never reaches an engine: the frontend
renders and tokenizes, and detokenizes what comes back.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from kvyard.config import AppConfig
from kvyard.deployments.cpu_cores import claim_cores, cores_wanted
from kvyard.deployments.engine_stats import EngineCounters
from kvyard.kvtransfer.connector import Role, free_port, kv_transfer_config, set_side_channel_env
from kvyard.protocol import EngineChunk, EngineRequest, Sampling

log = logging.getLogger("kvyard.engine")


def sampling_params(sampling: Sampling, kv_transfer_params: dict[str, Any] | None):
    """kvyard's sampling struct -> vLLM ``SamplingParams`` (delta outputs, no detokenizing)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    structured = None
    if sampling.regex is not None:
        structured = StructuredOutputsParams(regex=sampling.regex)
    elif sampling.json_schema is not None:
        structured = StructuredOutputsParams(json=sampling.json_schema)
    return SamplingParams(
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        seed=sampling.seed,
        stop_token_ids=list(sampling.stop_token_ids),
        ignore_eos=sampling.ignore_eos,
        structured_outputs=structured,
        detokenize=False,
        output_kind=RequestOutputKind.DELTA,
        extra_args={"kv_transfer_params": kv_transfer_params} if kv_transfer_params else None,
    )


def _serve_replica_id() -> str | None:
    """This replica's Serve id (the router's worker id), or None outside Serve."""
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # not running inside a Serve replica (direct use in scripts)
        return None


class EngineServer:
    """Hosts one engine. ``generate`` streams ``EngineChunk``s; ``stats`` reports counters."""

    def __init__(self, config: dict[str, Any] | AppConfig, role: Role):
        import ray
        from vllm.config import KVEventsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        cfg = config if isinstance(config, AppConfig) else AppConfig.model_validate(config)
        self.role = role
        self.replica = f"{role}-{os.getpid()}"
        self.node_id = ray.get_runtime_context().get_node_id()
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.engine.cpu_kv_cache_gib))
        self.cpu_cores = self._bind_cpu_cores(cfg) if cfg.engine.device == "cpu" else ""
        connector = kv_transfer_config(role, cfg.engine.device)
        if connector is not None:
            # Decode recomputes blocks whose transfer failed: slower, never a wrong answer.
            connector["kv_load_failure_policy"] = "recompute"
            port = set_side_channel_env(ray.util.get_node_ip_address())
            log.info("%s: NIXL side channel on port %d", self.replica, port)
        self.counters = EngineCounters()
        self.worker_id = _serve_replica_id() or self.replica
        node_ip = ray.util.get_node_ip_address()
        events_port, replay_port = free_port(), free_port()
        self.kv_events = {
            "events": f"tcp://{node_ip}:{events_port}",
            "replay": f"tcp://{node_ip}:{replay_port}",
            "topic": "kv-events",
        }
        args = AsyncEngineArgs(
            model=cfg.model.path,
            served_model_name=cfg.model.served_name,
            max_model_len=cfg.model.max_model_len,
            block_size=cfg.model.block_size,
            # vLLM would run float32 checkpoints in bf16 on CPU: slower without native bf16 (AVX2).
            dtype="float32" if cfg.model.dtype == "auto" and cfg.engine.device == "cpu" else cfg.model.dtype,
            enforce_eager=cfg.engine.enforce_eager,
            max_num_seqs=cfg.engine.max_num_seqs,
            tensor_parallel_size=cfg.engine.tensor_parallel_size,
            enable_prefix_caching=True,
            kv_transfer_config=connector,
            kv_events_config=KVEventsConfig(
                enable_kv_cache_events=True,
                publisher="zmq",
                endpoint=f"tcp://*:{events_port}",
                replay_endpoint=f"tcp://*:{replay_port}",
                topic="kv-events",
            ),
            **({"gpu_memory_utilization": cfg.engine.gpu_memory_utilization} if cfg.engine.device == "cuda" else {}),
            **cfg.engine.extra_engine_args,
        )
        started = time.monotonic()
        self.engine = AsyncLLM.from_engine_args(args, stat_loggers=[self.counters.logger_factory])
        log.info("%s: engine ready in %.1fs", self.replica, time.monotonic() - started)

    def _bind_cpu_cores(self, cfg: AppConfig) -> str:
        """Give this engine's model threads cores no other engine on the node uses (``cpu_cores``);
        return the binding vLLM will use ("" for its own automatic one)."""
        if "VLLM_CPU_OMP_THREADS_BIND" in os.environ or cfg.engine.cpu_cores == 0:
            return os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "")
        pool = cfg.prefill if self.role == "prefill" else cfg.decode
        try:
            binding = claim_cores(cores_wanted(cfg.engine.cpu_cores, pool.num_cpus), cfg.engine.tensor_parallel_size)
        except OSError as exc:  # e.g. another user's claims file: run unbound rather than not at all
            log.warning("%s: could not claim CPU cores (%s); vLLM binds the model threads itself", self.replica, exc)
            return ""
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = binding  # read by the engine's worker processes
        log.info("%s: model threads on CPU cores %s", self.replica, binding)
        return binding

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineChunk]:
        """Stream the request's new tokens; the first chunk also reports prompt and cache counts."""
        from vllm.inputs import TokensPrompt

        params = sampling_params(request.sampling, request.kv_transfer_params)
        prompt = TokensPrompt(prompt_token_ids=request.prompt_token_ids)
        if request.cache_salt:
            prompt["cache_salt"] = request.cache_salt
        first, finished = True, False
        try:
            async for out in self.engine.generate(prompt, params, request.request_id):
                yield self._chunk(out, request, first)
                first, finished = False, out.finished
        finally:
            if not finished:  # the caller went away (client disconnect, dead frontend): AsyncLLM aborts it
                self.counters.aborted += 1

    def _chunk(self, out: Any, request: EngineRequest, first: bool) -> EngineChunk:
        completion = out.outputs[0]
        chunk = EngineChunk(
            token_ids=list(completion.token_ids),
            finish_reason=completion.finish_reason if out.finished else None,
            kv_transfer_params=out.kv_transfer_params if out.finished else None,
            replica=self.worker_id,
        )
        if first:
            chunk.num_prompt_tokens = len(request.prompt_token_ids)
            chunk.num_cached_tokens = out.num_cached_tokens or 0
            self.counters.record_request(chunk.num_prompt_tokens, chunk.num_cached_tokens)
        return chunk

    async def prefill(self, request: EngineRequest) -> EngineChunk:
        """Run a request to completion and return one merged chunk (used for the prefill leg)."""
        merged = EngineChunk(token_ids=[], replica=self.worker_id)
        async for chunk in self.generate(request):
            merged.token_ids += chunk.token_ids
            merged.num_prompt_tokens = merged.num_prompt_tokens or chunk.num_prompt_tokens
            merged.num_cached_tokens = merged.num_cached_tokens or chunk.num_cached_tokens
            merged.finish_reason = chunk.finish_reason or merged.finish_reason
            merged.kv_transfer_params = chunk.kv_transfer_params or merged.kv_transfer_params
        return merged

    async def stats(self, target: Any = None) -> dict[str, Any]:
        """Counters since start: prefix-cache hits, NIXL transfers, requests. ``target`` is a
        ``RouteTo`` when the caller wants this particular replica."""
        in_flight = self.engine.output_processor.get_num_unfinished_requests()
        return {"replica": self.worker_id, "role": self.role, "node_id": self.node_id, "cpu_cores": self.cpu_cores, "in_flight": in_flight, **self.counters.snapshot()}

    async def kv_events_endpoints(self, target: Any = None) -> dict[str, str]:
        """Where this engine publishes its KV events (ZMQ PUB) and serves their replay (ROUTER)."""
        return dict(self.kv_events)

    async def check_health(self) -> None:
        """Ray Serve health probe: the engine loop must be alive."""
        if self.engine.errored:
            raise RuntimeError(f"{self.replica}: engine errored: {self.engine.dead_error}")
