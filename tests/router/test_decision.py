"""The routing decision: cost, ties, empty index, dead workers, affinity, temperature."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kvyard.errors import Overloaded
from kvyard.router.decision import Decision, RouterWeights, WorkerLoad, choose, worker_costs

W = RouterWeights()  # prefill 1, load 1, queue 1, affinity 32
IDLE = WorkerLoad()


def test_longest_cached_prefix_wins_at_equal_load() -> None:
    d = choose(100, {"a": 10, "b": 90, "c": 50}, {"a": IDLE, "b": IDLE, "c": IDLE}, None, W)
    assert d == Decision(
        worker="b", overlap_blocks=90, cost=10.0, costs_by_worker={"a": 90.0, "b": 10.0, "c": 50.0}
    )


def test_load_outweighs_a_small_overlap_advantage() -> None:
    loads = {"hot": WorkerLoad(active_requests=3, active_blocks=400), "cold": WorkerLoad(active_blocks=20)}
    # hot: 100-80 + 400 = 420; cold: 100-0 + 20 = 120
    d = choose(100, {"hot": 80}, loads, None, W)
    assert d.worker == "cold" and d.overlap_blocks == 0
    assert d.costs_by_worker == {"hot": 420.0, "cold": 120.0}
    # a long enough cached prefix is worth the wait: 1000-1000 + 400 < 1000 + 20
    assert choose(1000, {"hot": 1000}, loads, None, W).worker == "hot"
    # and the weights move the trade-off
    assert choose(100, {"hot": 80}, loads, None, RouterWeights(load_weight=0.01)).worker == "hot"


def test_load_uses_active_requests_when_blocks_are_not_reported_plus_queue() -> None:
    loads = {
        "a": WorkerLoad(active_requests=2, queued_requests=3),
        "b": WorkerLoad(active_requests=9, active_blocks=1),
    }
    costs = worker_costs(10, {}, loads, None, RouterWeights(queue_weight=2.0))
    assert costs == {"a": 10 + 2 + 2 * 3, "b": 10 + 1}


def test_ties_break_on_fewest_active_requests_then_worker_id() -> None:
    loads = {
        "b": WorkerLoad(active_requests=1, active_blocks=5),
        "a": WorkerLoad(active_requests=4, active_blocks=5),
    }
    assert choose(10, {}, loads, None, W).worker == "b"  # equal cost, b has fewer active
    even = {
        "c": WorkerLoad(active_requests=1),
        "a": WorkerLoad(active_requests=1),
        "b": WorkerLoad(active_requests=1),
    }
    assert choose(10, {}, even, None, W).worker == "a"
    assert choose(10, {}, dict(reversed(list(even.items()))), None, W).worker == "a"  # order-free


def test_empty_index_is_pure_load_balancing() -> None:
    loads = {f"w{i}": WorkerLoad(active_requests=i % 4, active_blocks=(i * 37) % 101) for i in range(16)}
    d = choose(64, {}, loads, None, W)
    assert d.worker == min(loads, key=lambda w: (loads[w].active_blocks, loads[w].active_requests, w))
    assert d.overlap_blocks == 0


def test_dead_workers_are_never_chosen() -> None:
    loads = {"alive": WorkerLoad(active_blocks=500)}
    d = choose(100, {"dead": 100, "alive": 0}, loads, "dead", W)
    assert d.worker == "alive"
    assert set(d.costs_by_worker) == {"alive"}
    assert d.cost == 600.0  # no affinity bonus for a dead session worker


def test_no_live_worker_is_overloaded() -> None:
    with pytest.raises(Overloaded, match="no live worker"):
        choose(10, {"dead": 10}, {}, None, W)


def test_affinity_bonus_keeps_a_session_on_its_worker_in_a_near_tie() -> None:
    loads = {"a": WorkerLoad(active_blocks=10), "b": WorkerLoad(active_blocks=0)}
    assert choose(50, {}, loads, None, W).worker == "b"
    d = choose(50, {}, loads, "a", W)
    assert d.worker == "a" and d.cost == 50 + 10 - 32
    # but not against a large difference in cached prefix
    assert choose(500, {"b": 400}, loads, "a", W).worker == "b"
    assert choose(50, {}, loads, "a", RouterWeights(affinity_bonus=0)).worker == "b"


def test_overlap_is_clamped_to_the_request() -> None:
    d = choose(4, {"a": 10, "b": -3}, {"a": IDLE, "b": IDLE}, None, W)
    assert d.worker == "a" and d.overlap_blocks == 4 and d.costs_by_worker == {"a": 0.0, "b": 4.0}
    with pytest.raises(ValueError, match="request_blocks"):
        choose(-1, {}, {"a": IDLE}, None, W)


def test_temperature_sampling_is_reproducible_with_a_seeded_rng() -> None:
    loads = {f"w{i}": WorkerLoad(active_blocks=i) for i in range(8)}
    overlaps = {"w3": 6}
    first = [
        choose(10, overlaps, loads, None, W, temperature=2.0, rng=random.Random(7)).worker for _ in range(5)
    ]
    assert len(set(first)) == 1  # same seed, same pick
    rng_a, rng_b = random.Random(42), random.Random(42)
    seq_a = [choose(10, overlaps, loads, None, W, temperature=2.0, rng=rng_a).worker for _ in range(50)]
    seq_b = [
        choose(10, overlaps, dict(reversed(list(loads.items()))), None, W, temperature=2.0, rng=rng_b).worker
        for _ in range(50)
    ]
    assert seq_a == seq_b  # independent of dict order
    assert len(set(seq_a)) > 1  # it does sample


def test_temperature_follows_the_softmax_of_negative_cost() -> None:
    loads = {"cheap": IDLE, "dear": WorkerLoad(active_blocks=1)}  # costs 10 and 11
    rng = random.Random(0)
    counts = Counter(choose(10, {}, loads, None, W, temperature=1.0, rng=rng).worker for _ in range(20_000))
    # p(cheap) = 1 / (1 + e^-1) = 0.731
    assert 0.71 < counts["cheap"] / 20_000 < 0.75
    # a tiny temperature is (almost) argmin; a huge one (almost) uniform
    rng = random.Random(1)
    assert {choose(10, {}, loads, None, W, temperature=1e-3, rng=rng).worker for _ in range(200)} == {"cheap"}
    counts = Counter(choose(10, {}, loads, None, W, temperature=1e6, rng=rng).worker for _ in range(4000))
    assert 0.45 < counts["cheap"] / 4000 < 0.55


def test_temperature_never_picks_a_dead_worker_and_survives_underflow() -> None:
    loads = {"a": IDLE, "b": WorkerLoad(active_blocks=10**9)}
    rng = random.Random(3)
    picks = {choose(10, {"dead": 10}, loads, None, W, temperature=0.5, rng=rng).worker for _ in range(500)}
    assert picks == {"a"}


@pytest.mark.parametrize("temperature", [-0.1, float("nan"), float("inf")])
def test_bad_temperature_is_a_value_error(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        choose(1, {}, {"a": IDLE}, None, W, temperature=temperature)


def test_weights_config_is_strict_and_described() -> None:
    with pytest.raises(ValueError):
        RouterWeights.model_validate({"prefill_weight": 1.0, "typo": 2})
    with pytest.raises(ValueError):
        RouterWeights(load_weight=-1)
    assert all(f.description for f in RouterWeights.model_fields.values())
