"""Small helpers shared by the graph families (argument checks, circulant adjacency)."""

from __future__ import annotations

import numpy as np

from .sparse import MAX_SPARSE_AGENTS
from .validation import check_num_agents, check_positive_int

__all__ = ["check_size", "check_sparse_size", "check_seed", "circulant_adjacency", "check_probability"]


def check_size(n, name: str = "n") -> int:
    """``n`` as an int in ``[1, MAX_DENSE_AGENTS]`` (see
    :func:`~bluefog.topology.validation.check_num_agents`)."""
    return check_num_agents(n, name)


def check_sparse_size(n, name: str = "n") -> int:
    """``n`` as an int in ``[1, MAX_SPARSE_AGENTS]``, for families built by their edges
    (no dense matrix; see :mod:`bluefog.topology.sparse`)."""
    n = check_positive_int(n, name)
    if n > MAX_SPARSE_AGENTS:
        raise ValueError(f"{name} must be at most MAX_SPARSE_AGENTS = {MAX_SPARSE_AGENTS} agents "
                         f"(24 bytes per edge: an exponential graph of 2**20 agents takes about "
                         f"0.5 GiB); got {n}. Use fewer agents.")
    return n


def check_seed(seed, name: str = "seed") -> int:
    """A non-negative int seed. ``None`` is refused: every MPI rank must build the same graph."""
    if seed is None:
        raise TypeError(
            f"{name} must be an int; got None. Random topologies are built independently on "
            f"every MPI rank and must agree, so pass an explicit {name}, e.g. {name}=0."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative int; got {seed!r} of type {type(seed).__name__}.")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int; got {seed}.")
    return int(seed)


def check_probability(p, name: str = "p") -> float:
    """``p`` as a float in ``[0, 1]``."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a probability (float in [0, 1]); got {p!r} of type {type(p).__name__}.")
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be in [0, 1]; got {p}. Pass an edge probability such as {name}=0.3.")
    return p


def circulant_adjacency(n: int, receive_offsets) -> np.ndarray:
    r"""Adjacency of the circulant graph where agent ``i`` receives from ``(i + k) mod n``
    for every ``k`` in ``receive_offsets`` (offsets ``0 mod n`` are dropped)."""
    A = np.zeros((n, n), dtype=bool)
    idx = np.arange(n)
    for k in set(int(k) % n for k in receive_offsets):
        if k:
            A[idx, (idx + k) % n] = True
    return A
