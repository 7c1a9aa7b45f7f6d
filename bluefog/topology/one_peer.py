r"""One-peer dynamic topologies (Bluefog's ``GetDynamicOnePeerSendRecvRanks``).

Every agent sends to exactly one of its out-neighbors per step, cycling through them in
clockwise order; an agent averages itself with whatever it receives that step. Over a base
graph :math:`G` in which agent :math:`j` has the out-neighbors
:math:`s_j(0), \dots, s_j(d_j - 1)`, sorted by the clockwise distance
:math:`(s - j) \bmod n`, at step :math:`t` agent :math:`j` sends to
:math:`s_j(t \bmod d_j)`, and agent :math:`i` receives from
:math:`R_i(t) = \{j : s_j(t \bmod d_j) = i\}` with Bluefog's uniform weights

.. math:: W^{(t)}_{ij} = \frac{1}{|R_i(t)| + 1} \quad \text{for } j \in R_i(t) \cup \{i\},

so :math:`W^{(t)}` is row-stochastic, and doubly stochastic (weights 1/2, 1/2) when every
agent receives from exactly one agent. The sequence repeats with period
:math:`\operatorname{lcm}_j d_j`.

Reference: Bluefog ``bluefog/common/topology_util.py``, ``GetDynamicOnePeerSendRecvRanks``
(weights as in Bluefog's examples: ``self_weight = 1 / (len(recv_ranks) + 1)``);
B. Ying, K. Yuan, Y. Chen, H. Hu, P. Pan, W. Yin, "Exponential graph is provably efficient
for decentralized deep training", NeurIPS 2021.
"""

from __future__ import annotations

import math

import numpy as np

from ._families import check_size
from ._topology import Topology
from .dynamic import DynamicTopology
from .exponential import exponential_graph
from .weights import uniform_weights

__all__ = ["MAX_PERIOD", "dynamic_one_peer_graph", "one_peer_exponential_graph",
           "clockwise_out_neighbors", "patterns_from_receive_lists"]

#: Largest period accepted for a one-peer sequence: each pattern becomes one static
#: ``lax.switch`` branch inside ``jit``.
MAX_PERIOD = 512


def clockwise_out_neighbors(base: Topology) -> list[list[int]]:
    r"""Per agent ``j``, its out-neighbors sorted by clockwise distance :math:`(s - j) \bmod n`.

    Parameters
    ----------
    base : Topology

    Returns
    -------
    list of list of int
        ``out[j]`` is the order in which agent ``j`` visits its out-neighbors (self excluded).

    References
    ----------
    Bluefog ``GetDynamicOnePeerSendRecvRanks`` (``sorted_send_ranks``).
    """
    n = base.size
    return [sorted(base.out_neighbors(j), key=lambda s, j=j: (s - j) % n) for j in range(n)]


def patterns_from_receive_lists(receive_lists, *, name: str, require: str = "row") -> Topology:
    r"""The pattern in which agent ``i`` receives from every ``j`` in ``receive_lists[i]``,
    with Bluefog's uniform weights :math:`1 / (|R_i| + 1)` on self and senders.

    Parameters
    ----------
    receive_lists : sequence of sequence of int
        ``receive_lists[i]``: the agents whose values agent ``i`` receives this step.
    name : str
    require : {"row", "doubly"}
        Stochasticity checked on the resulting ``W``.

    Returns
    -------
    Topology
        Not required to be connected (a single pattern is connected only over time).
    """
    n = len(receive_lists)
    A = np.zeros((n, n), dtype=bool)
    for i, senders in enumerate(receive_lists):
        A[i, list(senders)] = True
    return Topology(uniform_weights(A), name=name, require=require, check_connected=False)


def _one_peer_receive_lists(out: list[list[int]], t: int) -> list[list[int]]:
    recv: list[list[int]] = [[] for _ in out]
    for j, targets in enumerate(out):
        recv[targets[t % len(targets)]].append(j)
    return recv


def _one_peer_period(base: Topology, out: list[list[int]]) -> int:
    degrees = [len(o) for o in out]
    if min(degrees) == 0:
        j = degrees.index(0)
        raise ValueError(
            f"base must give every agent at least one out-neighbor; agent {j} sends to nobody "
            f"in {base.name}. Use a strongly connected base topology (e.g. exponential_graph(n))."
        )
    period = math.lcm(*degrees)
    if period > MAX_PERIOD:
        raise ValueError(
            f"base gives a one-peer period of {period} patterns (the lcm of the out-degrees "
            f"{sorted(set(degrees))}), above MAX_PERIOD = {MAX_PERIOD}: every pattern becomes a "
            "static branch inside jit. Use a base whose agents have equal out-degrees "
            "(exponential_graph, ring_graph, random_regular_graph)."
        )
    return period


def dynamic_one_peer_graph(base: Topology) -> DynamicTopology:
    r"""One-peer dynamic topology over any static ``base`` (see the module docstring).

    At step :math:`t` agent :math:`j` sends to its :math:`(t \bmod d_j)`-th out-neighbor in
    clockwise order, and :math:`W^{(t)}_{ij} = 1/(|R_i(t)| + 1)` on self and senders.
    Each pattern's edges are a subset of ``base``'s; the sequence is periodic with period
    :math:`\operatorname{lcm}_j d_j` (at most :data:`MAX_PERIOD`).

    Parameters
    ----------
    base : Topology
        A static topology; every agent needs an out-neighbor (``n = 1`` gives ``W = [1]``).

    Returns
    -------
    DynamicTopology
        ``patterns[t]`` has ``in_neighbors(i) == recv_ranks`` and ``out_neighbors(i) ==
        send_ranks`` of Bluefog's generator at its ``t``-th ``next()``.

    Raises
    ------
    TypeError
        If ``base`` is not a :class:`Topology`.
    ValueError
        If an agent has no out-neighbor or the period exceeds :data:`MAX_PERIOD`.

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py``, ``GetDynamicOnePeerSendRecvRanks(topo,
    self_rank)``.

    Examples
    --------
    >>> from bluefog.topology import ring_graph
    >>> d = dynamic_one_peer_graph(ring_graph(6))
    >>> d.period, d.at(0).in_neighbors(0), d.at(1).in_neighbors(0)
    (2, [5], [1])
    """
    if not isinstance(base, Topology):
        raise TypeError(
            f"base must be a static bluefog.topology.Topology; got {type(base).__name__}. "
            "Build it first, e.g. dynamic_one_peer_graph(exponential_graph(8))."
        )
    return _one_peer(base, f"one_peer({base.name})", lambda t: f"one_peer({base.name}, t={t})")


def _one_peer(base: Topology, name: str, pattern_name) -> DynamicTopology:
    n = base.size
    if n == 1:
        return DynamicTopology([Topology(np.ones((1, 1)), name=pattern_name(0))], period=1,
                               name=name)
    out = clockwise_out_neighbors(base)
    period = _one_peer_period(base, out)
    patterns = []
    for t in range(period):
        recv = _one_peer_receive_lists(out, t)
        single = all(len(r) == 1 for r in recv)
        patterns.append(patterns_from_receive_lists(
            recv, name=pattern_name(t), require="doubly" if single else "row"))
    return DynamicTopology(patterns, period=period, name=name)


def one_peer_exponential_graph(n: int) -> DynamicTopology:
    r"""One-peer exponential graph: at step ``t`` agent ``i`` sends to :math:`(i + 2^k) \bmod n`
    and receives from :math:`(i - 2^k) \bmod n`, :math:`k = t \bmod \tau`, weights 1/2.

    .. math:: W^{(t)} = \tfrac12 (I + P^{-2^{t \bmod \tau}}), \quad
              \tau = \lceil \log_2 n \rceil,

    with :math:`P` the cyclic shift (:math:`(Px)_i = x_{i+1}`). It is
    :func:`dynamic_one_peer_graph` over :func:`~bluefog.topology.exponential_graph`, so each
    pattern is a subgraph of the static exponential graph (same directions) and agent ``i``
    sends and receives exactly as Bluefog's ``GetDynamicOnePeerSendRecvRanks(
    ExponentialGraph(n), i)``. Each pattern is doubly stochastic with one peer per agent; for
    ``n`` a power of two the product over one period is exactly
    :math:`\tfrac1n \mathbf 1\mathbf 1^\top` (exact averaging in :math:`\log_2 n` steps).

    Parameters
    ----------
    n : int
        Number of agents, ``>= 1``.

    Returns
    -------
    DynamicTopology
        Period :math:`\tau` (1 for ``n = 1``).

    References
    ----------
    B. Ying, K. Yuan, Y. Chen, H. Hu, P. Pan, W. Yin, "Exponential graph is provably
    efficient for decentralized deep training", NeurIPS 2021; Bluefog
    ``bluefog/common/topology_util.py``, ``GetDynamicOnePeerSendRecvRanks``.

    Examples
    --------
    >>> d = one_peer_exponential_graph(8)
    >>> d.period, [d.at(t).in_neighbors(0) for t in range(3)]
    (3, [[7], [6], [4]])
    """
    n = check_size(n)
    return _one_peer(exponential_graph(n), f"one_peer_exponential(n={n})",
                     lambda t: f"one_peer_exponential(n={n}, hop={2 ** t})")
