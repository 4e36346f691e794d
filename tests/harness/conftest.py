"""End-to-end fixtures: the real harness CLIs from npm against a live kvyard.

* ``harness_bins``: ``scripts/install_harnesses.sh`` (idempotent, under a second when present)
  puts pinned ``claude`` and ``codex`` into ``.harnesses/``; when it cannot (no npm registry),
  the tests fail with the script's output instead of skipping.
* ``harness_url``: one more Serve app, ``/harness``, on the session's Ray/Serve (``serve_url``
  and ``http`` come from tests/conftest.py):
  aggregated (one engine), every model name aliased (``"*"``) to a 1-layer random Qwen3 with a
  64k context. Claude Code's first request is ~22k tokens with this model's 4096-id tokenizer
  (system prompt + tool schemas), its no-deferred-tools fallback ~36k; Codex's is ~13k. Prefill
  of 24k / 36k tokens takes ~4.5 s / ~9 s on 2 cores.
* ``harness_model``: a random model never stops on its own (``<|im_end|>`` has probability
  1/4096 per step), and a turn cut at the output limit is a failed turn to both CLIs (Codex:
  "Incomplete response returned, reason: max_output_tokens"). So the random weights get one
  edit: hidden dimension 0 is held constant (embedding column 0 = 1, nothing writes to it
  after), and only ``<|im_end|>``'s ``lm_head`` row reads it, which makes the end token's
  probability ``STOP_PROBABILITY`` at every step whatever the context: replies are random
  tokens, ~10 long on average.
* ``harness_proxy``: a loopback HTTP server per test that plays two roles. Requests in origin
  form are forwarded to kvyard and recorded (request body, status, response body), so a failing
  test prints what the CLI sent and what kvyard answered. Requests in proxy form (``CONNECT
  host:443`` or an absolute URL) are the CLI trying to reach the internet: HTTPS_PROXY points
  here, so they are recorded and refused with 403 at once, never left to hang on a sandbox
  without network. ``NO_PROXY`` keeps loopback direct.
"""

from __future__ import annotations

import http.client as httpclient
import json
import math
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import MODEL_CACHE
from tests.engine_support import app_config, metric

# serve_url (the session's Ray + Serve) comes from tests/conftest.py, shared with the engine tests.

ROOT = Path(__file__).resolve().parents[2]
HARNESS_BIN = ROOT / os.environ.get("KVYARD_HARNESSES", ".harnesses") / "node_modules" / ".bin"
APP = "harness"

# Smallest model that takes Claude Code's prompt: prefill is O(layers * heads * head_dim * n^2),
# so one layer, one head of the smallest CPU head size; max_model_len is what matters.
HARNESS_MODEL = {
    "arch": "qwen3", "hidden_size": 64, "num_layers": 1, "num_heads": 1, "num_kv_heads": 1, "head_dim": 32,
    "intermediate_size": 64, "max_model_len": 65536, "seed": 0,
}  # fmt: skip
STOP_PROBABILITY = 0.1
CLI_TIMEOUT_S = 600

LOOPBACK = "127.0.0.1,localhost,::1"
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
}  # fmt: skip
RECORD_LIMIT = 4 << 20


# --- the CLIs --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def harness_bins() -> Path:
    """``.harnesses/node_modules/.bin`` with the pinned ``claude`` and ``codex``."""
    script = ROOT / "scripts" / "install_harnesses.sh"
    try:
        done = subprocess.run(["bash", str(script)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script} did not finish in 900 s (npm registry slow or unreachable?)\n{exc.stdout}\n{exc.stderr}")
    if done.returncode != 0:
        pytest.fail(
            f"{script} failed (exit {done.returncode}): the harness CLIs come from the npm registry, "
            f"so these tests need it once.\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
    print(done.stdout.strip().splitlines()[-1])
    return HARNESS_BIN


# --- the kvyard app ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def harness_model() -> Path:
    from kvyard.models import build_model

    base = build_model("random", MODEL_CACHE / "harness-qwen3-64k", **HARNESS_MODEL)
    return stopping_model(base, MODEL_CACHE / f"harness-qwen3-64k-stop{STOP_PROBABILITY:g}", STOP_PROBABILITY)


def stopping_model(base: Path, out: Path, stop_probability: float) -> Path:
    """A copy of the random model ``base`` that ends each reply with ``stop_probability`` per token."""
    marker = out / "kvyard-harness-stop.json"
    if marker.exists():
        return out
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp)
    eos = AutoTokenizer.from_pretrained(tmp).convert_tokens_to_ids("<|im_end|>")
    weights = load_file(tmp / "model.safetensors")
    embed, head = weights["model.embed_tokens.weight"], weights["lm_head.weight"]
    vocab, hidden = head.shape
    with torch.no_grad():
        embed[:, 0] = 1.0  # dominates the ~0.02-sized other entries
        for name, tensor in weights.items():
            if name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
                tensor[0, :] = 0.0  # no layer writes to dimension 0: it stays 1 before the final norm
        # After the final RMSNorm dimension 0 is ~sqrt(hidden); pick the end token's logit so that
        # e^L / (e^L + vocab - 1) = stop_probability (the other logits are ~0: random 0.02 weights).
        logit = math.log(stop_probability / (1 - stop_probability) * (vocab - 1))
        head[:, 0] = 0.0
        head[eos, 0] = logit / math.sqrt(hidden)
    save_file(weights, tmp / "model.safetensors", metadata={"format": "pt"})
    (tmp / marker.name).write_text(json.dumps({"base": str(base), "stop_probability": stop_probability, "eos_id": eos}))
    try:
        os.rename(tmp, out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def harness_url(serve_url, harness_model) -> str:
    """``<serve>/harness``: aggregated kvyard app that answers any model name."""
    from kvyard.deployments.builder import build_app
    from ray import serve

    cfg = app_config(harness_model, "aggregated")
    cfg["model"].update(max_model_len=HARNESS_MODEL["max_model_len"], aliases={"*": "tiny"})
    started = time.monotonic()
    serve.run(build_app(cfg), name=APP, route_prefix=f"/{APP}")
    print(f"/{APP} app up in {time.monotonic() - started:.0f}s")
    yield f"{serve_url}/{APP}"
    serve.delete(APP)


def requests_total(http_client, api: str, status: str = "200") -> float:
    text = http_client.get(f"/{APP}/metrics").raise_for_status().text
    return metric(text, "kvyard_requests_total", api=api, status=status)


# --- the recording proxy ---------------------------------------------------------------------


@dataclass
class Exchange:
    """One request the CLI sent to kvyard, and kvyard's answer."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    response: bytearray = field(default_factory=bytearray)
    seconds: float = 0.0
    error: str | None = None

    def json(self) -> dict:
        try:
            value = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def text(self) -> str:
        return bytes(self.response).decode(errors="replace")

    def stream_errors(self) -> list[str]:
        """Error events inside a 200 SSE stream (Anthropic ``event: error``, Responses ``response.failed``/``error``)."""
        found = []
        for line in self.text().splitlines():
            if line.startswith("data:") and ('"type":"error"' in line.replace(" ", "") or "response.failed" in line):
                found.append(line[5:].strip()[:2000])
        return found

    def failed(self) -> bool:
        return self.error is not None or self.status is None or self.status >= 400 or bool(self.stream_errors())

    def summary(self) -> str:
        b = self.json()
        tools = b.get("tools") or []
        bits = [
            f"{self.method} {self.path} -> {self.status} in {self.seconds:.1f}s",
            f"model={b.get('model')!r}",
            f"stream={b.get('stream')}",
            f"tools={len(tools)}",
            f"max_tokens={b.get('max_tokens', b.get('max_output_tokens'))}",
            f"body={len(self.body)}B",
        ]
        if self.error:
            bits.append(f"proxy error: {self.error}")
        return " ".join(bits)

    def describe_failure(self) -> str:
        head = self.text()[:3000] if (self.status or 0) >= 400 else "\n".join(self.stream_errors())
        return f"{self.summary()}\n  kvyard answered: {head}\n  request body (first 3000 bytes): {self.body[:3000].decode(errors='replace')}"


class HarnessProxy:
    """Loopback reverse proxy to kvyard that records exchanges and refuses internet egress."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.exchanges: list[Exchange] = []
        self.egress: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_CONNECT(self):
                proxy.egress.append(f"CONNECT {self.path}")
                self._refuse()

            def _refuse(self):
                msg = b"kvyard harness test: no internet egress\n"
                self.send_response(403)
                self.send_header("content-length", str(len(msg)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(msg)
                self.close_connection = True

            def _read_body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("content-length") or 0)
                return self.rfile.read(n) if n else b""

            def _forward(self):
                if self.path.startswith(("http://", "https://")):  # proxy-form: plain-HTTP egress
                    self._read_body()
                    proxy.egress.append(f"{self.command} {self.path}")
                    return self._refuse()
                ex = Exchange(self.command, self.path, dict(self.headers.items()), self._read_body())
                proxy.exchanges.append(ex)
                started = time.monotonic()
                conn = httpclient.HTTPConnection(*proxy.upstream, timeout=CLI_TIMEOUT_S)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    headers["accept-encoding"] = "identity"
                    conn.request(self.command, self.path, body=ex.body, headers=headers)
                    resp = conn.getresponse()
                    ex.status = resp.status
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in HOP_BY_HOP:
                            self.send_header(k, v)
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    while chunk := resp.read1(65536):
                        if len(ex.response) < RECORD_LIMIT:
                            ex.response += chunk
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (OSError, httpclient.HTTPException) as exc:
                    ex.error = f"{type(exc).__name__}: {exc}"
                    self.close_connection = True
                finally:
                    ex.seconds = time.monotonic() - started
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="harness-proxy", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def api_exchanges(self, endpoint: str) -> list[Exchange]:
        return [e for e in self.exchanges if urlsplit(e.path).path.endswith(endpoint)]

    def report(self) -> str:
        lines = [f"requests the CLI sent to kvyard ({len(self.exchanges)}):"]
        lines += [f"  {e.summary()}" for e in self.exchanges] or ["  (none)"]
        lines.append(f"internet egress attempts refused by the test proxy ({len(self.egress)}):")
        lines += [f"  {e}" for e in self.egress] or ["  (none)"]
        return "\n".join(lines)


@pytest.fixture
def harness_proxy(serve_url) -> HarnessProxy:
    proxy = HarnessProxy(serve_url)
    yield proxy
    proxy.close()


# --- running a CLI ---------------------------------------------------------------------------


def isolated_env(home: Path, proxy: HarnessProxy, **extra: str) -> dict[str, str]:
    """A minimal environment: fresh HOME, node on PATH, every internet request through the refusing proxy."""
    node = shutil.which("node")
    path = os.pathsep.join(dict.fromkeys(p for p in (os.path.dirname(node) if node else None, "/usr/local/bin", "/usr/bin", "/bin") if p))
    env = {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1", "TMPDIR": str(home)}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy.url
    env["NO_PROXY"] = env["no_proxy"] = LOOPBACK
    env.update(extra)
    return env


@dataclass
class CliRun:
    argv: list[str]
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str
    seconds: float

    def report(self) -> str:
        rc = "timed out" if self.returncode is None else f"exit {self.returncode}"
        return (
            f"$ {' '.join(self.argv)}\n{rc} after {self.seconds:.1f}s\n"
            f"--- stdout (last 6000 chars)\n{self.stdout[-6000:]}\n--- stderr (last 6000 chars)\n{self.stderr[-6000:]}"
        )


def run_cli(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = CLI_TIMEOUT_S) -> CliRun:
    started = time.monotonic()
    try:
        done = subprocess.run(argv, check=False, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        return CliRun(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return CliRun(argv, None, out, err, time.monotonic() - started)


def diagnose(run: CliRun, proxy: HarnessProxy, endpoint: str, api: str) -> str | None:
    """Why the turn did not go through kvyard cleanly, most specific reason first; None if it did."""
    failed = [e for e in proxy.exchanges if e.failed()]
    if failed:
        return (
            f"kvyard answered {len(failed)} of the CLI's {len(proxy.exchanges)} requests with an error "
            f"(a kvyard protocol gap, or a request kvyard must learn to accept):\n"
            + "\n".join(e.describe_failure() for e in failed)
        )
    if not proxy.api_exchanges(endpoint):
        why = "it tried to reach the internet instead (refused by the test proxy)" if proxy.egress else "it made no HTTP request at all"
        return f"the CLI never called {endpoint} on kvyard: {why}; this is outside kvyard, see the CLI's output"
    if run.returncode is None:
        return f"the CLI did not finish within {CLI_TIMEOUT_S}s although kvyard answered every request it sent"
    return None
