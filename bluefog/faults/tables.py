r"""Fault parameters as data: the fixed-shape tables a compiled program takes as inputs.

A :class:`bluefog.faults.Faults` is split in two parts:

* its **structure** (static, part of the program-cache key): the receiver rule, how many
  models of each kind it holds (i.i.d. losses, bursty losses, outage rows, partitions,
  crashes), the number of agents the partition labels are written for, and whether a crash
  resets its agent (that adds the initial state to the algorithm state);
* its **parameters** (data, inputs of the compiled program): the tables below. Seeds, loss
  rates, outage and partition windows, partition groups, crash agents and crash/rejoin steps
  are entries of these tables, so a sweep over them with one structure compiles once.

=================  ===========  =============================================================
table              shape        one row per ...
=================  ===========  =============================================================
``iid``            ``(Li, 2)``  ``MessageLoss``: ``seed``, :math:`\lfloor p\,2^{32}\rfloor`
``bursty``         ``(Lb, 7)``  ``BurstyLoss``: ``seed``, threshold of ``bad``, ``burst``,
                                threshold and "is 1" flag of ``loss_bad``, then of ``loss_good``
``outages``        ``(K, 4)``   directed outage: ``sender, receiver, start, end``
``windows``        ``(P, 2)``   ``Partition``: ``start, end``
``labels``         ``(P, n)``   ``Partition``: group label of every agent (0: not listed)
``crashes``        ``(C, 4)``   ``NodeCrash``: ``agent, at, rejoin (2**31-1: never), reset``
=================  ===========  =============================================================

Integer tables are ``int32`` (compared with the int32 step counter), hash tables ``uint32``
(compared with the 32-bit hash, :mod:`bluefog.faults.hashing`), so NumPy and XLA evaluate
the same integers and the NumPy evaluation stays the oracle of the traced one.

Reference: the counter-based design of J. Salmon et al., "Parallel random numbers: as easy as
1, 2, 3", SC 2011 (the random stream is a pure function of a key and counters, so the key can
be data).
"""

from __future__ import annotations

import numpy as np

from . import hashing
from .models import BurstyLoss, LinkOutage, MessageLoss, NodeCrash, Partition

__all__ = ["NEVER", "TABLES", "build_tables", "structure_of", "check_params"]

#: The rejoin step of a permanent crash (never reached by the int32 step counter).
NEVER = 2**31 - 1
#: Table names, in a fixed order.
TABLES = ("iid", "bursty", "outages", "windows", "labels", "crashes")


def _rows(models, kind, rows, width: int, dtype):
    out = [row for m in models if isinstance(m, kind) for row in rows(m)]
    return np.asarray(out, dtype=np.int64).reshape(len(out), width).astype(dtype)


def _prob(p: float) -> tuple[int, int]:
    """``(threshold, is_one)``: ``u < threshold or is_one`` has probability ``p``."""
    return hashing.threshold(p), int(p >= 1.0)


def _outage_rows(m: LinkOutage):
    both = [] if m.directed else [(i, j, m.start, m.end) for j, i in m.links]
    return [(j, i, m.start, m.end) for j, i in m.links] + both


def build_tables(models, n: int | None) -> dict:
    """The parameter tables of ``models`` (module docstring) for ``n`` agents (``None``:
    unknown yet; the partition labels then have no columns)."""
    parts = [m for m in models if isinstance(m, Partition)]
    labels = np.zeros((len(parts), 0 if n is None else n), np.int32)
    if n is not None:
        for p, m in enumerate(parts):
            for g, group in enumerate(m.groups):
                labels[p, list(group)] = g + 1
    return {
        "iid": _rows(models, MessageLoss, lambda m: [(m.seed, hashing.threshold(m.p))], 2,
                     np.uint32),
        "bursty": _rows(models, BurstyLoss, lambda m: [
            (m.seed, hashing.threshold(m.bad), m.burst, *_prob(m.loss_bad),
             *_prob(m.loss_good))], 7, np.uint32),
        "outages": _rows(models, LinkOutage, _outage_rows, 4, np.int32),
        "windows": _rows(models, Partition, lambda m: [(m.start, m.end)], 2, np.int32),
        "labels": labels,
        "crashes": _rows(models, NodeCrash, lambda m: [
            (m.agent, m.at, NEVER if m.rejoin is None else m.rejoin, m.state == "reset")], 4,
            np.int32),
    }


def structure_of(tables: dict, rule: str) -> tuple:
    """The static part of a fault model: the rule, every table's shape and dtype, and
    whether a crash resets its agent (hashable; equal structures compile to one program)."""
    resets = bool(tables["crashes"][:, 3].any()) if len(tables["crashes"]) else False
    return (rule, resets) + tuple((k, tables[k].shape, tables[k].dtype.name) for k in TABLES)


def check_params(params, structure: tuple) -> dict:
    """``params`` (a dict of arrays) checked against ``structure``'s table shapes and dtypes."""
    want = {name: (shape, dtype) for name, shape, dtype in structure[2:]}
    if not isinstance(params, dict) or set(params) != set(want):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise TypeError(f"Faults.bind: params must be a dict with the tables {sorted(want)}; "
                        f"got {got}. Pass faults.params() of a Faults with this structure.")
    for name, (shape, dtype) in want.items():
        v = params[name]
        if tuple(np.shape(v)) != shape or np.dtype(getattr(v, "dtype", None)).name != dtype:
            raise ValueError(
                f"Faults.bind: table {name!r} must have shape {shape} and dtype {dtype}; got "
                f"shape {tuple(np.shape(v))}, dtype {getattr(v, 'dtype', None)}. Bind the "
                "params of a Faults with the same structure (same number of models of each "
                "kind, same number of agents).")
    return params
