r"""Compile a mixing matrix into a communication schedule of full permutations.

A schedule writes :math:`x_i^{+} = \sum_j W_{ij} x_j` as

.. math::

    x_i^{+} = s_i\, x_i + \sum_{r=1}^{R} w^{(r)}_i\, x_{\sigma_r(i)},

where :math:`s_i = W_{ii}` is the self weight and, in round :math:`r`, agent :math:`i` receives
from agent :math:`\sigma_r(i)` with weight :math:`w^{(r)}_i = W_{i,\sigma_r(i)}`. Every
:math:`\sigma_r` is a *full* permutation of the agents: an agent with no real edge in a round
still exchanges, with weight 0. Both backends execute only full permutations, so a
``lax.ppermute`` under ``vmap`` and an ``mpi4jax.sendrecv`` under MPI cannot disagree about
what a missing edge means (docs/architecture.md, "Full permutations only").

Circulant graphs (every agent has the same set of offsets ``(j - i) mod n``, e.g. ring and
exponential graphs) get one round per offset. Any other graph is split by bipartite edge
colouring (Konig's line colouring theorem): the directed edges ``j -> i`` form a bipartite
graph between senders and receivers whose maximum degree is
:math:`\Delta = \max(\max_i d^{in}_i, \max_j d^{out}_j)`, and it can be properly edge-coloured
with exactly :math:`\Delta` colours; each colour class is a partial permutation, padded to a
full one with zero-weight pairs.

References
----------
D. Konig, "Graphok es alkalmazasuk a determinansok es a halmazok elmeleteben" (1916);
A. Schrijver, *Combinatorial Optimization*, Thm. 20.1 (bipartite edge colouring).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sparse import SparseWeights

__all__ = ["Round", "Schedule", "compile_schedule"]


@dataclass(frozen=True, eq=False)
class Round:
    """One exchange round: a full permutation plus per-receiver weights.

    Attributes
    ----------
    sources : numpy.ndarray of int, shape (n,)
        Agent ``i`` receives the value of agent ``sources[i]``.
    weights : numpy.ndarray of float64, shape (n,)
        ``weights[i] = W[i, sources[i]]``; 0 where the pair is padding (no edge).
    offset : int or None
        For circulant graphs, ``sources[i] = (i + offset) mod n``.
    """

    sources: np.ndarray
    weights: np.ndarray
    offset: int | None = None

    @property
    def destinations(self) -> np.ndarray:
        """Inverse permutation: agent ``j`` sends its value to ``destinations[j]``."""
        dest = np.empty_like(self.sources)
        dest[self.sources] = np.arange(self.sources.size)
        return dest

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """``(source, destination)`` pairs, the ``perm`` argument of ``lax.ppermute``."""
        return tuple((int(s), int(d)) for d, s in enumerate(self.sources))

    @property
    def active(self) -> np.ndarray:
        """Boolean mask of receivers for which this round carries a real edge."""
        return self.weights != 0


@dataclass(frozen=True, eq=False)
class Schedule:
    """The compiled schedule of a mixing matrix (see the module docstring for the math).

    Attributes
    ----------
    size : int
    self_weights : numpy.ndarray, shape (n,)
        ``W[i, i]``.
    rounds : tuple of Round
    """

    size: int
    self_weights: np.ndarray
    rounds: tuple[Round, ...]

    @property
    def num_rounds(self) -> int:
        return len(self.rounds)

    def dense(self) -> np.ndarray:
        """Rebuild the dense ``(n, n)`` mixing matrix the schedule implements."""
        n = self.size
        W = np.diag(self.self_weights).astype(np.float64)
        for rnd in self.rounds:
            W[np.arange(n), rnd.sources] += rnd.weights
        return W

    def bytes_sent_per_agent(self, nbytes: int) -> int:
        """Bytes each agent sends for one ``neighbor_allreduce`` of an ``nbytes`` message.

        Every round is a full permutation, so every agent sends exactly once per round.
        """
        return self.num_rounds * int(nbytes)


def compile_schedule(W) -> Schedule:
    """Compile a validated mixing matrix into a :class:`Schedule`.

    ``W`` is a dense ``(n, n)`` array or a :class:`~bluefog.topology.sparse.SparseWeights`
    (the schedule is built from the edge list, in ``O(n + edges)`` memory, so it is the same
    for both forms). Circulant support (identical offset sets for every agent) gives one round
    per offset, in increasing offset order; otherwise bipartite edge colouring gives
    ``max(max in-degree, max out-degree)`` rounds. ``schedule.dense()`` equals ``W`` exactly.
    """
    sw = W if isinstance(W, SparseWeights) else SparseWeights.from_dense(
        np.asarray(W, dtype=np.float64))
    n = sw.size
    self_weights = sw.diagonal()
    r, c, v = sw.off_diagonal()
    if r.size == 0:
        return _freeze(Schedule(n, self_weights, ()))
    idx = np.arange(n)
    rounds = _circulant_rounds(n, r, c, v)
    if rounds is not None:
        return _freeze(Schedule(n, self_weights, rounds))
    csr = sw.csr()
    rounds = []
    for matching in _bipartite_edge_colouring(r, c, n):
        src = _complete_permutation(matching, n)
        w = np.where(matching >= 0, np.asarray(csr[idx, src]).ravel(), 0.0)
        rounds.append(Round(src, w))
    return _freeze(Schedule(n, self_weights, tuple(rounds)))


def _circulant_rounds(n: int, r, c, v):
    """One round per offset if every agent has the same offsets ``(j - i) mod n``, else None."""
    counts = np.bincount(r, minlength=n)
    m = int(counts[0])
    if not np.all(counts == m):
        return None
    off = ((c - r) % n).reshape(n, m)  # canonical order: m entries per row, row-major
    order = np.argsort(off, axis=1, kind="stable")
    offs = np.take_along_axis(off, order, 1)
    if not np.all(offs == offs[0]):
        return None
    vals = np.take_along_axis(v.reshape(n, m), order, 1)
    idx = np.arange(n)
    return tuple(Round((idx + int(k)) % n, vals[:, q].copy(), offset=int(k))
                 for q, k in enumerate(offs[0]))


def _freeze(s: Schedule) -> Schedule:
    s.self_weights.setflags(write=False)
    for r in s.rounds:
        r.sources.setflags(write=False)
        r.weights.setflags(write=False)
    return s


def _bipartite_edge_colouring(rows: np.ndarray, cols: np.ndarray, n: int) -> list[np.ndarray]:
    """Proper edge colouring of the sender/receiver bipartite graph with Delta colours.

    Edge ``(j -> i)`` exists for every ``(i, j) = (rows[e], cols[e])``, ``i != j``. Returns
    one array per colour, ``matching[i] = j`` (or -1), each a partial permutation. Uses the
    alternating-path (Kempe chain) argument from Konig's theorem: O(E * n).
    """
    delta = int(max(np.bincount(rows, minlength=n).max(), np.bincount(cols, minlength=n).max()))
    recv = -np.ones((n, delta), dtype=np.int64)  # recv[i, c] = sender j on colour c into i
    send = -np.ones((n, delta), dtype=np.int64)  # send[j, c] = receiver i on colour c from j
    for i, j in zip(rows.tolist(), cols.tolist()):
        a = int(np.flatnonzero(send[j] < 0)[0])  # free at sender j
        b = int(np.flatnonzero(recv[i] < 0)[0])  # free at receiver i
        if recv[i, a] >= 0:
            # Swap colours a/b along the alternating path that starts at receiver i with
            # colour a; in a bipartite graph it cannot reach sender j, so a becomes free at i.
            # Receivers are left along colour a, senders along colour b.
            path = []
            r = i
            while True:
                s = int(recv[r, a])
                if s < 0:
                    break
                path.append((r, s, a))
                nr = int(send[s, b])
                if nr < 0:
                    break
                path.append((nr, s, b))
                r = nr
            for r_, s_, c_ in path:
                recv[r_, c_] = -1
                send[s_, c_] = -1
            for r_, s_, c_ in path:
                c2 = b if c_ == a else a
                recv[r_, c2] = s_
                send[s_, c2] = r_
        recv[i, a] = j
        send[j, a] = i
    return [recv[:, c].copy() for c in range(delta)]


def _complete_permutation(matching: np.ndarray, n: int) -> np.ndarray:
    """Extend a partial permutation (``-1`` = unmatched) to a full one.

    Unmatched receivers are paired with unused senders, avoiding self-pairs where possible,
    so padding exchanges move data between distinct agents only when they must.
    """
    src = matching.copy()
    free_recv = list(np.flatnonzero(src < 0))
    used = np.zeros(n, dtype=bool)
    used[src[src >= 0]] = True
    free_send = list(np.flatnonzero(~used))
    k = len(free_recv)
    if k:
        # Rotate the sender list to the first shift with no fixed point (exists unless k == 1
        # and the only free receiver is the only free sender).
        best = 0
        for shift in range(k):
            if all(free_recv[t] != free_send[(t + shift) % k] for t in range(k)):
                best = shift
                break
        for t in range(k):
            src[free_recv[t]] = free_send[(t + best) % k]
    return src
