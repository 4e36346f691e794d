"""``free_port``: a listener port outside the kernel's ephemeral range, never one in use."""

from __future__ import annotations

import random
import socket

from kvyard.kvtransfer import connector
from kvyard.kvtransfer.connector import LISTEN_PORTS, free_port


def test_ports_are_free_and_below_the_ephemeral_range():
    low, _ = connector._ephemeral_range()
    ports = {free_port("127.0.0.1") for _ in range(50)}
    assert all(LISTEN_PORTS[0] <= p < low for p in ports)
    assert len(ports) > 40  # random, not the same port every time
    for p in ports:
        assert connector._binds("127.0.0.1", p)


def test_a_port_in_use_is_skipped():
    seed = 7
    first = free_port("127.0.0.1", rng=random.Random(seed))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", first))
        held.listen()
        again = free_port("127.0.0.1", rng=random.Random(seed))  # the same draws: first is taken
        assert again != first


def test_falls_back_to_the_kernel_when_no_random_port_binds(monkeypatch):
    monkeypatch.setattr(connector, "_binds", lambda host, port: False)
    port = free_port("127.0.0.1", tries=3)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))  # free, from bind(0)
