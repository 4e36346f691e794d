"""NVIDIA Dynamo 1.6.1 as a benchmark peer: its OpenAI frontend with the KV router
(``--router-mode kv``) over ``engines`` ``dynamo.vllm`` workers, on loopback, CPU only.

No etcd and no NATS: discovery through a file store (``DYN_DISCOVERY_BACKEND=file``), requests over
TCP and KV events over ZMQ (Dynamo's defaults). Each worker runs the same vLLM (0.32, CPU) with the
same settings as the other peers (float32, block size 32, eager, prefix caching, 2 GiB of KV cache)
and publishes its KV events on its own ZMQ port, which the router follows. Tool calls and reasoning
are parsed by Dynamo's own hermes and qwen3 parsers. The frontend also serves Anthropic Messages
(``--enable-anthropic-api``, where it strips Claude Code's billing preamble by default). The venv comes from ``setup_dynamo.sh`` (it says
what differs from Dynamo's supported vLLM 0.31 + CUDA setup).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

SETUP = Path(__file__).with_name("setup_dynamo.sh")
LOOPBACK = ("DYN_TCP_RPC_HOST", "DYN_EVENT_PLANE_HOST", "DYN_TCP_RESPONSE_STREAM_HOST", "DYN_SYSTEM_HOST")


class Dynamo:
    """Dynamo's frontend (KV router) and ``engines`` vLLM workers as subprocesses."""

    def __init__(self, model: Path, engines: int, venv: Path, logs: Path, max_model_len: int, free_port):
        self.model, self.engines, self.venv, self.logs = Path(model), engines, Path(venv), Path(logs)
        self.max_model_len, self.free_port = max_model_len, free_port
        self.procs: list[subprocess.Popen] = []
        self.store = Path(tempfile.mkdtemp(prefix="kvyard-dynamo-kv-"))

    def setup(self) -> None:
        subprocess.run(["bash", str(SETUP), str(self.venv)], check=True)

    def _spawn(self, argv: list[str], log: str, env: dict[str, str]) -> subprocess.Popen:
        out = (self.logs / log).open("w")
        proc = subprocess.Popen([str(self.venv / "bin" / "python"), *argv], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, timeout_s: float = 900) -> str:
        self.setup()
        env = {**os.environ, "DYN_DISCOVERY_BACKEND": "file", "DYN_FILE_KV": str(self.store), "DYN_REQUEST_PLANE": "tcp",
               "DYN_EVENT_PLANE": "zmq", "VLLM_CPU_KVCACHE_SPACE": "2", **dict.fromkeys(LOOPBACK, "127.0.0.1")}  # fmt: skip
        env.pop("PYTHONPATH", None)
        port = self.free_port()
        self._spawn(["-m", "dynamo.frontend", "--http-host", "127.0.0.1", "--http-port", str(port), "--router-mode", "kv", "--enable-anthropic-api"], "dynamo-frontend.log", env)
        for k in range(self.engines):
            events = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{self.free_port()}"}
            self._spawn(["-m", "dynamo.vllm", "--model", str(self.model), "--served-model-name", "tiny",
                         "--enforce-eager", "--dtype", "float32", "--block-size", "32", "--max-model-len", str(self.max_model_len),
                         "--enable-prefix-caching", "--kv-events-config", json.dumps(events),
                         "--dyn-tool-call-parser", "hermes", "--dyn-reasoning-parser", "qwen3"],
                        f"dynamo-worker{k}.log", {**env, "DYN_SYSTEM_PORT": str(self.free_port())})  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        self._wait_for_workers(url, timeout_s)
        return url

    def _wait_for_workers(self, url: str, timeout_s: float) -> None:
        """Ready when the model is listed and the frontend's log shows every worker added."""
        deadline = time.monotonic() + timeout_s
        log = self.logs / "dynamo-frontend.log"
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a Dynamo process exited with {dead[0].returncode}; see {self.logs}/dynamo-*.log")
            try:
                listed = httpx.get(f"{url}/v1/models", timeout=5).json().get("data", [])
            except (httpx.HTTPError, ValueError):
                listed = []
            if listed and log.read_text(errors="replace").count("Adding worker") >= self.engines:
                return
            time.sleep(2)
        raise RuntimeError(f"Dynamo at {url}: not all {self.engines} workers ready within {timeout_s:.0f}s")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(self.store, ignore_errors=True)
