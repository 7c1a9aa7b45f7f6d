r"""``Faults``: a set of fault models plus the receiver's rule, compiled into small tables.

The models (:mod:`bluefog.faults.models`) are turned once, in NumPy, into a few integer
tables (outage windows, partition labels, crash windows) that are constants of the compiled
program. Whether the message ``j -> i`` of step ``t`` is delivered is then a vectorised
expression over those tables plus a counter-based hash (:mod:`bluefog.faults.hashing`) of
``(seed, t, i, j)``, evaluated inside the compiled loop from the traced step counter. The
program's size does not depend on the number of windows, crashes or steps (one comparison
over a table of ``K`` windows), and the same expression, evaluated in NumPy, is the oracle.

Receiver rules (what agent ``i`` computes when some messages of its row did not arrive;
:math:`A_i(t)` is the set of in-neighbors whose message arrived, :math:`W_{ij}` the weights):

``"renormalise"``
    .. math:: x_i^{+} = \frac{W_{ii} x_i + \sum_{j \in A_i(t)} W_{ij} x_j}
                             {W_{ii} + \sum_{j \in A_i(t)} W_{ij}}

    (for a uniform-average row: the mean of what arrived and its own value).
``"absorb"``
    The missing weight is put on the receiver's own value:
    :math:`x_i^{+} = x_i + \sum_{j \in A_i(t)} W_{ij} (x_j - x_i)`. With a symmetric ``W``
    and symmetric faults (crashes, undirected outages, partitions) every effective matrix is
    symmetric and doubly stochastic, so the average of the agents that exchange is kept.
``"keep_last"``
    A missing message is replaced by the last value received on that link (before any
    arrives, the link is left out as in ``"renormalise"``). This needs per-link memory,
    which lives in the algorithm's state (see :func:`bluefog.faults.with_faults`).

References
----------
F. Fagnani and S. Zampieri, "Average consensus with packet drop communication", SIAM J.
Control Optim. 48(1), 102-133 (2009) (receiver compensation rules for dropped messages);
C. N. Hadjicostis, A. D. Dominguez-Garcia, T. Charalambous, "Robust distributed average
consensus via exchange of running sums", IEEE TAC 61(6) (2016) (last value received per link).
"""

from __future__ import annotations

import copy

import numpy as np

from . import hashing
from .models import BurstyLoss, LinkOutage, MessageLoss, NodeCrash, Partition

__all__ = ["Faults", "RULES"]

#: Accepted receiver rules.
RULES = ("renormalise", "absorb", "keep_last")
_NEVER = 2**31 - 1
_MODELS = (MessageLoss, BurstyLoss, LinkOutage, Partition, NodeCrash)
_SALT_LOSS, _SALT_PHASE, _SALT_STATE = 0x1A55, 0xB0257, 0x57A7E


def _tables(models, kind, rows, width: int):
    out = [row for m in models if isinstance(m, kind) for row in rows(m)]
    return np.asarray(out, dtype=np.int64).reshape(len(out), width)


class Faults:
    r"""Fault models applied to every ``neighbor_allreduce`` / ``neighbor_allgather``.

    Parameters
    ----------
    *models : MessageLoss, BurstyLoss, LinkOutage, Partition, NodeCrash
        Any number (none: a fault-free run with the same code path).
    rule : {"renormalise", "absorb", "keep_last"}
        What a receiver does when a message is missing (module docstring).

    Examples
    --------
    >>> from bluefog.faults import Faults, MessageLoss, NodeCrash
    >>> f = Faults(MessageLoss(0.1, seed=1), NodeCrash(3, at=50))
    >>> bool(f.lost(60, 3, 4)), bool(f.down(60, 3))
    (True, True)
    """

    def __init__(self, *models, rule: str = "renormalise"):
        for m in models:
            if not isinstance(m, _MODELS):
                raise TypeError(
                    f"Faults: every model must be one of MessageLoss, BurstyLoss, LinkOutage, "
                    f"Partition, NodeCrash; got {type(m).__name__}. Pass e.g. "
                    f"Faults(MessageLoss(0.1), rule='renormalise').")
        if rule not in RULES:
            raise ValueError(f"Faults: rule must be one of {', '.join(map(repr, RULES))}; got "
                             f"{rule!r}.")
        self.models, self.rule = tuple(models), rule
        self._losses = [m for m in models if isinstance(m, (MessageLoss, BurstyLoss))]
        self._outages = _tables(models, LinkOutage, lambda m: [
            r for j, i in m.links for r in ([(j, i, m.start, m.end)] + (
                [] if m.directed else [(i, j, m.start, m.end)]))], 4)
        self._partitions = [m for m in models if isinstance(m, Partition)]
        self._labels = None  # per run size: check_size(n)
        self._crashes = _tables(models, NodeCrash, lambda m: [
            (m.agent, m.at, _NEVER if m.rejoin is None else m.rejoin, m.state == "reset")], 4)

    # ---- validation against the run ---------------------------------------------------
    def check_size(self, n: int) -> "Faults":
        """This model for ``n`` agents: refuse agents outside ``[0, n)`` and return a copy
        holding the partition label table of ``n`` agents (the original is unchanged, so one
        ``Faults`` can serve runs of different sizes)."""
        used = [("LinkOutage", a) for a in self._outages[:, :2].ravel()]
        used += [("NodeCrash", a) for a in self._crashes[:, 0]]
        used += [("Partition", a) for m in self._partitions for g in m.groups for a in g]
        for where, a in used:
            if not 0 <= a < n:
                raise ValueError(f"faults: {where} names agent {a}, but the run has {n} agents "
                                 f"(indices 0..{n - 1}). Use an agent index below {n}.")
        labels = np.zeros((len(self._partitions), n), np.int64)
        for p, m in enumerate(self._partitions):
            for g, group in enumerate(m.groups):
                labels[p, list(group)] = g + 1
        sized = copy.copy(self)
        sized._labels, sized._size = labels, n
        return sized

    @property
    def has_crashes(self) -> bool:
        return len(self._crashes) > 0

    @property
    def has_resets(self) -> bool:
        return bool(self._crashes[:, 3].any()) if self.has_crashes else False

    # ---- masks (NumPy with xp=np, traced JAX with xp=jax.numpy) -----------------------
    def _int(self, table, xp):
        return xp.asarray(table.astype(np.int32 if xp is not np else np.int64))

    def _window(self, lo, hi, t, xp):
        return (self._int(lo, xp) <= t) & (t < self._int(hi, xp))

    def down(self, t, agent, xp=np):
        """Whether ``agent`` is crashed during step ``t``."""
        c = self._crashes
        if not len(c):
            return xp.asarray(False)
        hit = (self._int(c[:, 0], xp) == agent) & self._window(c[:, 1], c[:, 2], t, xp)
        return xp.any(hit)

    def reset_now(self, t, agent, xp=np):
        """Whether ``agent`` rejoins at step ``t`` with its initial state."""
        c = self._crashes
        if not len(c):
            return xp.asarray(False)
        hit = ((self._int(c[:, 0], xp) == agent) & (self._int(c[:, 2], xp) == t)
               & (self._int(c[:, 3], xp) > 0))
        return xp.any(hit)

    @staticmethod
    def _below(u, p: float, xp):
        """``u < p 2^32`` (always true for ``p = 1``)."""
        if p >= 1.0:
            return xp.ones_like(u, dtype=bool)
        return u < xp.uint32(hashing.threshold(p))

    def _random_loss(self, m, t, i, j, xp):
        u = hashing.draw(m.seed, _SALT_LOSS, t, i, j, xp=xp)
        if isinstance(m, MessageLoss):
            return self._below(u, m.p, xp)
        phase = hashing.draw(m.seed, _SALT_PHASE, i, j, xp=xp) % xp.uint32(m.burst)
        block = (xp.asarray(t).astype(xp.uint32) + phase) // xp.uint32(m.burst)
        bad = self._below(hashing.draw(m.seed, _SALT_STATE, block, i, j, xp=xp), m.bad, xp)
        return xp.where(bad, self._below(u, m.loss_bad, xp), self._below(u, m.loss_good, xp))

    def lost(self, t, receiver, sender, xp=np):
        """Whether the message ``sender -> receiver`` of step ``t`` is lost (any model)."""
        out = xp.asarray(False)
        for m in self._losses:
            out = out | self._random_loss(m, t, receiver, sender, xp)
        o = self._outages
        if len(o):
            hit = ((self._int(o[:, 0], xp) == sender) & (self._int(o[:, 1], xp) == receiver)
                   & self._window(o[:, 2], o[:, 3], t, xp))
            out = out | xp.any(hit)
        if self._partitions:
            if self._labels is None:
                raise ValueError("Faults.lost: a Partition needs the number of agents; use "
                                 "faults.check_size(n).lost(...) (runs and communicators do).")
            labels = self._int(self._labels, xp)
            lo = self._int(np.array([m.start for m in self._partitions]), xp)
            hi = self._int(np.array([m.end for m in self._partitions]), xp)
            split = labels[:, receiver] != labels[:, sender]
            out = out | xp.any(split & (lo <= t) & (t < hi))
        if self.has_crashes:
            out = out | self.down(t, receiver, xp) | self.down(t, sender, xp)
        return out

    def __repr__(self) -> str:
        inner = ", ".join([repr(m) for m in self.models] + [f"rule={self.rule!r}"])
        return f"Faults({inner})"
