r"""Split one schedule round into a local permutation and whole-rank messages.

With ``R`` ranks holding contiguous blocks of ``k`` agents (rank ``q`` holds agents
``q k .. q k + k - 1``), a round :math:`\sigma` (agent ``i`` receives from
:math:`\sigma(i)`) splits, for the receiving rank ``q``, into

* the **local part**: local agents ``j`` whose source :math:`\sigma(qk + j)` lies in the
  same block (a gather inside the block, no MPI), and
* the **cross part**: for every other rank ``p``, the rows
  :math:`\{\sigma(qk + j) : \lfloor \sigma(qk + j) / k \rfloor = p\}`, in increasing ``j``,
  which ``p`` sends to ``q`` as **one** message.

The rank-level graph (``q`` receives from ``p`` when some row crosses) is itself compiled
into full permutations of the *ranks* by :func:`bluefog.topology.schedule.compile_schedule`
(one round per offset for circulant rank graphs, Konig edge colouring otherwise), so every
rank takes part in every step of the exchange with one ``sendrecv`` and no rank waits for a
peer that is busy elsewhere. A padding pair of the rank permutation carries a one-row
dummy message (both sides know statically that it is padding).

For a circulant agent graph with offset :math:`s = a k + b` (:math:`0 \le b < k`), rank
``q`` receives rows only from ranks ``q + a`` and ``q + a + 1`` (mod ``R``): at most two
peers per round (the placement trade-off is in
:mod:`bluefog_dist.block_comm`).

Reference: B. Ying et al., "BlueFog", arXiv:2111.04287 (2021) (hierarchical placement of
agents on machines); D. Konig (1916) for the edge colouring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bluefog.topology.schedule import compile_schedule

__all__ = ["Message", "RoundPlan", "plan_round"]


@dataclass(frozen=True)
class Message:
    """One ``sendrecv`` of this rank in one step of the rank-level exchange.

    Attributes
    ----------
    source, dest : int
        Rank received from / sent to.
    send_rows : numpy.ndarray of int
        Local rows sent to ``dest`` (empty: a one-row dummy is sent).
    recv_rows : int
        Number of real rows received from ``source`` (0: a one-row dummy arrives).
    step : int
        Index of the rank-level permutation this message belongs to (a rank paired with
        itself in a step has no message in it).
    """

    source: int
    dest: int
    send_rows: np.ndarray
    recv_rows: int
    step: int


@dataclass(frozen=True)
class RoundPlan:
    """This rank's part of one round.

    Attributes
    ----------
    messages : tuple of Message
        In the order every rank executes them.
    lookup : numpy.ndarray of int32, shape (k,)
        Local agent ``j`` takes row ``lookup[j]`` of ``concat(block, received_0, ...)``
        (the received buffers padded to at least one row each).
    local_only : bool
        No row crosses ranks for this rank (``lookup`` indexes the block only).
    """

    messages: tuple
    lookup: np.ndarray
    local_only: bool


def plan_round(sources: np.ndarray, rank: int, block: int) -> RoundPlan:
    """The :class:`RoundPlan` of ``rank`` for the round with ``sources`` (length ``R k``).

    Every rank computes the same rank-level permutations from the same ``sources``, so the
    messages match pairwise.
    """
    sources = np.asarray(sources, dtype=np.int64)
    n = sources.size
    ranks = n // block
    owner_src = sources // block
    owner_dst = np.arange(n) // block
    off = rank * block
    cross = owner_src != owner_dst
    lookup = np.where(cross[off:off + block], -1, sources[off:off + block] - off)
    if not cross.any():
        return RoundPlan((), lookup.astype(np.int32), True)
    adjacency = np.eye(ranks)
    adjacency[owner_dst[cross], owner_src[cross]] = 1.0
    rank_rounds = compile_schedule(adjacency / adjacency.sum(axis=1, keepdims=True)).rounds
    messages, base = [], block
    for step, rnd in enumerate(rank_rounds):
        src_rank = int(rnd.sources[rank])
        dst_rank = int(rnd.destinations[rank])
        if src_rank == rank:
            continue
        mine = np.flatnonzero(owner_src[off:off + block] == src_rank)
        mine = mine[cross[off + mine]]
        theirs = np.arange(dst_rank * block, dst_rank * block + block)
        send = sources[theirs][owner_src[theirs] == rank] - off
        messages.append(Message(src_rank, dst_rank, send.astype(np.int32), int(mine.size),
                                step))
        lookup[mine] = base + np.arange(mine.size)
        base += max(1, mine.size)
    if (lookup < 0).any():  # pragma: no cover - a schedule invariant, not user input
        raise RuntimeError("block plan: a row crossing ranks was not covered by a message")
    return RoundPlan(tuple(messages), lookup.astype(np.int32), False)
