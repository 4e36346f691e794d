"""The kvyard app config: one pydantic model, validated at the edge, loadable from YAML.

The same document drives `kvyard serve --config FILE`, `serve deploy` (as the app's ``args``)
and the Helm chart (rendered into the RayService ``serveConfigV2``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kvyard.policies.sanitizer import SanitizerConfig
from kvyard.router.decision import RouterWeights

DEFAULT_DATA_DIR = Path.home() / ".cache" / "kvyard"
DEFAULT_MODEL_DIR = DEFAULT_DATA_DIR / "models" / "SmolLM2-135M-Instruct"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(_Strict):
    """The model every engine serves (prefill and decode serve the same one by construction)."""

    path: str = Field(str(DEFAULT_MODEL_DIR), description="Local directory of a Hugging Face-format model.")
    served_name: str = Field("SmolLM2-135M-Instruct", description="The model id clients send and /v1/models lists.")
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Client model names (e.g. claude-sonnet-4-5, gpt-5-codex) mapped to served_name. '*' maps any unknown name.",
    )
    max_model_len: int = Field(4096, ge=16, description="Context length (prompt + output tokens).")
    block_size: int = Field(32, ge=1, description="KV cache block size in tokens (CPU engines need a multiple of 32); the router hashes blocks of this size.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="Weights/activations dtype; 'auto' is float32 on CPU engines, the checkpoint's dtype on GPU.")
    profile: str = Field("auto", description="Model-family profile in kvyard.policies (template, parser, replay); 'auto' detects it.")


class EngineConfig(_Strict):
    """vLLM engine settings shared by every engine replica."""

    device: Literal["cpu", "cuda"] = Field("cpu", description="Where the engines run; picks the NIXL buffer device too.")
    cpu_kv_cache_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE for CPU engines (GiB of RAM per engine).")
    cpu_cores: int | None = Field(
        None,
        ge=0,
        description="CPU engines: physical cores each engine replica binds its model threads to, claimed on the node so that "
        "replicas never share cores while there are enough. None: the pool's num_cpus rounded up. 0: leave binding to vLLM "
        "(its 'auto' binds every engine on a node to the same cores). VLLM_CPU_OMP_THREADS_BIND in the environment wins.",
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Fraction of GPU memory per engine (cuda only).")
    tensor_parallel_size: int = Field(1, ge=1, description="Tensor parallel degree per engine replica.")
    enforce_eager: bool = Field(True, description="Skip graph capture (required on CPU, faster startup everywhere).")
    max_num_seqs: int = Field(64, ge=1, description="Concurrent sequences per engine.")
    extra_engine_args: dict[str, Any] = Field(default_factory=dict, description="Passed to vllm AsyncEngineArgs as is.")


class PoolConfig(_Strict):
    """One Ray Serve deployment of engines (prefill, decode, or the aggregated one)."""

    replicas: int = Field(1, ge=1, description="Number of engine replicas.")
    num_cpus: float = Field(1.0, ge=0, description="Ray CPUs reserved per replica.")
    num_gpus: float = Field(0.0, ge=0, description="Ray GPUs reserved per replica.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources per replica (e.g. {'prefill': 1}) to place pools on node groups."
    )


class ApiKeyConfig(_Strict):
    """One accepted API key, the tenant it belongs to, and its limits."""

    key: str = Field(min_length=1, description="The secret the client sends (x-api-key or Authorization: Bearer).")
    tenant: str | None = Field(
        None, min_length=1, description="Tenant name; keys of one tenant share its prefix cache (default: the key is its own tenant)."
    )
    max_concurrent: int | None = Field(
        None, ge=1, description="Most requests in flight at once for this key on one frontend replica; more get 429."
    )


class FrontendConfig(_Strict):
    """The HTTP ingress: APIs, text handling, routing."""

    replicas: int = Field(1, ge=1, description="Frontend replicas (stateless; routing state is shared through Redis).")
    num_cpus: float = Field(0.5, ge=0, description="Ray CPUs reserved per frontend replica.")
    api_keys: list[str | ApiKeyConfig] = Field(
        default_factory=list,
        description="Accepted keys (x-api-key or Bearer), as strings or {key, tenant, max_concurrent}; empty means no auth.",
    )
    isolate_tenants: bool = Field(
        True,
        description="Give each tenant's prompts their own cache salt (engines and router), so no tenant ever gets "
        "prefix-cache hits from another tenant's prompt.",
    )
    max_concurrent_per_key: int | None = Field(
        None, ge=1, description="Default per-key limit of requests in flight on one frontend replica (429 beyond it)."
    )
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    prefill_timeout_s: float = Field(60.0, gt=0, description="After this, decode computes the prompt itself (fallback).")
    default_max_tokens: int | None = Field(
        None,
        ge=1,
        description="Output limit when an OpenAI request names none; unset means the rest of the context, as OpenAI "
        "and vLLM do (Codex sends no limit and fails a turn cut short).",
    )
    tool_call_dispatch: bool = Field(
        False,
        description="Chat Completions streams: also send `event: tool_call_dispatch` with each complete tool call "
        "(clients can ask per request with the header x-kvyard-tool-dispatch: 1).",
    )
    signing_key: str | None = Field(
        None,
        description="Key that signs returned reasoning (thinking signatures) so replays can be verified; "
        "set it to keep signatures valid across replicas and restarts (default: random per replica).",
    )


class RouterConfig(_Strict):
    """How the frontend picks engine replicas."""

    policy: Literal["kv_aware", "round_robin", "serve_default"] = Field(
        "kv_aware",
        description="kv_aware: longest cached prefix (from the engines' KV events) against load, with session "
        "affinity; round_robin: each replica in turn; serve_default: Ray Serve's power-of-two-choices on queue length.",
    )
    weights: RouterWeights = Field(default_factory=RouterWeights, description="Cost weights of the kv_aware decision.")


class AppConfig(_Strict):
    """Everything `kvyard serve` and `serve deploy` need to build the application."""

    mode: Literal["aggregated", "disaggregated"] = Field("disaggregated", description="Separate prefill/decode pools, or one pool doing both.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    prefill: PoolConfig = Field(default_factory=PoolConfig, description="Prefill pool (disaggregated mode).")
    decode: PoolConfig = Field(default_factory=PoolConfig, description="Decode pool; in aggregated mode the only pool.")
    frontend: FrontendConfig = Field(default_factory=FrontendConfig)
    redis_url: str | None = Field(None, description="Redis for shared router state; None keeps state per frontend.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Replica selection.")
    sanitizer: SanitizerConfig = Field(default_factory=SanitizerConfig, description="Prompt sanitizer rules (before rendering and hashing).")

    @model_validator(mode="after")
    def _check(self) -> AppConfig:
        if self.engine.device == "cpu" and (self.prefill.num_gpus or self.decode.num_gpus):
            raise ValueError("engine.device is 'cpu' but a pool asks for GPUs: set engine.device to 'cuda' or num_gpus to 0")
        pools = {"decode": self.decode} | ({"prefill": self.prefill} if self.mode == "disaggregated" else {})
        if self.engine.device == "cuda" and not all(p.num_gpus for p in pools.values()):
            raise ValueError(f"engine.device is 'cuda': give {' and '.join(pools)} num_gpus (usually tensor_parallel_size)")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> AppConfig:
        text = Path(path).read_text()
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping of config fields")
        return cls.model_validate(data)

    def resolve_model_name(self, name: str | None) -> str | None:
        """Map a client's model name to the served one; None when it names no model we serve."""
        if name in (None, "", self.model.served_name):
            return self.model.served_name
        aliases = self.model.aliases
        if name in aliases:
            return aliases[name]
        if "*" in aliases:
            return aliases["*"]
        return None
