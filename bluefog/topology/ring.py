r"""Ring graphs (Bluefog's ``RingGraph``)."""

from __future__ import annotations

from ._families import check_size, circulant_adjacency
from ._topology import Topology
from .weights import uniform_weights

__all__ = ["ring_graph"]


def ring_graph(n: int, directed: bool = False) -> Topology:
    r"""Ring of ``n`` agents with Bluefog's uniform weights.

    Undirected (default): agent :math:`i` averages itself and both ring neighbors,

    .. math:: W = \tfrac13 (I + P + P^{\top}), \qquad (P x)_i = x_{(i+1) \bmod n},

    (for ``n = 2`` the two neighbors coincide and :math:`W = \tfrac12 \mathbf 1\mathbf 1^\top`).
    Directed: agent :math:`i` sends to :math:`i + 1` and receives from :math:`i - 1`,
    :math:`W = \tfrac12 (I + P^{\top})`. Both are circulant and doubly stochastic; their
    eigenvalues are :math:`\tfrac13(1 + 2\cos(2\pi k/n))` and
    :math:`\tfrac12(1 + e^{-2\pi \mathrm i k/n})`, so
    :math:`\rho = 1 - \Theta(1/n^2)`. The schedule has one round per offset (2 or 1).

    Parameters
    ----------
    n : int
        Number of agents, ``>= 1`` (``n = 1`` gives :math:`W = [1]`).
    directed : bool
        One-directional ring.

    Returns
    -------
    Topology

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py``, ``RingGraph(size, connect_style)``;
    R. M. Gray, "Toeplitz and circulant matrices: a review" (2006) for the spectrum.

    Examples
    --------
    >>> ring_graph(6).in_neighbors(0), ring_graph(6, directed=True).in_neighbors(0)
    ([1, 5], [5])
    >>> ring_graph(6).schedule.num_rounds
    2
    """
    n = check_size(n)
    if not isinstance(directed, bool):
        raise TypeError(f"directed must be a bool; got {directed!r}.")
    offsets = [-1] if directed else [-1, 1]
    W = uniform_weights(circulant_adjacency(n, offsets))
    kind = "directed_ring" if directed else "ring"
    return Topology(W, name=f"{kind}(n={n})", require="doubly", layout="circular")
