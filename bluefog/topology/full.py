r"""The fully connected graph (exact averaging in one step)."""

from __future__ import annotations

import numpy as np

from ._families import check_size
from ._topology import Topology

__all__ = ["fully_connected_graph"]


def fully_connected_graph(n: int) -> Topology:
    r"""Every agent averages all agents: :math:`W = \tfrac1n \mathbf 1 \mathbf 1^\top`.

    Bluefog's uniform rule with in-degree :math:`n - 1`. :math:`\rho = 0` (exact average in
    one step) at the price of :math:`n - 1` rounds per step (one per circulant offset).

    Parameters
    ----------
    n : int
        Number of agents, ``>= 1``.

    Returns
    -------
    Topology

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py``, ``FullyConnectedGraph(size)``.
    """
    n = check_size(n)
    W = np.full((n, n), 1.0 / n)
    return Topology(W, name=f"fully_connected(n={n})", require="doubly", layout="circular")
