r"""Random graph families: random regular and Erdos-Renyi, with Metropolis-Hastings weights.

Both are sampled with networkx from an explicit integer ``seed`` (never ``None``: every MPI
rank builds its own copy of the topology and they must agree), and refused with a clear error
when the sample is not connected.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from ._families import check_probability, check_seed, check_size
from ._topology import Topology
from .validation import check_positive_int
from .weights import metropolis_weights

__all__ = ["random_regular_graph", "erdos_renyi_graph"]


def _adjacency(G: nx.Graph, n: int) -> np.ndarray:
    A = np.zeros((n, n), dtype=bool)
    for u, v in G.edges():
        if u != v:
            A[u, v] = A[v, u] = True
    return A


def _components(A: np.ndarray) -> int:
    G = nx.from_numpy_array(A.astype(np.int8))
    return nx.number_connected_components(G)


def random_regular_graph(n: int, degree: int, seed: int = 0) -> Topology:
    r"""A uniformly random ``degree``-regular graph on ``n`` agents, Metropolis weights.

    Every agent has exactly ``degree`` neighbors, so :math:`W = \frac{1}{d+1}(I + A)`:
    symmetric, doubly stochastic. For fixed :math:`d \ge 3` random regular graphs are
    expanders with high probability (:math:`\lambda_2(A) \le 2\sqrt{d-1} + o(1)`, Friedman's
    theorem), so :math:`\rho` stays bounded away from 1 as ``n`` grows, with only ``degree``
    rounds per step.

    Parameters
    ----------
    n : int
        Number of agents, ``>= 1``.
    degree : int
        ``0 <= degree < n`` with ``n * degree`` even (``degree = 0`` only for ``n = 1``).
    seed : int
        Seed of ``networkx.random_regular_graph`` (required to be an int).

    Returns
    -------
    Topology

    Raises
    ------
    ValueError
        If ``n * degree`` is odd, ``degree >= n``, or the sample is disconnected (possible for
        ``degree <= 2``).

    References
    ----------
    A. Steger, N. Wormald, "Generating random regular graphs quickly", Combinatorics,
    Probability and Computing 8 (1999) (networkx's sampler); J. Friedman, "A proof of Alon's
    second eigenvalue conjecture", Memoirs AMS 195 (2008).
    """
    n = check_size(n)
    degree = check_positive_int(degree, "degree", minimum=0)
    seed = check_seed(seed)
    if n == 1 and degree == 0:
        return Topology(np.ones((1, 1)), name=f"random_regular(n=1, degree=0, seed={seed})",
                        require="doubly", layout="spring")
    if degree >= n:
        raise ValueError(
            f"degree must be < n (an agent has at most n - 1 neighbors); got degree={degree}, "
            f"n={n}. Use degree <= {n - 1}, or fully_connected_graph({n})."
        )
    if (n * degree) % 2:
        raise ValueError(
            f"n * degree must be even for a regular graph to exist (handshake lemma); got "
            f"n={n}, degree={degree}, n * degree = {n * degree}. Use degree={degree + 1} or "
            f"degree={degree - 1}."
        )
    G = nx.random_regular_graph(degree, n, seed=seed)
    A = _adjacency(G, n)
    k = _components(A)
    if k > 1:
        raise ValueError(
            f"random_regular_graph(n={n}, degree={degree}, seed={seed}) sampled a graph with "
            f"{k} connected components; decentralized methods need a connected graph. Use "
            f"degree >= {min(3, n - 1)} (connected with high probability) or another seed."
        )
    W = metropolis_weights(A)
    return Topology(W, name=f"random_regular(n={n}, degree={degree}, seed={seed})",
                    require="doubly", layout="spring")


def erdos_renyi_graph(n: int, p: float, seed: int = 0) -> Topology:
    r"""Erdos-Renyi :math:`G(n, p)` graph with Metropolis-Hastings weights.

    Each of the :math:`\binom n2` undirected edges is present independently with probability
    ``p``; weights :math:`W_{ij} = 1/(1 + \max(d_i, d_j))`, :math:`W_{ii} = 1 - \sum_j W_{ij}`
    (symmetric, doubly stochastic). The sample is connected with high probability when
    :math:`p > (1 + \epsilon) \ln n / n`; a disconnected sample is refused.

    Parameters
    ----------
    n : int
        Number of agents, ``>= 1``.
    p : float
        Edge probability in ``[0, 1]``.
    seed : int
        Seed of ``networkx.gnp_random_graph`` (required to be an int).

    Returns
    -------
    Topology

    References
    ----------
    P. Erdos, A. Renyi, "On random graphs I", Publ. Math. Debrecen 6 (1959);
    E. N. Gilbert, "Random graphs", Ann. Math. Statist. 30 (1959).
    """
    n = check_size(n)
    p = check_probability(p)
    seed = check_seed(seed)
    G = nx.gnp_random_graph(n, p, seed=seed)
    A = _adjacency(G, n)
    k = _components(A)
    if k > 1:
        threshold = np.log(n) / n
        raise ValueError(
            f"erdos_renyi_graph(n={n}, p={p}, seed={seed}) sampled a disconnected graph "
            f"({k} connected components); decentralized methods need a connected graph. "
            f"Raise p (connectivity threshold ln(n)/n = {threshold:.3g}; p >= "
            f"{min(1.0, 2 * threshold):.3g} is connected with high probability) or try "
            "another seed."
        )
    W = metropolis_weights(A)
    return Topology(W, name=f"erdos_renyi(n={n}, p={p:g}, seed={seed})", require="doubly",
                    layout="spring")
