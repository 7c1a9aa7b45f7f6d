r"""Two-dimensional meshes: the non-periodic grid and the torus.

Agent ``r * cols + c`` sits at row ``r``, column ``c``.
"""

from __future__ import annotations

import numpy as np

from ._topology import Topology
from .validation import check_num_agents, check_positive_int
from .weights import metropolis_weights

__all__ = ["grid_2d_graph", "torus_2d_graph"]


def _mesh_adjacency(rows: int, cols: int, periodic: bool) -> np.ndarray:
    n = rows * cols
    A = np.zeros((n, n), dtype=bool)
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                rr, cc = r + dr, c + dc
                if periodic:
                    rr, cc = rr % rows, cc % cols
                elif not (0 <= rr < rows and 0 <= cc < cols):
                    continue
                j = rr * cols + cc
                if j != i:
                    A[i, j] = True
    return A


def grid_2d_graph(rows: int, cols: int) -> Topology:
    r"""Non-periodic ``rows x cols`` mesh with Metropolis-Hastings weights.

    Agent :math:`(r, c)` (index ``r * cols + c``) is linked to :math:`(r \pm 1, c)` and
    :math:`(r, c \pm 1)` inside the grid, and

    .. math:: W_{ij} = \frac{1}{1 + \max(d_i, d_j)}, \qquad W_{ii} = 1 - \sum_{j \ne i} W_{ij},

    with degrees 2 (corners), 3 (borders) and 4 (interior). Symmetric, doubly stochastic;
    :math:`1 - \rho = \Theta(1/\max(\text{rows}, \text{cols})^2)`. ``1 x 1`` is a single agent,
    ``1 x n`` a path.

    Parameters
    ----------
    rows, cols : int
        Grid shape, each ``>= 1``.

    Returns
    -------
    Topology

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py``, ``MeshGrid2DGraph`` (same Hastings rule);
    networkx ``grid_2d_graph``.

    Examples
    --------
    >>> t = grid_2d_graph(2, 3)   # agents 0 1 2 / 3 4 5
    >>> t.in_neighbors(4), t.in_neighbors(0)
    ([1, 3, 5], [1, 3])
    """
    rows = check_positive_int(rows, "rows")
    cols = check_positive_int(cols, "cols")
    check_num_agents(rows * cols, "rows * cols")
    W = metropolis_weights(_mesh_adjacency(rows, cols, periodic=False))
    return Topology(W, name=f"grid_2d({rows}x{cols})", require="doubly", layout="grid",
                    grid_shape=(rows, cols))


def torus_2d_graph(rows: int, cols: int) -> Topology:
    r"""Periodic ``rows x cols`` mesh (torus) with Metropolis-Hastings weights.

    Agent :math:`(r, c)` is linked to :math:`((r \pm 1) \bmod \text{rows}, c)` and
    :math:`(r, (c \pm 1) \bmod \text{cols})` (coinciding neighbors counted once, as in
    ``networkx.grid_2d_graph(rows, cols, periodic=True)``). The graph is regular of degree
    :math:`d`, so :math:`W = \frac{1}{d+1}(I + A)`, symmetric and doubly stochastic, with
    eigenvalues :math:`\frac{1}{d+1}\big(1 + 2\cos\frac{2\pi p}{\text{rows}} +
    2\cos\frac{2\pi q}{\text{cols}}\big)` for rows, cols ``>= 3``.

    Parameters
    ----------
    rows, cols : int
        Torus shape, each ``>= 1``.

    Returns
    -------
    Topology

    References
    ----------
    networkx ``grid_2d_graph(..., periodic=True)``; Xiao & Boyd (2004) for the weights.
    """
    rows = check_positive_int(rows, "rows")
    cols = check_positive_int(cols, "cols")
    check_num_agents(rows * cols, "rows * cols")
    W = metropolis_weights(_mesh_adjacency(rows, cols, periodic=True))
    return Topology(W, name=f"torus_2d({rows}x{cols})", require="doubly", layout="grid",
                    grid_shape=(rows, cols))
