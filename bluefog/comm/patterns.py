r"""The patterns of a time-varying topology as data: stacked round tables.

A :class:`~bluefog.topology.DynamicTopology` with :math:`K` patterns is stored as three
NumPy tables, every pattern padded to the largest round count :math:`R`:

* ``sources[k, r, i]``: the agent that agent ``i`` receives from in round ``r`` of pattern
  ``k`` (``i`` itself in a padding round, so a padding round moves no data);
* ``weights[k, r, i]``: its weight :math:`W_k[i, \text{sources}[k, r, i]]` (0 for padding);
* ``self_weights[k, i]``: :math:`W_k[i, i]`;

so that for the pattern :math:`k = k(t)` in force at step ``t``

.. math:: x_i^{+} = s_{k i}\, x_i + \sum_{r=1}^{R} w_{k r i}\, x_{\text{sources}[k, r, i]}
   = \sum_j W_{k}[i, j]\, x_j .

When every pattern is a uniform average (:func:`~bluefog.comm.mixing.uniform_counts`), the
tables also hold the exact divisors ``counts[k, i]`` and the mix is "sum the real edges,
divide once", as for a static topology.

A backend that can receive from a *traced* source (the simulator: one ``all_gather`` over the
agent axis followed by a per-agent take, which XLA fuses into a single gather with no
``n x n`` buffer) executes one exchange per round slot, whatever :math:`K` is: the traced
program, and therefore compile time, does not grow with the number of patterns. A backend
that needs static peers (MPI: ``mpi4jax.sendrecv``) keeps one ``lax.switch`` branch per
pattern instead (see :meth:`bluefog.comm.ScheduleCommunicator.neighbor_allreduce`).

Reference: the schedule form is :mod:`bluefog.topology.schedule`; time-varying mixing as
products :math:`W(t) \cdots W(0)` follows Nedic, Olshevsky & Rabbat, Proc. IEEE 106(5) (2018).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from .mixing import uniform_counts

__all__ = ["PatternTables", "pattern_tables"]


@dataclass(frozen=True, eq=False)
class PatternTables:
    """Stacked, padded schedules of all patterns (see the module docstring).

    Attributes
    ----------
    sources : numpy.ndarray of int32, shape (K, R, n)
    weights : numpy.ndarray of float64, shape (K, R, n)
    self_weights : numpy.ndarray of float64, shape (K, n)
    counts : numpy.ndarray of float64, shape (K, n), or None
        Exact divisors when every pattern is a uniform average, else ``None``.
    """

    sources: np.ndarray
    weights: np.ndarray
    self_weights: np.ndarray
    counts: np.ndarray | None

    @property
    def num_rounds(self) -> int:
        return int(self.sources.shape[1])

    @property
    def active(self) -> np.ndarray:
        """``weights != 0``: round slots that carry a real edge."""
        return self.weights != 0

    def dense(self, k: int) -> np.ndarray:
        """The dense ``(n, n)`` matrix of pattern ``k`` rebuilt from the tables."""
        n = self.self_weights.shape[1]
        W = np.diag(self.self_weights[k]).astype(np.float64)
        for r in range(self.num_rounds):
            W[np.arange(n), self.sources[k, r]] += self.weights[k, r]
        return W


def _build(patterns) -> PatternTables:
    schedules = [p.schedule for p in patterns]
    K, n = len(schedules), schedules[0].size
    R = max(s.num_rounds for s in schedules)
    sources = np.tile(np.arange(n, dtype=np.int32), (K, R, 1))
    weights = np.zeros((K, R, n))
    self_weights = np.stack([np.asarray(s.self_weights, np.float64) for s in schedules])
    for k, sched in enumerate(schedules):
        for r, rnd in enumerate(sched.rounds):
            sources[k, r] = rnd.sources
            weights[k, r] = rnd.weights
    counts = [uniform_counts(s) for s in schedules]
    stacked = None if any(c is None for c in counts) else np.stack(counts)
    for a in (sources, weights, self_weights) + (() if stacked is None else (stacked,)):
        a.setflags(write=False)
    return PatternTables(sources, weights, self_weights, stacked)


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def pattern_tables(topology) -> PatternTables:
    """The :class:`PatternTables` of a (possibly time-varying) topology, cached per object.

    Parameters
    ----------
    topology : Topology or DynamicTopology

    Returns
    -------
    PatternTables
        ``tables.dense(k)`` equals ``topology.patterns[k].weights`` exactly.
    """
    try:
        return _CACHE[topology]
    except (KeyError, TypeError):
        pass
    tables = _build(topology.patterns)
    try:
        _CACHE[topology] = tables
    except TypeError:  # pragma: no cover - objects without weak references
        pass
    return tables
