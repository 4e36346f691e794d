"""CPU core claims for engines that share a node: pure picks, and the claims file across processes."""

from __future__ import annotations

import json
import subprocess
import sys

from kvyard.deployments.cpu_cores import claim_cores, cores_wanted, omp_binding, physical_cores, pick_cores


def test_one_logical_cpu_per_physical_core():
    smt = {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)}  # cpus 2 and 3 are 0's and 1's siblings
    assert physical_cores([3, 2, 1, 0], smt.__getitem__) == [0, 1]
    two_sockets = {0: (0, 0), 1: (1, 0)}  # the same core id on two packages is two cores
    assert physical_cores([0, 1], two_sockets.__getitem__) == [0, 1]


def test_replicas_get_disjoint_cores_while_there_are_enough():
    usable = list(range(8))
    first = pick_cores(usable, {}, 3)
    second = pick_cores(usable, {1: first}, 3)
    third = pick_cores(usable, {1: first, 2: second}, 2)
    assert first == [0, 1, 2] and second == [3, 4, 5] and third == [6, 7]


def test_an_overcommitted_node_shares_the_least_claimed_cores():
    usable = [0, 1]
    assert pick_cores(usable, {1: [0], 2: [1], 3: [0]}, 1) == [1]
    assert pick_cores(usable, {}, 5) == [0, 1]  # never more than the node has


def test_binding_has_one_list_per_tensor_parallel_rank():
    assert omp_binding([0, 1, 2, 3], 1) == "0,1,2,3"
    assert omp_binding([0, 1, 2, 3], 2) == "0,1|2,3"
    assert omp_binding([4, 5, 6], 2) == "4|5,6"
    assert omp_binding([3], 2) == "3|3"  # a machine with fewer cores than ranks: they share


def test_cores_wanted_defaults_to_the_replicas_ray_cpus():
    assert cores_wanted(None, 0.5) == 1
    assert cores_wanted(None, 4) == 4
    assert cores_wanted(2, 8) == 2


def test_claims_from_live_processes_are_kept_and_dead_ones_dropped(tmp_path, monkeypatch):
    import os

    claims = tmp_path / "claims.json"
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    claims.write_text(json.dumps({dead.stdout.strip(): [0, 1]}))  # a replica that has exited
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        first = claim_cores(2, path=claims, pid=sleeper.pid)
        second = claim_cores(2, path=claims)
    finally:
        sleeper.kill()
    assert first == "0,1"  # the dead process's cores were free again
    assert second == "2,3"
    assert json.loads(claims.read_text()) == {str(sleeper.pid): [0, 1], str(os.getpid()): [2, 3]}
