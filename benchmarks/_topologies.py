"""Topology families by name for the benchmarks (uses ``bluefog.topology`` constructors)."""

from __future__ import annotations

import math

import numpy as np

import bluefog.topology as T

#: Families swept by the asv suite and the scaling scripts.
FAMILIES = ("ring", "exponential", "torus_2d", "one_peer_exponential")


def _torus_shape(n: int) -> tuple[int, int]:
    r = int(math.isqrt(n))
    while n % r:
        r -= 1
    return r, n // r


def _circulant_uniform(n: int, offsets) -> np.ndarray:
    W = np.eye(n)
    for i in range(n):
        for o in offsets:
            W[i, (i + o) % n] = 1.0
    return W / W.sum(axis=1, keepdims=True)


def make_topology(family: str, n: int):
    """Build topology ``family`` over ``n`` agents.

    ``family`` is one of :data:`FAMILIES`. Raises ``NotImplementedError`` (asv's "skip this
    parameter combination") when the constructor is not available in this checkout.
    """
    if family == "one_peer_exponential":
        return T.one_peer_exponential_graph(n)
    if family == "torus_2d":
        ctor = getattr(T, "torus_2d_graph", None)
        if ctor is None:
            raise NotImplementedError("bluefog.topology.torus_2d_graph is not available")
        return ctor(*_torus_shape(n))
    ctor = getattr(T, f"{family}_graph", None)
    if ctor is not None:
        return ctor(n)
    # The constructors arrive with the topology library; until then build the two circulant
    # families directly from their definition (Bluefog's uniform weights).
    if family == "exponential":
        offs = [2 ** k for k in range(int(n).bit_length()) if 2 ** k < n]
        return T.Topology(_circulant_uniform(n, offs), name=f"exponential(n={n})")
    if family == "ring":
        return T.Topology(_circulant_uniform(n, sorted({1 % n, (n - 1) % n} - {0})),
                          name=f"ring(n={n})")
    raise ValueError(f"family must be one of {FAMILIES}; got {family!r}.")


def rounds_per_step(topology) -> float:
    """Mean schedule rounds per ``neighbor_allreduce`` (over one period if dynamic)."""
    pats = topology.patterns
    if getattr(topology, "period", None):
        pats = [pats[topology.index(t)] for t in range(topology.period)]
    return float(np.mean([p.schedule.num_rounds for p in pats]))
