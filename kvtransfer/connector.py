"""Per-role NIXL connector settings for vLLM engines.

Each engine replica gets ``KVTransferConfig(kv_connector="NixlConnector", kv_role=…)`` with the
buffer device matching the engine device, and its own NIXL side-channel port (vLLM reads
``VLLM_NIXL_SIDE_CHANNEL_PORT``/``_HOST`` from the environment when the engine is created).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

Role = Literal["prefill", "decode", "aggregated"]

_KV_ROLE = {"prefill": "kv_producer", "decode": "kv_consumer"}


def kv_transfer_config(role: Role, device: Literal["cpu", "cuda"]) -> dict[str, Any] | None:
    """The ``kv_transfer_config`` dict for an engine of this role; None for an aggregated engine."""
    if role == "aggregated":
        return None
    return {
        "kv_connector": "NixlConnector",
        "kv_role": _KV_ROLE[role],
        "kv_buffer_device": device,
    }


def free_port(host: str = "0.0.0.0") -> int:
    """A TCP port the OS says is free now (used once per replica for the NIXL side channel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def set_side_channel_env(host: str, port: int | None = None) -> int:
    """Give this process its own NIXL side channel before its engine is created; returns the port."""
    port = port or free_port()
    os.environ["VLLM_NIXL_SIDE_CHANNEL_HOST"] = host
    os.environ["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(port)
    return port
