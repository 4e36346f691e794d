"""Agentic benchmark, side by side: the same harness-like workload against kvyard and its peers,
on the same random-weight model and the same number of engines, in one run.

Systems (``--systems``, in this order by default):

* ``kvyard``          kvyard as designed: frontend (sanitizer, replay, token-exact history),
                      KV-aware router over ``--engines`` aggregated vLLM engines.
* ``kvyard-nosan``    the same with the sanitizer off (the billing line reaches the prompt).
* ``kvyard-rr``       the same with round-robin routing (``router.policy: round_robin``).
* ``kvyard-p2c``      the same with Ray Serve's power-of-two-choices (not run by default).
* ``vllm``            vLLM's own OpenAI server, one engine (``--enable-prefix-caching``).
* ``vllm-router``     ``--engines`` vLLM servers behind ``vllm-router --policy cache_aware``
                      (the ``bench`` extra installs the binary beside this Python).
* ``vllm-router-pinned`` the same with each vLLM server's model threads on a core of its own
                      (``VLLM_CPU_OMP_THREADS_BIND``), as kvyard binds its CPU engines: the
                      control that shows how much of kvyard's lead is that binding.
* ``ray-serve-llm``   Ray Serve LLM (``build_openai_app``) over ``--engines`` vLLM replicas with its
                      ``PrefixCacheAffinityRouter`` (``benchmarks/peers/ray_serve_llm.py``).
* ``dynamo``          NVIDIA Dynamo 1.6.1: its frontend with the KV router over ``--engines``
                      ``dynamo.vllm`` workers (``benchmarks/peers/dynamo.py``; its own venv, built
                      by ``benchmarks/peers/setup_dynamo.sh`` on first use).

Every engine runs the same vLLM with the same settings: float32, block size 32, prefix caching,
eager mode, 2 GiB of KV cache, the hermes tool parser and qwen3 reasoning parser for the peers
(kvyard parses in its frontend).

Every system gets the same workload (``kvyard bench workload harness``), the same client
(``kvyard bench run``, Chat Completions, or Anthropic Messages with ``--api messages``, live replies) and the same yardstick: the trace's ideal
reuse, computed from the prompts actually sent, rendered by the model's own chat template. The
report (``kvyard bench report``) has TTFT/ITL/E2E percentiles, cache reuse against the ideal,
ratios against ``--baseline``, and plots.

Model: a random-weight Qwen3-style model sized so that a cold prefill of the workload's shared
prefix takes over a second on this machine (``--shared-tokens`` sets the prefix size).

Run (small profile, minutes): ``python benchmarks/agentic.py --profile small --out benchmarks/results/agentic``
Full profile: ``python benchmarks/agentic.py --profile full --out benchmarks/results/agentic-full``
(hours on a 2-core machine; ``--resume`` carries on after an interruption, keeping the systems that
finished).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MODEL = dict(arch="qwen3", hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=512, seed=0)
PROFILES = {  # context: every system's max_model_len, room for the longest prompt plus its output
    "small": dict(sessions=6, concurrency=3, tasks=1, loops="2:3", system=5000, tools=3000, output=32, context=16384),
    "full": dict(sessions=24, concurrency=8, tasks=2, loops="2:5", system=8000, tools=4500, output=64, context=40960, budget_min=30),
}
"""system/tools: the generator's word-sized units; the model's tokenizer makes ~1.6 tokens of each.
The full profile's prompts run from ~20.4k tokens (first turns) to ~29k, the small one's from 13.6k
to 16.4k. budget_min: minutes after which a system gets no new requests (cache-blind systems prefill
every 20k-token prompt cold, hours here); the report says which ran out and how much was not sent."""
ALL = ["kvyard", "kvyard-nosan", "kvyard-rr", "ray-serve-llm", "vllm", "vllm-router", "vllm-router-pinned", "dynamo"]


def step(n: int, total: int, what: str) -> None:
    print(f"[agentic {n}/{total}] {what}", flush=True)


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise RuntimeError(f"{url} not ready within {timeout_s:.0f}s")


def free_port() -> int:
    from kvyard.kvtransfer.connector import free_port as fp

    return fp("127.0.0.1")


class Kvyard:
    """kvyard on a local Ray, aggregated engines, one app at a time."""

    def __init__(self, model: Path, engines: int, redis_url: str, max_model_len: int):
        self.model, self.engines, self.redis_url, self.max_model_len = model, engines, redis_url, max_model_len
        self.port = None

    def ensure_ray(self) -> None:
        import ray
        from ray import serve

        if not ray.is_initialized():
            ray.init(num_cpus=8, include_dashboard=False, logging_level="WARNING")
            self.port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": self.port})

    def start(self, name: str) -> str:
        from ray import serve

        from kvyard.deployments.builder import build_app

        self.ensure_ray()
        cfg = {
            "mode": "aggregated",
            "model": {"path": str(self.model), "served_name": "tiny", "max_model_len": self.max_model_len, "aliases": {"*": "tiny"}},
            "engine": {"cpu_kv_cache_gib": 2},
            "decode": {"replicas": self.engines, "num_cpus": 0.5},
            "frontend": {"num_cpus": 0.5},
            "redis_url": self.redis_url,
        }
        if name == "kvyard-nosan":
            cfg["sanitizer"] = {"default_rules": False}
        if name == "kvyard-rr":
            cfg["router"] = {"policy": "round_robin"}
        if name == "kvyard-p2c":
            cfg["router"] = {"policy": "serve_default"}
        serve.run(build_app(cfg), name=name, route_prefix=f"/{name}")
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self, name: str) -> None:
        from ray import serve

        serve.delete(name)

    def close(self) -> None:
        import ray
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()


def vllm_server(model: Path, port: int, log: Path, max_model_len: int, cores: str | None = None) -> subprocess.Popen:
    """``vllm serve``; ``cores`` binds its model threads (else vLLM's auto binding: the first core)."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", **({"VLLM_CPU_OMP_THREADS_BIND": cores} if cores else {})}
    argv = [PY, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name", "tiny",
            "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_model_len),
            "--enable-prefix-caching", "--enable-prompt-tokens-details", "--dtype", "float32", "--block-size", "32", "--enforce-eager",
            # the workload sends tools with tool_choice auto and Qwen3-style reasoning, as kvyard parses them
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--reasoning-parser", "qwen3"]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop_procs(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def bench_run(url: str, label: str, workload: Path, out: Path, model: Path, metric: str | None, api: str = "chat",
              budget_min: float | None = None) -> None:  # fmt: skip
    argv = [PY, "-m", "kvyard.cli", "bench", "run", "--url", url, "--api", api, "--workload", str(workload),
            "--out", str(out), "--label", label, "--model", "tiny", "--tokenizer", str(model)]  # fmt: skip
    if budget_min:
        argv += ["--budget", str(budget_min * 60)]
    if metric:
        argv += ["--metrics-url", f"{url}/metrics", "--metric", metric]
    subprocess.run(argv, check=True)


TTFT_AIM, REUSE_AIM = 0.5, 0.97
"""kvyard's TTFT p50 at most half of the best peer's; its reuse at least 97% of the trace's ideal."""


def aims(all_stats, ours: str = "kvyard") -> list[str]:
    """The report's "Aims" section: kvyard against the best peer (lowest TTFT p50 among the
    non-kvyard systems that answered), met or missed and by how much."""
    by_label = {s.label: s for s in all_stats}
    me = by_label.get(ours)
    if me is None or me.ttft_s[0] is None:
        return ["## Aims", "", f"`{ours}` has no results: nothing to compare.", ""]
    peers = [s for s in all_stats if not s.label.startswith("kvyard") and s.ttft_s[0] is not None]
    lines = ["## Aims", ""]
    if peers:
        best = min(peers, key=lambda s: s.ttft_s[0])
        ratio = me.ttft_s[0] / best.ttft_s[0]
        verdict = "met" if ratio <= TTFT_AIM else f"missed: {ratio / TTFT_AIM:.2f}x the aim"
        errors = f" ({best.errors} of {best.requests} requests failed)" if best.errors else ""
        lines.append(f"- TTFT p50: {ours} {me.ttft_s[0] * 1e3:.0f} ms, best peer `{best.label}`{errors} "
                     f"{best.ttft_s[0] * 1e3:.0f} ms: {ratio:.2f}x (aim ≤ {TTFT_AIM}x): **{verdict}**.")  # fmt: skip
    else:
        lines.append("- TTFT p50: no peer answered, so there is no comparison.")
    if me.reuse_of_ideal is None:
        lines.append("- Reuse: no ideal computed (run with a tokenizer).")
    else:
        verdict = "met" if me.reuse_of_ideal >= REUSE_AIM else f"missed by {REUSE_AIM - me.reuse_of_ideal:.1%} of the ideal"
        lines.append(f"- Reuse: {ours} {me.reuse_of_ideal:.1%} of the trace's ideal (aim ≥ {REUSE_AIM:.0%}): **{verdict}**.")
    return [*lines, ""]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="small")
    p.add_argument("--systems", default=",".join(ALL))
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--baseline", default="vllm")
    p.add_argument("--api", choices=["chat", "messages"], default="chat",
                   help="messages: Anthropic Messages, as Claude Code sends it (kvyard, vllm and dynamo serve it)")  # fmt: skip
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "agentic")
    p.add_argument("--models", type=Path, default=Path.home() / ".cache" / "kvyard" / "bench-models")
    p.add_argument("--budget-min", type=float, help="per system: no new requests after this many minutes (default: the profile's)")
    p.add_argument("--resume", action="store_true",
                   help="keep the results of systems that already finished in --out (each is written once complete) and run the rest")  # fmt: skip
    p.add_argument("--dynamo-venv", type=Path, default=ROOT / ".bench" / "dynamo-venv", help="built on first use")
    args = p.parse_args()
    prof = PROFILES[args.profile]
    systems = [s for s in args.systems.split(",") if s]
    total = len(systems) + 3
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "raw"
    raw.mkdir(exist_ok=True)

    from kvyard.models import build_model
    from kvyard.redis_server import RedisServer

    step(1, total, f"model and workload ({args.profile} profile)")
    context = prof["context"]
    budget_min = args.budget_min if args.budget_min is not None else prof.get("budget_min")
    model = build_model("random", args.models / f"agentic-qwen3-{context // 1024}k", max_model_len=context, **MODEL)
    workload = raw / "workload.jsonl"
    subprocess.run([PY, "-m", "kvyard.cli", "bench", "workload", "harness", "--out", str(workload),
                    "--sessions", str(prof["sessions"]), "--concurrency", str(prof["concurrency"]), "--tasks", str(prof["tasks"]),
                    "--tool-loops", prof["loops"], "--system-tokens", str(prof["system"]), "--tools-tokens", str(prof["tools"]),
                    "--output-tokens", str(prof["output"])], check=True)  # fmt: skip
    redis = RedisServer().start()
    kv = Kvyard(model, args.engines, redis.url, context)
    from kvyard.deployments.cpu_cores import usable_cores

    usable = usable_cores()
    skipped: dict[str, str] = {}
    try:
        for i, name in enumerate(systems, start=2):
            if args.resume and (raw / f"{name}.jsonl").exists():
                step(i, total, f"{name}: finished in an earlier run, kept ({raw / f'{name}.jsonl'})")
                continue
            step(i, total, f"{name}: starting")
            started = time.monotonic()
            procs: list[subprocess.Popen] = []
            cleanups: list = []
            try:
                if name.startswith("kvyard"):
                    url = kv.start(name)
                    metric = 'kvyard_prefix_cache_hit_tokens_total{pool="decode"}'
                elif name == "ray-serve-llm":
                    from peers.ray_serve_llm import RayServeLLM

                    kv.ensure_ray()  # the same Ray and Serve proxy as the kvyard systems
                    peer = RayServeLLM(model, args.engines, port=kv.port, max_model_len=context)
                    cleanups.append(peer.stop)
                    url = peer.start()
                    metric = None
                elif name == "dynamo":
                    from peers.dynamo import Dynamo

                    peer = Dynamo(model, args.engines, args.dynamo_venv, raw, context, free_port)
                    cleanups.append(peer.stop)
                    url = peer.start()
                    metric = None
                elif name == "vllm":
                    port = free_port()
                    procs.append(vllm_server(model, port, raw / f"{name}.log", context))
                    url = f"http://127.0.0.1:{port}"
                    wait_ready(url, 600, procs[0])
                    metric = None
                elif name in ("vllm-router", "vllm-router-pinned"):
                    beside = Path(sys.executable).with_name("vllm-router")  # the bench extra installs it in the venv
                    binary = str(beside) if beside.exists() else shutil.which("vllm-router")
                    if binary is None:
                        skipped[name] = "the vllm-router binary is not on PATH (pip install vllm-router)"
                        continue
                    workers = []
                    for k in range(args.engines):
                        port = free_port()
                        cores = str(usable[k % len(usable)]) if name == "vllm-router-pinned" else None
                        procs.append(vllm_server(model, port, raw / f"{name}-engine{k}.log", context, cores))
                        workers.append(f"http://127.0.0.1:{port}")
                    for w, proc in zip(workers, procs):
                        wait_ready(w, 600, proc)
                    port = free_port()
                    procs.append(subprocess.Popen([binary, "--worker-urls", *workers, "--policy", "cache_aware", "--host", "127.0.0.1",
                                                   "--port", str(port)], stdout=(raw / f"{name}.log").open("w"),
                                                  stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
                    url = f"http://127.0.0.1:{port}"
                    wait_ready(url, 120, procs[-1])
                    metric = None
                else:
                    skipped[name] = "unknown system"
                    continue
                print(f"  {name} ready in {time.monotonic() - started:.0f}s at {url}", flush=True)
                bench_run(url, name, workload, raw / f"{name}.jsonl", model, metric, args.api, budget_min)
            except Exception as exc:  # one system failing to start must not lose the others' results
                skipped[name] = f"{type(exc).__name__}: {exc}"
                print(f"  {name} failed: {skipped[name]}", flush=True)
            finally:
                if name.startswith("kvyard"):
                    try:
                        kv.stop(name)
                    except Exception:
                        pass
                for cleanup in cleanups:
                    try:
                        cleanup()
                    except Exception as exc:
                        print(f"  {name}: cleanup failed: {exc}", flush=True)
                stop_procs(procs)
    finally:
        kv.close()
        redis.stop()
    step(total, total, "report")
    from kvyard.bench.report import write_report

    results = [raw / f"{s}.jsonl" for s in systems if (raw / f"{s}.jsonl").exists()]
    command = f"python benchmarks/agentic.py --profile {args.profile} --systems {args.systems} --engines {args.engines} --api {args.api} --out {args.out}"
    if args.budget_min is not None:
        command += f" --budget-min {args.budget_min:g}"
    report = write_report(results, args.out, baseline=args.baseline if args.baseline in systems else None, command=command)
    from kvyard.bench.report import group, load, stats

    with report.open("a") as f:
        f.write("\n" + "\n".join(aims([stats(label, rs) for label, rs in group(load(results)).items()])))
    if skipped:
        with report.open("a") as f:
            f.write("\n## Systems that did not run\n\n" + "".join(f"- `{k}`: {v}\n" for k, v in skipped.items()))
    print(report.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
