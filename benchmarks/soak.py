"""Soak: a bounded, steady agent-like load on a loopback kvyard, watching for errors and leaks.

Starts Ray on this machine (one node), a real redis-server, and kvyard in P/D mode (1 prefill +
1 decode replica of a random-weight Qwen3-style model, one frontend, KV-aware routing). Then
``--sessions`` concurrent sessions run multi-turn conversations for ``--minutes``: each turn
appends to a shared system prompt and the session's history, and goes through one of the three
APIs in turn (Chat Completions, Anthropic Messages, Responses), streaming or not; one turn in
``--disconnect-every`` is a stream the client abandons after its first event (the engine must
abort it). Every ``--sample-s`` seconds it records the resident memory (RSS) of the frontend and
engine replica processes (and their engine-core children), requests in flight at the frontend and
in the engines, and completed/failed requests.

Pass criteria, checked at the end and printed: zero failed requests; after the load stops, no
request in flight in the frontend or the engines; RSS at the end within ``--max-growth`` of RSS
after the warm-up (the first ``--warmup-min`` minutes).

Run: ``python benchmarks/soak.py --minutes 10 --sessions 32 --output benchmarks/results/soak.md``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kvyard.bench.prom import select

WORDS = "alpha river stone cloud seven orbit maple quiet ember violet copper lantern harbor meadow signal".split()
GAUGES = ("kvyard_in_flight_requests", "kvyard_engine_in_flight_requests", "kvyard_engine_aborted_total")
MODEL = dict(arch="qwen3", hidden_size=128, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=256, max_model_len=4096, seed=0)


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    abandoned: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.failed += 1
        if len(self.errors) < 20:
            self.errors.append(what[:300])


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def body_for(api: str, system: str, history: list[dict], stream: bool, max_tokens: int) -> tuple[str, dict]:
    if api == "chat":
        return "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "system", "content": system}, *history],
                                        "max_tokens": max_tokens, "stream": stream}  # fmt: skip
    if api == "messages":
        return "/v1/messages", {"model": "tiny", "system": system, "messages": history, "max_tokens": max_tokens, "stream": stream}
    items = [{"type": "message", "role": m["role"], "content": m["content"]} for m in history]
    return "/v1/responses", {"model": "tiny", "instructions": system, "input": items, "max_output_tokens": max_tokens,
                             "stream": stream, "store": False}  # fmt: skip


def stream_error(data: str) -> bool:
    """An error event in any of the three stream grammars (chat ``{"error": …}``, Anthropic
    ``{"type": "error"}``, Responses ``error`` / ``response.failed``)."""
    try:
        event = json.loads(data)
    except ValueError:
        return False  # [DONE]
    return isinstance(event, dict) and (event.get("error") is not None and "choices" not in event and "response" not in event
                                        or event.get("type") in ("error", "response.failed"))  # fmt: skip


def reply_text(api: str, data: dict) -> str:
    if api == "chat":
        return data["choices"][0]["message"].get("content") or "ok"
    if api == "messages":
        return "".join(b.get("text", "") for b in data["content"] if b["type"] == "text") or "ok"
    return "".join(c.get("text", "") for o in data["output"] if o["type"] == "message" for c in o["content"]) or "ok"


async def session(client: httpx.AsyncClient, sid: int, system: str, deadline: float, tally: Tally, disconnect_every: int) -> None:
    rng = random.Random(sid)
    history: list[dict] = []
    turn = 0
    while time.monotonic() < deadline:
        api = ("chat", "messages", "responses")[(sid + turn) % 3]
        history.append({"role": "user", "content": words(rng, rng.randint(10, 40))})
        stream = turn % 2 == 1
        abandon = stream and disconnect_every > 0 and rng.randrange(disconnect_every) == 0
        path, body = body_for(api, system, history, stream, rng.randint(8, 48))
        headers = {"x-session-id": f"soak-{sid}"}
        try:
            if stream:
                async with client.stream("POST", path, json=body, headers=headers) as resp:
                    if resp.status_code != 200:
                        tally.fail(f"{api} stream {resp.status_code}: {(await resp.aread())[:200]!r}")
                    else:
                        async for line in resp.aiter_lines():
                            if abandon and line.startswith("data:"):
                                break
                            if line.startswith("data:") and stream_error(line[5:]):
                                tally.fail(f"{api} stream error event: {line[:200]}")
                        if abandon:
                            tally.abandoned += 1
                        else:
                            tally.ok += 1
                history.append({"role": "assistant", "content": "ok"})
            else:
                resp = await client.post(path, json=body, headers=headers)
                if resp.status_code != 200:
                    tally.fail(f"{api} {resp.status_code}: {resp.text[:200]}")
                    history.append({"role": "assistant", "content": "ok"})
                else:
                    tally.ok += 1
                    history.append({"role": "assistant", "content": reply_text(api, resp.json())})
        except httpx.HTTPError as exc:
            tally.fail(f"{api} transport: {exc!r}")
        if len(history) > 16:  # compaction: start over from the system prompt
            history = []
        turn += 1


def replica_pids(app: str = "soak") -> dict[str, list[int]]:
    """PIDs of the Serve replica processes by deployment (Ray titles them
    ``ray::ServeReplica:APP:DEPLOYMENT``), with their children (the engine cores)."""
    import psutil

    out: dict[str, list[int]] = {}
    for proc in psutil.process_iter(["cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        for deployment in ("Frontend", "Prefill", "Decode"):
            if f"ServeReplica:{app}:{deployment}" in title:
                try:
                    out.setdefault(deployment, []).extend([proc.pid] + [c.pid for c in proc.children(recursive=True)])
                except psutil.NoSuchProcess:
                    pass
    return out


def rss_mib(pids: list[int]) -> float:
    import psutil

    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


async def sampler(client: httpx.AsyncClient, pids: dict[str, list[int]], every_s: float, stop: asyncio.Event, tally: Tally, rows: list[dict], t0: float):
    while True:
        counts = select((await client.get("/metrics")).text, GAUGES)
        rows.append({
            "t_s": round(time.monotonic() - t0, 1),
            **{f"rss_{k.lower()}_mib": round(rss_mib(v), 1) for k, v in pids.items()},
            "frontend_in_flight": counts.get("kvyard_in_flight_requests", 0.0),
            "engine_in_flight": counts.get("kvyard_engine_in_flight_requests", 0.0),
            "engine_aborted": counts.get("kvyard_engine_aborted_total", 0.0),
            "ok": tally.ok, "failed": tally.failed, "abandoned": tally.abandoned,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        if stop.is_set():
            return  # the last row is taken after the load stopped and in-flight requests settled
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass


async def run_load(url: str, args, pids) -> tuple[Tally, list[dict]]:
    tally, rows = Tally(), []
    rng = random.Random(0)
    system = "You are a coding agent. " + words(rng, 600)  # a shared ~1k-token prefix
    limits = httpx.Limits(max_connections=args.sessions + 8)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        t0 = time.monotonic()
        stop = asyncio.Event()
        watch = asyncio.create_task(sampler(client, pids, args.sample_s, stop, tally, rows, t0))
        deadline = t0 + args.minutes * 60
        await asyncio.gather(*(session(client, i, system, deadline, tally, args.disconnect_every) for i in range(args.sessions)))
        await asyncio.sleep(args.settle_s)  # let aborted requests drain
        stop.set()
        await watch
    return tally, rows


def deploy(args) -> tuple[str, object]:
    import ray
    from ray import serve

    from kvyard.deployments.builder import build_app
    from kvyard.kvtransfer.connector import free_port
    from kvyard.models import build_model
    from kvyard.redis_server import RedisServer

    model = build_model("random", Path(args.models) / "soak-qwen3", **MODEL)
    redis = RedisServer().start()
    print("[soak 1/3] starting Ray and kvyard (P/D, 1+1 engines); engines take a minute or two", flush=True)
    ray.init(num_cpus=max(8, os.cpu_count() or 2), include_dashboard=False, logging_level="WARNING")
    port = free_port("127.0.0.1")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    cfg = {
        "mode": "disaggregated",
        "model": {"path": str(model), "served_name": "tiny", "max_model_len": MODEL["max_model_len"]},
        "engine": {"cpu_kv_cache_gib": 2, "max_num_seqs": 64},
        "prefill": {"num_cpus": 0.5},
        "decode": {"num_cpus": 0.5},
        "frontend": {"num_cpus": 0.5},
        "redis_url": redis.url,
    }
    started = time.monotonic()
    serve.run(build_app(cfg), name="soak", route_prefix="/")
    print(f"[soak 1/3] kvyard up in {time.monotonic() - started:.0f}s on port {port}", flush=True)
    return f"http://127.0.0.1:{port}", redis


def report(args, tally: Tally, rows: list[dict]) -> tuple[str, bool]:
    warm = [r for r in rows if r["t_s"] >= args.warmup_min * 60] or rows
    first, last = warm[0], rows[-1]
    rss_keys = [k for k in last if k.startswith("rss_")]
    growth = {k: (last[k] - first[k]) / first[k] if first.get(k) else 0.0 for k in rss_keys}
    checks = {
        "zero failed requests": tally.failed == 0,
        "nothing in flight after the load (frontend)": last["frontend_in_flight"] == 0,
        "nothing in flight after the load (engines)": last["engine_in_flight"] == 0,
        **{f"{k} growth after warm-up <= {args.max_growth:.0%}": g <= args.max_growth for k, g in growth.items()},
    }
    lines = [
        "# Soak",
        "",
        "```",
        f"python benchmarks/soak.py --minutes {args.minutes:g} --sessions {args.sessions} --output {args.output}",
        "```",
        "",
        f"{args.sessions} concurrent sessions for {args.minutes:g} min against kvyard P/D (1 prefill + 1 decode "
        f"replica of a random-weight Qwen3-style model, {MODEL['num_layers']} layers, hidden {MODEL['hidden_size']}), "
        f"mixed APIs (chat / messages / responses), every other turn streamed, about one stream in "
        f"{args.disconnect_every} abandoned after its first event. Python {platform.python_version()} on "
        f"{platform.machine()}, {os.cpu_count()} CPUs.",
        "",
        f"Requests: {tally.ok} completed, {tally.abandoned} abandoned by the client on purpose, **{tally.failed} failed**; "
        f"engine aborts counted: {last['engine_aborted']:.0f}.",
        "",
        "| check | result |",
        "| --- | --- |",
        *[f"| {name} | {'pass' if ok else '**FAIL**'} |" for name, ok in checks.items()],
        "",
        "RSS (MiB) after warm-up and at the end: "
        + ", ".join(f"{k[4:-4]} {first[k]:.0f} → {last[k]:.0f} ({growth[k]:+.1%})" for k in rss_keys),
        "",
        "| t (s) | " + " | ".join(k for k in rows[0] if k != "t_s") + " |",
        "| ---: | " + " | ".join("---:" for k in rows[0] if k != "t_s") + " |",
        *["| " + " | ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in r.values()) + " |" for r in rows],
    ]
    if tally.errors:
        lines += ["", "First errors:", "", *[f"- `{e}`" for e in tally.errors]]
    return "\n".join(lines) + "\n", all(checks.values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--sessions", type=int, default=32)
    p.add_argument("--sample-s", type=float, default=30)
    p.add_argument("--warmup-min", type=float, default=2)
    p.add_argument("--settle-s", type=float, default=10)
    p.add_argument("--disconnect-every", type=int, default=10)
    p.add_argument("--max-growth", type=float, default=0.10)
    p.add_argument("--models", default=str(Path.home() / ".cache" / "kvyard" / "bench-models"))
    p.add_argument("--output", default="benchmarks/results/soak.md")
    args = p.parse_args()
    url, redis = deploy(args)
    try:
        pids = replica_pids()
        print(f"[soak 2/3] load: {args.sessions} sessions for {args.minutes:g} min; watching {pids}", flush=True)
        tally, rows = asyncio.run(run_load(url, args, pids))
        text, ok = report(args, tally, rows)
        Path(args.output).write_text(text)
        print(f"[soak 3/3] {'PASS' if ok else 'FAIL'}; report in {args.output}\n{text}", flush=True)
        return 0 if ok else 1
    finally:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        redis.stop()


if __name__ == "__main__":
    raise SystemExit(main())
