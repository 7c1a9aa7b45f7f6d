r"""The hypercube graph."""

from __future__ import annotations

import numpy as np

from ._topology import Topology
from .validation import check_num_agents, check_positive_int
from .weights import metropolis_weights

__all__ = ["hypercube_graph"]


def hypercube_graph(dim: int) -> Topology:
    r"""The ``dim``-dimensional hypercube on :math:`n = 2^{\text{dim}}` agents.

    Agents :math:`i` and :math:`j` are neighbors when their binary labels differ in exactly
    one bit (:math:`j = i \oplus 2^k`). The graph is ``dim``-regular, so Metropolis-Hastings
    weights are :math:`W = \frac{1}{\text{dim}+1}(I + A)`, with eigenvalues
    :math:`1 - \frac{2m}{\text{dim}+1}`, :math:`m = 0..\text{dim}`, hence
    :math:`\rho = \frac{\text{dim}-1}{\text{dim}+1}`. The schedule has ``dim`` rounds (one
    per bit, each a perfect matching). ``dim = 0`` is a single agent.

    Parameters
    ----------
    dim : int
        Dimension, ``0 <= dim <= 14`` (``2**dim <= MAX_DENSE_AGENTS = 16384`` agents).

    Returns
    -------
    Topology

    References
    ----------
    networkx ``hypercube_graph``; F. T. Leighton, *Introduction to Parallel Algorithms and
    Architectures: Arrays, Trees, Hypercubes* (1992).

    Examples
    --------
    >>> hypercube_graph(3).in_neighbors(5)   # 101 -> 001, 100, 111
    [1, 4, 7]
    >>> round(hypercube_graph(3).rho, 12)
    0.5
    """
    dim = check_positive_int(dim, "dim", minimum=0)
    n = check_num_agents(2 ** min(dim, 64), f"2**dim (dim={dim})")
    idx = np.arange(n)
    A = np.zeros((n, n), dtype=bool)
    for k in range(dim):
        A[idx, idx ^ (1 << k)] = True
    W = metropolis_weights(A)
    return Topology(W, name=f"hypercube(dim={dim})", require="doubly", layout="circular")
