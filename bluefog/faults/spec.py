r"""``Faults``: a set of fault models plus the receiver's rule, compiled into small tables.

The models (:mod:`bluefog.faults.models`) are turned once, in NumPy, into a few fixed-shape
tables (:mod:`bluefog.faults.tables`: seeds and loss thresholds, outage windows, partition
labels, crash windows). Whether the message ``j -> i`` of step ``t`` is delivered is then a
vectorised expression over those tables plus a counter-based hash
(:mod:`bluefog.faults.hashing`) of ``(seed, t, i, j)``, evaluated inside the compiled loop
from the traced step counter. The engine passes the tables to the compiled program as
**inputs** (:meth:`Faults.params`, bound inside the program with :meth:`Faults.bind`), so
only the structure (:attr:`Faults.structure`: the rule and the tables' shapes) is compiled
in: a sweep over seeds, loss rates, windows or crash steps compiles once, and the program's
size does not depend on the number of windows, crashes or steps (one comparison over a table
of ``K`` windows). The same expression, evaluated in NumPy on the tables, is the oracle.

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
from .tables import build_tables, check_params, structure_of

__all__ = ["Faults", "RULES"]

#: Accepted receiver rules.
RULES = ("renormalise", "absorb", "keep_last")
_MODELS = (MessageLoss, BurstyLoss, LinkOutage, Partition, NodeCrash)
_SALT_LOSS, _SALT_PHASE, _SALT_STATE = 0x1A55, 0xB0257, 0x57A7E


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
        self._size = None  # per run size: check_size(n)
        self._tables = build_tables(self.models, None)
        self._bound = None  # traced tables inside a compiled program: bind(params)

    # ---- validation against the run ---------------------------------------------------
    def check_size(self, n: int) -> "Faults":
        """This model for ``n`` agents: refuse agents outside ``[0, n)`` and return a copy
        holding the partition label table of ``n`` agents (the original is unchanged, so one
        ``Faults`` can serve runs of different sizes)."""
        used = [("LinkOutage", a) for a in self._tables["outages"][:, :2].ravel()]
        used += [("NodeCrash", a) for a in self._tables["crashes"][:, 0]]
        used += [("Partition", a) for m in self.models if isinstance(m, Partition)
                 for g in m.groups for a in g]
        for where, a in used:
            if not 0 <= a < n:
                raise ValueError(f"faults: {where} names agent {a}, but the run has {n} agents "
                                 f"(indices 0..{n - 1}). Use an agent index below {n}.")
        sized = copy.copy(self)
        sized._size, sized._tables, sized._bound = n, build_tables(self.models, n), None
        return sized

    # ---- parameters as data -----------------------------------------------------------
    @property
    def structure(self) -> tuple:
        """The static part (hashable): the rule, whether a crash resets its agent, and the
        shape and dtype of every parameter table (:mod:`bluefog.faults.tables`). Two models
        with equal structures run the same compiled program with different :meth:`params`."""
        return structure_of(self._tables, self.rule)

    def params(self) -> dict:
        """The parameter tables (NumPy), the data of a compiled program (module docstring)."""
        if self._tables["labels"].shape[0] and self._size is None:
            raise ValueError("Faults.params: a Partition needs the number of agents; use "
                             "faults.check_size(n).params() (runs do).")
        return {k: v.copy() for k, v in self._tables.items()}

    def bind(self, params: dict) -> "Faults":
        """A copy whose traced evaluations (``xp=jax.numpy``) read ``params`` (e.g. tracers
        of a compiled program's inputs) instead of this model's own tables; ``params`` must
        have this model's :attr:`structure`. NumPy evaluations keep the model's own tables."""
        bound = copy.copy(self)
        bound._bound = check_params(params, self.structure)
        return bound

    def _table(self, name: str, xp):
        if xp is not np and self._bound is not None:
            return self._bound[name]
        return xp.asarray(self._tables[name])

    @property
    def has_crashes(self) -> bool:
        """Whether a :class:`NodeCrash` is present (static: part of :attr:`structure`)."""
        return len(self._tables["crashes"]) > 0

    @property
    def has_resets(self) -> bool:
        """Whether a crash resets its agent at rejoin (static: part of :attr:`structure`)."""
        return self.structure[1]

    # ---- masks (NumPy with xp=np, traced JAX with xp=jax.numpy) -----------------------
    def _crash_hits(self, t, agent, xp):
        c = self._table("crashes", xp)
        return (c[:, 0] == agent) & (c[:, 1] <= t) & (t < c[:, 2]), c

    def down(self, t, agent, xp=np):
        """Whether ``agent`` is crashed during step ``t``: :math:`at \\le t < rejoin`."""
        if not self.has_crashes:
            return xp.asarray(False)
        return xp.any(self._crash_hits(t, agent, xp)[0])

    def reset_now(self, t, agent, xp=np):
        """Whether ``agent`` rejoins at step ``t`` with its initial state."""
        if not self.has_crashes:
            return xp.asarray(False)
        c = self._table("crashes", xp)
        return xp.any((c[:, 0] == agent) & (c[:, 2] == t) & (c[:, 3] > 0))

    @staticmethod
    def _below(u, thr, is_one):
        """``u < thr`` or the probability is 1 (then always true)."""
        return (u < thr) | (is_one > 0)

    def _random_loss(self, t, i, j, xp):
        out = xp.asarray(False)
        iid = self._table("iid", xp)
        for k in range(len(self._tables["iid"])):
            out = out | (hashing.draw(iid[k, 0], _SALT_LOSS, t, i, j, xp=xp) < iid[k, 1])
        b = self._table("bursty", xp)
        for k in range(len(self._tables["bursty"])):
            seed, burst = b[k, 0], b[k, 2]
            u = hashing.draw(seed, _SALT_LOSS, t, i, j, xp=xp)
            phase = hashing.draw(seed, _SALT_PHASE, i, j, xp=xp) % burst
            block = (xp.asarray(t).astype(xp.uint32) + phase) // burst
            bad = hashing.draw(seed, _SALT_STATE, block, i, j, xp=xp) < b[k, 1]
            out = out | xp.where(bad, self._below(u, b[k, 3], b[k, 4]),
                                 self._below(u, b[k, 5], b[k, 6]))
        return out

    def lost(self, t, receiver, sender, xp=np):
        """Whether the message ``sender -> receiver`` of step ``t`` is lost (any model)."""
        out = self._random_loss(t, receiver, sender, xp)
        if len(self._tables["outages"]):
            o = self._table("outages", xp)
            hit = (o[:, 0] == sender) & (o[:, 1] == receiver) & (o[:, 2] <= t) & (t < o[:, 3])
            out = out | xp.any(hit)
        if len(self._tables["windows"]):
            if self._size is None:
                raise ValueError("Faults.lost: a Partition needs the number of agents; use "
                                 "faults.check_size(n).lost(...) (runs and communicators do).")
            labels, w = self._table("labels", xp), self._table("windows", xp)
            split = labels[:, receiver] != labels[:, sender]
            out = out | xp.any(split & (w[:, 0] <= t) & (t < w[:, 1]))
        if self.has_crashes:
            out = out | self.down(t, receiver, xp) | self.down(t, sender, xp)
        return out

    def __repr__(self) -> str:
        inner = ", ".join([repr(m) for m in self.models] + [f"rule={self.rule!r}"])
        return f"Faults({inner})"
