"""Per-role NIXL connector settings for vLLM engines.

Each engine replica gets ``KVTransferConfig(kv_connector="NixlConnector", kv_role=…)`` with the
buffer device matching the engine device, and its own NIXL side-channel port (vLLM reads
``VLLM_NIXL_SIDE_CHANNEL_PORT``/``_HOST`` from the environment when the engine is created).
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path
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


LISTEN_PORTS = (10000, 32767)
"""Where ``free_port`` looks first: below Linux's default ephemeral range (32768-60999)."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _binds(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "0.0.0.0", rng: random.Random | None = None, tries: int = 64) -> int:
    """A TCP port free now, for a listener the engine binds later (NIXL side channel, KV events).

    The port is picked at random outside the kernel's ephemeral range: a port the kernel handed
    out with ``bind(0)`` can be handed to any outgoing connection (Ray opens many) or to another
    replica's ``bind(0)`` before the engine binds it; a random port below the range is only taken
    by another listener choosing the same one. Falls back to ``bind(0)``.
    """
    rng = rng or random.SystemRandom()
    low, high = LISTEN_PORTS
    ephemeral_low, ephemeral_high = _ephemeral_range()
    for _ in range(tries):
        port = rng.randint(low, high)
        if not ephemeral_low <= port <= ephemeral_high and _binds(host, port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def set_side_channel_env(host: str, port: int | None = None) -> int:
    """Give this process its own NIXL side channel before its engine is created; returns the port."""
    port = port or free_port()
    os.environ["VLLM_NIXL_SIDE_CHANNEL_HOST"] = host
    os.environ["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(port)
    return port
