r"""The star graph (one hub, Bluefog's ``StarGraph``)."""

from __future__ import annotations

import numpy as np

from ._families import check_size
from ._topology import Topology
from .weights import metropolis_weights

__all__ = ["star_graph"]


def star_graph(n: int, center: int = 0) -> Topology:
    r"""Star: agent ``center`` is connected to every other agent, with Metropolis weights.

    The hub has degree :math:`n-1`, the leaves degree 1, so every edge gets
    :math:`1/(1+\max(n-1, 1)) = 1/n`:

    .. math:: W_{c j} = W_{j c} = \tfrac1n \;(j \ne c), \quad W_{cc} = \tfrac1n, \quad
              W_{jj} = 1 - \tfrac1n,

    which is exactly Bluefog's ``StarGraph``. Symmetric and doubly stochastic; the hub
    exchanges with all :math:`n - 1` leaves, so the schedule has :math:`n-1` rounds.

    Parameters
    ----------
    n : int
        Number of agents, ``>= 1``.
    center : int
        The hub, in ``[0, n)``.

    Returns
    -------
    Topology

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py``, ``StarGraph(size, center_rank=0)``.

    Examples
    --------
    >>> star_graph(4, center=2).weights.tolist()
    [[0.75, 0.0, 0.25, 0.0], [0.0, 0.75, 0.25, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.25, 0.75]]
    """
    n = check_size(n)
    if isinstance(center, bool) or not isinstance(center, (int, np.integer)):
        raise TypeError(f"center must be an int in [0, n) = [0, {n}); got {center!r}.")
    if not 0 <= center < n:
        raise ValueError(
            f"center must be an agent index in [0, n) = [0, {n}); got center={center}. "
            f"Pick the hub among the {n} agents, e.g. center=0."
        )
    A = np.zeros((n, n), dtype=bool)
    A[center, :] = A[:, center] = True
    W = metropolis_weights(A)
    return Topology(W, name=f"star(n={n}, center={int(center)})", require="doubly",
                    layout="shell")
