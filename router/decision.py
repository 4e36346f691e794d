"""The routing decision: a pure function from (cache overlap, load, session) to one worker.

For every LIVE worker ``w`` (a key of ``loads``; workers missing from ``loads`` are dead and never
chosen, whatever the index says) the cost, in units of KV blocks, is::

    cost(w) = prefill_weight · (request_blocks - overlap(w))      blocks still to prefill on w
            + load_weight    · load(w)                             work already on w
            - affinity_bonus · [w is the session's worker]         keep a session together

    load(w) = (active_blocks(w) if reported else active_requests(w))
            + queue_weight · queued_requests(w)

``overlap(w)`` is the number of leading request blocks ``w`` already holds
(``BlockIndex.overlaps``; absent → 0, clamped to ``[0, request_blocks]``). With an empty index
every overlap is 0 and the choice is pure load balancing (plus affinity).

The idea follows NVIDIA Dynamo's KV router (blocks to prefill + decode blocks, optional softmax
temperature); the formula, units and tie-break here are kvyard's own.

- ``temperature == 0``: argmin of ``(cost, active_requests, queued_requests, worker id)``:
  deterministic, so every frontend replica with the same view picks the same worker.
- ``temperature > 0``: sample ``w`` with probability ∝ ``exp(-(cost(w) - min cost) / T)``
  using ``rng.random()`` (pass a seeded ``random.Random`` to reproduce a choice). Workers are
  visited in id order, so the same rng state gives the same choice.

Cost: O(live workers); no I/O, no clock, no global state.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Mapping
from itertools import accumulate

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from kvyard.errors import Overloaded


class WorkerLoad(msgspec.Struct, frozen=True):
    """A worker's load as last reported (engine stats or the router's own bookkeeping)."""

    active_requests: int = 0
    queued_requests: int = 0
    active_blocks: int | None = None
    """KV blocks held by running requests (decode load); ``None`` when not reported."""


class RouterWeights(BaseModel):
    """Weights of the routing cost (all in KV-block units)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefill_weight: float = Field(
        default=1.0, ge=0.0, description="Cost per request block not cached on the worker."
    )
    load_weight: float = Field(
        default=1.0,
        ge=0.0,
        description="Cost per unit of load: an active KV block (or an active request when block "
        "counts are not reported).",
    )
    queue_weight: float = Field(
        default=1.0, ge=0.0, description="Load units counted per queued (waiting) request."
    )
    affinity_bonus: float = Field(
        default=32.0,
        ge=0.0,
        description="Cost subtracted for the worker that served the session last (in blocks).",
    )


class Decision(msgspec.Struct, frozen=True):
    """The chosen worker, its cached prefix (blocks), its cost, and every live worker's cost."""

    worker: str
    overlap_blocks: int
    cost: float
    costs_by_worker: dict[str, float]


def worker_costs(
    request_blocks: int,
    overlaps: Mapping[str, int],
    loads: Mapping[str, WorkerLoad],
    session_worker: str | None,
    weights: RouterWeights,
) -> dict[str, float]:
    """``cost(w)`` for every live worker (keys of ``loads``), as defined in the module docstring."""
    if request_blocks < 0:
        raise ValueError(f"request_blocks must be >= 0, got {request_blocks}")
    prefill, load_w, queue_w = weights.prefill_weight, weights.load_weight, weights.queue_weight
    costs: dict[str, float] = {}
    for worker, load in loads.items():
        overlap = overlaps.get(worker, 0)
        overlap = 0 if overlap < 0 else request_blocks if overlap > request_blocks else overlap
        busy = load.active_requests if load.active_blocks is None else load.active_blocks
        costs[worker] = prefill * (request_blocks - overlap) + load_w * (
            busy + queue_w * load.queued_requests
        )
    if session_worker is not None and session_worker in costs:
        costs[session_worker] -= weights.affinity_bonus
    return costs


def choose(
    request_blocks: int,
    overlaps: Mapping[str, int],
    loads: Mapping[str, WorkerLoad],
    session_worker: str | None,
    weights: RouterWeights,
    temperature: float = 0.0,
    rng: random.Random | None = None,
) -> Decision:
    """Pick the worker for a request of ``request_blocks`` full blocks (see the module docstring).

    Raises ``Overloaded`` when no worker is live, ``ValueError`` on a negative temperature.
    """
    if not loads:
        raise Overloaded("no live worker in the pool to route to")
    if not temperature >= 0.0 or math.isinf(temperature):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    costs = worker_costs(request_blocks, overlaps, loads, session_worker, weights)
    if temperature == 0.0:
        best = min(costs.values())
        tied = [w for w, c in costs.items() if c == best]
        worker = (
            tied[0]
            if len(tied) == 1
            else min(tied, key=lambda w: (loads[w].active_requests, loads[w].queued_requests, w))
        )
    else:
        worker = _sample(costs, temperature, rng or random.Random())
    overlap = min(max(overlaps.get(worker, 0), 0), request_blocks)
    return Decision(worker=worker, overlap_blocks=overlap, cost=costs[worker], costs_by_worker=costs)


def _sample(costs: Mapping[str, float], temperature: float, rng: random.Random) -> str:
    workers = sorted(costs)
    best = min(costs.values())
    cumulative = list(accumulate(math.exp(-(costs[w] - best) / temperature) for w in workers))
    # The best worker has weight exp(0) = 1, so the total is >= 1; bisect_right skips workers
    # whose weight underflowed to 0. min() guards the product rounding up to the total.
    index = bisect_right(cumulative, rng.random() * cumulative[-1])
    return workers[min(index, len(workers) - 1)]
