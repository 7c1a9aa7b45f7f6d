r"""Weight rules that turn a communication graph into a mixing matrix.

Every family in :mod:`bluefog.topology` builds a boolean *adjacency* matrix with the same
convention as the mixing matrix: ``adjacency[i, j]`` is ``True`` when agent ``i`` receives from
agent ``j`` (an edge ``j -> i``), for ``i != j``; the diagonal is ignored. One of the two rules
below then assigns the weights:

* :func:`uniform_weights` (Bluefog's default for exponential, ring and fully connected graphs):
  agent ``i`` averages itself and its in-neighbors with equal weights,

  .. math:: W_{ij} = \frac{1}{d^{\mathrm{in}}_i + 1}, \quad j \in \mathcal N^{\mathrm{in}}_i \cup \{i\};

  always row-stochastic, doubly stochastic when all in-degrees are equal and every agent has
  the same number of out-neighbors as in-neighbors (regular graphs, circulant graphs).

* :func:`metropolis_weights` (Metropolis-Hastings, for undirected graphs),

  .. math:: W_{ij} = \frac{1}{1 + \max(d_i, d_j)} \;(j \in \mathcal N_i), \qquad
            W_{ii} = 1 - \sum_{j \in \mathcal N_i} W_{ij};

  symmetric and doubly stochastic for every undirected graph, with positive self weights, so
  :math:`\rho < 1` whenever the graph is connected.

References
----------
L. Xiao, S. Boyd, S. Lall, "A scheme for robust distributed sensor fusion based on average
consensus", IPSN 2005 (Metropolis-Hastings weights); L. Xiao and S. Boyd, "Fast linear
iterations for distributed averaging", Systems & Control Letters 53 (2004);
Bluefog ``bluefog/common/topology_util.py`` (uniform weights of ``ExponentialGraph``,
``RingGraph``, ``FullyConnectedGraph``; Hastings rule of ``MeshGrid2DGraph``).
"""

from __future__ import annotations

import numpy as np

from .validation import check_num_agents

__all__ = ["uniform_weights", "metropolis_weights", "check_adjacency"]


def check_adjacency(adjacency, name: str = "adjacency") -> np.ndarray:
    r"""Return ``adjacency`` as a square boolean array with a cleared diagonal, or raise.

    Parameters
    ----------
    adjacency : array_like, shape (n, n)
        0/1 or boolean; ``adjacency[i, j]`` means agent ``i`` receives from agent ``j``.
    name : str
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray of bool, shape (n, n)
        :math:`A_{ij} = [\,\text{adjacency}_{ij} \ne 0\,]` for :math:`i \ne j`,
        :math:`A_{ii} = 0` (the graph-theoretic adjacency matrix, e.g. Godsil & Royle,
        *Algebraic Graph Theory*, Sec. 8.1).
    """
    if isinstance(adjacency, (str, bytes)) or adjacency is None:
        raise TypeError(
            f"{name} must be a square 2-D boolean/0-1 array; got {type(adjacency).__name__}."
        )
    try:
        A = np.asarray(adjacency)
    except Exception as err:  # pragma: no cover - exotic array-likes
        raise TypeError(f"{name} must be a square 2-D array; NumPy could not convert it ({err}).") from None
    if np.iscomplexobj(A):
        raise TypeError(
            f"{name} must be real (0/1 or boolean); got complex dtype {A.dtype}. Pass "
            f"{name}.real != 0, or the graph's 0/1 adjacency."
        )
    if A.dtype == object or not (A.dtype == bool or np.issubdtype(A.dtype, np.number)):
        raise TypeError(f"{name} must be a boolean or numeric array; got dtype {A.dtype}.")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(
            f"{name} must be a square (n, n) array with n >= 1; got shape {A.shape}. "
            f"{name}[i, j] is True when agent i receives from agent j."
        )
    check_num_agents(A.shape[0], f"{name}.shape[0]")
    if np.issubdtype(A.dtype, np.number):
        if not np.all(np.isfinite(A)):
            raise ValueError(f"{name} must be finite; got NaN/inf entries.")
        if np.any(A < 0):
            bad = tuple(int(v) for v in np.argwhere(A < 0)[0])
            raise ValueError(
                f"{name} must hold 0/1 (or False/True) entries; got {A[bad]} at index {bad}. "
                f"Pass the graph's adjacency, not a weight matrix (use from_matrix for weights)."
            )
    A = A != 0
    np.fill_diagonal(A, False)
    return A


def uniform_weights(adjacency) -> np.ndarray:
    r"""Bluefog's uniform rule: :math:`W_{ij} = 1/(d^{\mathrm{in}}_i + 1)` on self and
    in-neighbors.

    Parameters
    ----------
    adjacency : array_like of bool, shape (n, n)
        ``adjacency[i, j]``: agent ``i`` receives from agent ``j`` (diagonal ignored).

    Returns
    -------
    numpy.ndarray, shape (n, n), float64
        A row-stochastic mixing matrix with :math:`W_{ii} = 1/(d^{\mathrm{in}}_i+1)`.

    References
    ----------
    Bluefog ``topology_util.ExponentialGraph`` / ``RingGraph`` (Ying et al., "BlueFog: make
    decentralized algorithms practical for optimization and deep learning", arXiv:2111.04287).
    """
    A = check_adjacency(adjacency)
    M = A | np.eye(A.shape[0], dtype=bool)
    return M / M.sum(axis=1, keepdims=True)


def metropolis_weights(adjacency) -> np.ndarray:
    r"""Metropolis-Hastings weights of an undirected graph.

    .. math:: W_{ij} = \frac{1}{1 + \max(d_i, d_j)} \;\text{for } \{i, j\} \in E, \qquad
              W_{ii} = 1 - \sum_{j \ne i} W_{ij}.

    Parameters
    ----------
    adjacency : array_like of bool, shape (n, n)
        Must be symmetric (an undirected graph); diagonal ignored.

    Returns
    -------
    numpy.ndarray, shape (n, n), float64
        Symmetric, doubly stochastic, with :math:`W_{ii} \ge 1/(1+d_i) > 0`.

    References
    ----------
    L. Xiao, S. Boyd, S. Lall, "A scheme for robust distributed sensor fusion based on
    average consensus", IPSN 2005; S. Boyd, P. Diaconis, L. Xiao, "Fastest mixing Markov chain
    on a graph", SIAM Review 46(4) (2004).
    """
    A = check_adjacency(adjacency)
    if not np.array_equal(A, A.T):
        i, j = (int(v) for v in np.argwhere(A != A.T)[0])
        raise ValueError(
            "metropolis_weights needs an undirected graph (symmetric adjacency); got an edge "
            f"between agents {i} and {j} in one direction only (adjacency[{i}, {j}]="
            f"{bool(A[i, j])}, adjacency[{j}, {i}]={bool(A[j, i])}). Use uniform_weights for "
            "directed graphs."
        )
    d = A.sum(axis=1)
    W = np.where(A, 1.0 / (1.0 + np.maximum(d[:, None], d[None, :])), 0.0)
    W[np.diag_indices_from(W)] = 1.0 - W.sum(axis=1)
    return W
