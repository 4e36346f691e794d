"""Random-weight test models (Qwen3 or Llama architecture) that vLLM's CPU build serves.

The model is ``AutoModelForCausalLM.from_config`` under ``torch.manual_seed(seed)``, so the
same arguments give bit-identical weights; the tokenizer comes from
``kvyard.models.tokenizer`` (same for every seed). Weights are written in safetensors,
float32 by default: random logits have small top-1/top-2 gaps, and float32 keeps greedy
decoding stable across batch shapes and prefill/decode splits (bfloat16 flips near-ties).
vLLM downcasts float32 checkpoints to bfloat16 unless the engine gets ``dtype="float32"``.
``max_position_embeddings`` is ``max_model_len``; ``generation_config`` stops on ``<|im_end|>``.

``head_dim`` is a free parameter (Qwen3 and Llama both allow ``num_heads * head_dim !=
hidden_size``) so a tiny hidden size can keep a head size that vLLM's CPU attention supports.
Build cost: tokenizer training (~1 s) plus writing ``params × 4`` bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvyard.models import Progress, atomic_model_dir, existing_model

ARCHS = ("qwen3", "llama")
DTYPES = ("float32", "bfloat16")
# Head sizes vLLM 0.32 CPU attention accepts (CPUAttentionBackend.get_supported_head_sizes).
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def build_random(
    out_dir: Path,
    *,
    arch: str = "qwen3",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 64,
    intermediate_size: int = 128,
    vocab_size: int = 4096,
    max_model_len: int = 4096,
    seed: int = 0,
    dtype: str = "float32",
    progress: Progress = print,
) -> Path:
    """Build a random-weight causal LM into ``out_dir`` and return ``out_dir``.

    Returns at once if ``out_dir`` already holds a model built with the same arguments.
    """
    out_dir = Path(out_dir)
    params = {
        "arch": arch,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "head_dim": head_dim,
        "intermediate_size": intermediate_size,
        "vocab_size": vocab_size,
        "max_model_len": max_model_len,
        "seed": seed,
        "dtype": dtype,
    }
    _validate(params)
    if existing_model(out_dir, "random", params) is not None:
        progress(f"random model already built in {out_dir}")
        return out_dir

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from kvyard.models.tokenizer import build_tokenizer

    with atomic_model_dir(out_dir, "random", params) as tmp:
        progress(f"[1/3] training a {vocab_size}-id byte-level BPE tokenizer")
        tokenizer = build_tokenizer(vocab_size, model_max_length=max_model_len)
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}
        config = _config(params, bos_id=ids["<|endoftext|>"], eos_id=ids["<|im_end|>"])

        progress(f"[2/3] initializing {arch} weights (seed {seed})")
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model = model.to(getattr(torch, dtype)).eval()
        n_params = sum(p.numel() for p in model.parameters())

        progress(f"[3/3] writing {n_params / 1e6:.1f}M parameters ({dtype}) to {out_dir}")
        model.generation_config = GenerationConfig(
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    progress(f"random model ready in {out_dir}")
    return out_dir


def _config(p: dict[str, Any], *, bos_id: int, eos_id: int):
    common = {
        "vocab_size": p["vocab_size"],
        "hidden_size": p["hidden_size"],
        "intermediate_size": p["intermediate_size"],
        "num_hidden_layers": p["num_layers"],
        "num_attention_heads": p["num_heads"],
        "num_key_value_heads": p["num_kv_heads"],
        "head_dim": p["head_dim"],
        "max_position_embeddings": p["max_model_len"],
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": bos_id,
        "dtype": p["dtype"],
    }
    if p["arch"] == "qwen3":
        from transformers import Qwen3Config

        return Qwen3Config(**common)
    from transformers import LlamaConfig

    return LlamaConfig(**common)


def _validate(p: dict[str, Any]) -> None:
    if p["arch"] not in ARCHS:
        raise ValueError(f"arch={p['arch']!r} is not supported; choose one of: {', '.join(ARCHS)}")
    if p["dtype"] not in DTYPES:
        raise ValueError(f"dtype={p['dtype']!r} is not supported; choose one of: {', '.join(DTYPES)}")
    for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "seed"):
        if not isinstance(p[name], int) or p[name] < (0 if name == "seed" else 1):
            raise ValueError(f"{name}={p[name]!r} must be a positive integer")
    if p["num_heads"] % p["num_kv_heads"]:
        raise ValueError(
            f"num_heads={p['num_heads']} must be a multiple of num_kv_heads={p['num_kv_heads']}"
        )
    if p["head_dim"] not in CPU_HEAD_SIZES:
        raise ValueError(
            f"head_dim={p['head_dim']!r} is not one vLLM's CPU attention supports; "
            f"choose one of: {', '.join(map(str, CPU_HEAD_SIZES))}"
        )
    if not isinstance(p["max_model_len"], int) or p["max_model_len"] < 16:
        raise ValueError(f"max_model_len={p['max_model_len']!r} must be an integer of at least 16")
    if not isinstance(p["vocab_size"], int) or p["vocab_size"] < 512:
        raise ValueError(f"vocab_size={p['vocab_size']!r} must be an integer of at least 512")
