r"""Inner-outer dynamic topologies for machines of ``local_size`` agents (Bluefog's
``GetInnerOuterRingDynamicSendRecvRanks`` and ``GetInnerOuterExpo2DynamicSendRecvRanks``).

Agents ``m L, ..., m L + L - 1`` sit on machine ``m`` (``L = local_size``, ``M = size / L``
machines). At step :math:`t` the agent of local rank :math:`o = t \bmod L` on every machine
is the *outer* agent: it exchanges with the outer agent of another machine, while the other
:math:`L - 1` agents of each machine exchange inside it, on a ring (or exponential hops)
that skips :math:`o`. Every agent sends to one agent and receives from one agent, so each
pattern is :math:`W^{(t)} = \tfrac12 (I + \Pi_t)` with :math:`\Pi_t` a permutation matrix,
doubly stochastic (Bluefog's weights :math:`1/(|R_i| + 1) = 1/2`). Only one of the ``L``
agents of a machine uses the slow link per step.

Reference: Bluefog ``bluefog/common/topology_util.py``; Bluefog's README (the
``InnerOuterExpo2`` dynamic topology used for ``neighbor_allreduce`` on several machines).
"""

from __future__ import annotations

import math

from ._families import check_size
from .dynamic import DynamicTopology
from .one_peer import patterns_from_receive_lists
from .validation import check_positive_int

__all__ = ["inner_outer_ring_graph", "inner_outer_exponential_graph"]


def _check_machines(size, local_size, what: str) -> tuple[int, int]:
    size = check_size(size, "size")
    L = check_positive_int(local_size, "local_size")
    if size % L:
        raise ValueError(
            f"local_size must divide size (machines of equal size); got size={size}, "
            f"local_size={L}. Use a local_size among the divisors of {size}."
        )
    if L < 3:
        raise ValueError(
            f"{what} needs local_size >= 3 (one outer agent and an inner ring of at least two); "
            f"got local_size={L}. Use hierarchical_neighbor_allreduce or "
            "dynamic_one_peer_graph(exponential_graph(size)) instead."
        )
    if size // L < 2:
        raise ValueError(
            f"{what} needs at least 2 machines; got size={size}, local_size={L} (1 machine). "
            f"Inside one machine use dynamic_one_peer_graph(ring_graph({size}))."
        )
    return size, L


def _floor_log2(x: int) -> int:
    r"""Exact :math:`\lfloor \log_2 x \rfloor` for an int ``x >= 1`` (no float rounding)."""
    return int(x).bit_length() - 1


def _ring_receive(rank: int, t: int, L: int, M: int) -> int:
    machine, local = divmod(rank, L)
    outer = t % L
    if local == outer:
        return ((machine - 1) % M) * L + local
    source = (local - 1) % L
    if source == outer:
        source = (source - 1) % L
    return machine * L + source


def _expo2_receive(rank: int, t: int, L: int, M: int) -> int:
    machine, local = divmod(rank, L)
    outer = t % L
    if local == outer:
        hop = 2 ** (t % (_floor_log2(M - 1) + 1))
        return ((machine - hop) % M) * L + local
    hop = 2 ** (t % (_floor_log2(L - 2) + 1))
    if hop >= (local - outer) % L:
        hop += 1  # skip the outer agent
    return machine * L + (local - hop) % L


def _build(size: int, L: int, period: int, receive, name: str) -> DynamicTopology:
    M = size // L
    patterns = [patterns_from_receive_lists([[receive(i, t, L, M)] for i in range(size)],
                                            name=f"{name}[t mod {period} = {t}]", require="doubly")
                for t in range(period)]
    return DynamicTopology(patterns, period=period, name=name)


def inner_outer_ring_graph(size: int, local_size: int) -> DynamicTopology:
    r"""Inner-outer ring: the outer agent :math:`o = t \bmod L` of machine :math:`m` receives
    from the agent of local rank :math:`o` on machine :math:`(m - 1) \bmod M`; every other
    agent receives from its predecessor on the ring of its machine's agents without
    :math:`o` (local rank :math:`\ell - 1`, or :math:`\ell - 2` when :math:`\ell - 1 = o`,
    mod :math:`L`).

    .. math:: W^{(t)}_{ii} = W^{(t)}_{i, r_t(i)} = \tfrac12,

    with :math:`r_t(i)` that receive rank; period :math:`L`.

    Parameters
    ----------
    size : int
        Number of agents, a multiple of ``local_size`` with at least 2 machines.
    local_size : int
        Agents per machine, ``>= 3`` (as in Bluefog).

    Returns
    -------
    DynamicTopology
        ``patterns[t]`` has ``in_neighbors(i) == recv_ranks`` and ``out_neighbors(i) ==
        send_ranks`` of Bluefog's generator at its ``t``-th ``next()``.

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py``, ``GetInnerOuterRingDynamicSendRecvRanks(
    world_size, local_size, self_rank)``.

    Examples
    --------
    >>> d = inner_outer_ring_graph(6, 3)     # machines {0, 1, 2} and {3, 4, 5}
    >>> [d.at(0).in_neighbors(i) for i in range(6)]
    [[3], [2], [1], [0], [5], [4]]
    """
    size, L = _check_machines(size, local_size, "inner_outer_ring_graph")
    return _build(size, L, L, _ring_receive,
                  f"inner_outer_ring(size={size}, local_size={L})")


def inner_outer_exponential_graph(size: int, local_size: int) -> DynamicTopology:
    r"""Inner-outer exponential graph: the outer agent :math:`o = t \bmod L` of machine
    :math:`m` receives from the agent of local rank :math:`o` on machine
    :math:`(m - 2^{t \bmod (\tau_M + 1)}) \bmod M`, :math:`\tau_M = \lfloor \log_2(M - 1)
    \rfloor`; every other agent receives from the agent :math:`h` places before it on the
    ring of its machine's agents without :math:`o`, :math:`h = 2^{t \bmod (\tau_L + 1)}`,
    :math:`\tau_L = \lfloor \log_2(L - 2) \rfloor`. Weights 1/2 on self and sender; period
    :math:`\operatorname{lcm}(L, \tau_M + 1, \tau_L + 1)`.

    Parameters
    ----------
    size : int
        Number of agents, a multiple of ``local_size`` with at least 2 machines.
    local_size : int
        Agents per machine, ``>= 3`` (as in Bluefog).

    Returns
    -------
    DynamicTopology
        ``patterns[t]`` has ``in_neighbors(i) == recv_ranks`` and ``out_neighbors(i) ==
        send_ranks`` of Bluefog's generator at its ``t``-th ``next()``.

    Notes
    -----
    As Bluefog's own comment says, an outer agent may never meet some machines (e.g.
    ``M = 16, L = 4``: local rank 1 always hops 2 machines), yet the period product mixes.

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py``, ``GetInnerOuterExpo2DynamicSendRecvRanks(
    world_size, local_size, self_rank)``; B. Ying et al., "Exponential graph is provably
    efficient for decentralized deep training", NeurIPS 2021.
    """
    size, L = _check_machines(size, local_size, "inner_outer_exponential_graph")
    M = size // L
    period = math.lcm(L, _floor_log2(M - 1) + 1, _floor_log2(L - 2) + 1)
    return _build(size, L, period, _expo2_receive,
                  f"inner_outer_exponential(size={size}, local_size={L})")

