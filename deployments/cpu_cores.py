"""Disjoint CPU cores for the CPU engines that share a node.

vLLM's automatic OpenMP binding (``VLLM_CPU_OMP_THREADS_BIND=auto``) looks only at its own
process: every engine on a node binds its model threads to the same first cores and leaves the
rest to its scheduler, so two engine replicas on one node compute on one core while the others
idle. Each kvyard engine replica instead claims cores of its own in a node-local claims file
(under a lock), then hands vLLM an explicit binding:

1. the usable cores are the CPUs this process may run on, one logical CPU per physical core;
2. live claims are read (claims of processes that have exited are dropped);
3. the ``want`` cores with the fewest live claims are taken, lowest id first, so replicas get
   disjoint cores while there are enough and share as evenly as possible when there are not;
4. the cores are split into one list per tensor-parallel rank (``"0,1|2,3"``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

log = logging.getLogger("kvyard.engine")

CLAIMS = Path(tempfile.gettempdir()) / "kvyard-cpu-cores.json"


def physical_cores(cpus: Iterable[int], core_of: Callable[[int], tuple[int, int]]) -> list[int]:
    """One logical CPU per physical core (the lowest id of each ``(package, core)``), sorted."""
    first: dict[tuple[int, int], int] = {}
    for cpu in sorted(cpus):
        first.setdefault(core_of(cpu), cpu)
    return sorted(first.values())


def pick_cores(usable: list[int], claims: Mapping[int, list[int]], want: int) -> list[int]:
    """The ``want`` usable cores with the fewest live claims, ties to the lowest id, sorted."""
    load = Counter(core for cores in claims.values() for core in cores)
    return sorted(sorted(usable, key=lambda core: (load[core], core))[: max(1, min(want, len(usable)))])


def omp_binding(cores: list[int], ranks: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND``: the cores in ``ranks`` contiguous lists joined by ``|`` (vLLM
    wants one list per rank; with fewer cores than ranks, ranks share them round robin)."""
    if len(cores) < ranks:
        groups = [[cores[i % len(cores)]] for i in range(ranks)]
    else:
        size = len(cores) // ranks
        groups = [cores[i * size : (i + 1) * size] for i in range(ranks)]
        groups[-1] += cores[ranks * size :]
    return "|".join(",".join(map(str, group)) for group in groups)


def cores_wanted(configured: int | None, num_cpus: float) -> int:
    """Cores per engine: the configured count, else the replica's Ray CPUs rounded up (≥ 1)."""
    return configured if configured is not None else max(1, math.ceil(num_cpus))


def _core_of(cpu: int) -> tuple[int, int]:
    topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        return int((topology / "physical_package_id").read_text()), int((topology / "core_id").read_text())
    except (OSError, ValueError):
        return 0, cpu  # no topology exposed: treat every logical CPU as a core


def usable_cores() -> list[int]:
    """The physical cores (one logical CPU each) this process may run on."""
    return physical_cores(os.sched_getaffinity(0), _core_of)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_cores(want: int, ranks: int = 1, path: Path = CLAIMS, pid: int | None = None) -> str:
    """Claim ``want`` cores on this node for process ``pid`` (this one by default) and return the
    ``VLLM_CPU_OMP_THREADS_BIND`` value for them."""
    pid = os.getpid() if pid is None else pid
    usable = usable_cores()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        claims: dict[int, list[int]] = {}
        with contextlib.suppress(ValueError):
            claims = {int(k): v for k, v in json.loads(f.read() or "{}").items()}
        claims = {p: cores for p, cores in claims.items() if p != pid and _alive(p)}
        cores = pick_cores(usable, claims, max(want, ranks))
        shared = sorted(set(cores) & {c for cs in claims.values() for c in cs})
        claims[pid] = cores
        f.seek(0)
        f.truncate()
        f.write(json.dumps({str(p): cs for p, cs in claims.items()}))
    if shared:
        log.warning("CPU engine: only %d usable cores on this node, so cores %s are shared with another engine", len(usable), shared)
    return omp_binding(cores, ranks)
