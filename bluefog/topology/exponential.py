r"""Exponential graphs (Bluefog's ``ExponentialGraph`` and ``SymmetricExponentialGraph``)."""

from __future__ import annotations

from ._families import check_size, check_sparse_size, circulant_adjacency
from ._topology import Topology
from .sparse import circulant_weights
from .validation import check_positive_int
from .weights import uniform_weights

__all__ = ["exponential_graph", "symmetric_exponential_graph", "exponential_offsets"]


def _check_base(base) -> int:
    return check_positive_int(base, "base", minimum=2)


def exponential_offsets(n: int, base: int = 2) -> list[int]:
    r"""Hop lengths of the exponential graph: :math:`\{b^k : k \ge 0,\ b^k < n\}`.

    Computed with exact integer powers (Bluefog's ``isPowerOf`` uses a floating-point
    logarithm, which misses e.g. :math:`3^5 = 243`).

    Parameters
    ----------
    n : int
        Number of agents, ``>= 1``.
    base : int
        ``>= 2``.

    Returns
    -------
    list of int
        ``[1, b, b^2, ...]``, all ``< n`` (empty for ``n = 1``).

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py`` (``ExponentialGraph``, ``isPowerOf``).

    Examples
    --------
    >>> exponential_offsets(64), exponential_offsets(300, base=3)
    ([1, 2, 4, 8, 16, 32], [1, 3, 9, 27, 81, 243])
    """
    n = check_positive_int(n, "n")  # no dense matrix here: any n
    base = _check_base(base)
    hops, h = [], 1
    while h < n:
        hops.append(h)
        h *= base
    return hops


def exponential_graph(n: int, base: int = 2) -> Topology:
    r"""Directed exponential graph with Bluefog's uniform weights.

    Agent :math:`i` sends to :math:`(i + b^k) \bmod n` for every :math:`k \ge 0` with
    :math:`b^k < n`, so it receives from :math:`(i - b^k) \bmod n`; with
    :math:`\tau = \lceil \log_b n \rceil` hops,

    .. math:: W_{ij} = \frac{1}{\tau + 1} \quad \text{for } j = i \text{ or }
              j \equiv i - b^k \pmod n,

    a circulant, doubly stochastic matrix (not symmetric for ``n > 2``). Its schedule has one
    round per hop. ``n = 1`` gives the single agent :math:`W = [1]`.

    Parameters
    ----------
    n : int
        Number of agents, ``>= 1``.
    base : int
        Hop base ``b >= 2``.

    Returns
    -------
    Topology

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py``, ``ExponentialGraph(size, base=2)``:
    ``topo[i] = np.roll(x, i)`` with ``x[k] = 1`` for ``k`` a power of ``base`` (networkx
    edge ``i -> i + k``). B. Ying, K. Yuan, Y. Chen, H. Hu, P. Pan, W. Yin, "Exponential graph
    is provably efficient for decentralized deep training", NeurIPS 2021.

    Examples
    --------
    >>> exponential_graph(8).in_neighbors(0)
    [4, 6, 7]
    """
    n = check_sparse_size(n)
    base = _check_base(base)
    hops = exponential_offsets(n, base)
    # built by its edges (no dense n x n matrix): 1/(tau + 1) is the value uniform_weights
    # gives, bit for bit, so the fingerprint equals that of the dense construction
    W = circulant_weights(n, [-h for h in hops], 1.0 / (len(hops) + 1))
    return Topology(W, name=f"exponential(n={n}, base={base})", require="doubly",
                    layout="circular")


def symmetric_exponential_graph(n: int, base: int = 4) -> Topology:
    r"""Undirected exponential graph with Bluefog's uniform weights.

    Agents :math:`i` and :math:`j` are neighbors when their circular distance
    :math:`\min((j - i) \bmod n, (i - j) \bmod n)` is a power of ``base``
    (:math:`b^k \le \lfloor n/2 \rfloor`), and

    .. math:: W_{ij} = \frac{1}{d + 1} \quad \text{for } j = i \text{ or } j \in \mathcal N_i,

    with :math:`d` the common degree. ``W`` is circulant, symmetric and doubly stochastic;
    its schedule has one round per offset :math:`\pm b^k`.

    Parameters
    ----------
    n : int
        Number of agents, ``>= 1``.
    base : int
        Hop base ``b >= 2`` (Bluefog's default is 4).

    Returns
    -------
    Topology

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py``, ``SymmetricExponentialGraph(size, base=4)``
    (offset ``k`` is kept when ``min(k, size - k)`` is a power of ``base``).
    """
    n = check_size(n)
    base = _check_base(base)
    hops = [h for h in exponential_offsets(n, base) if h <= n // 2]
    offsets = hops + [-h for h in hops]
    W = uniform_weights(circulant_adjacency(n, offsets))
    return Topology(W, name=f"symmetric_exponential(n={n}, base={base})", require="doubly",
                    layout="circular")
