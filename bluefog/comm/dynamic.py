r"""Bluefog's per-call form of ``neighbor_allreduce``: weights given for one call.

``neighbor_allreduce(x, self_weight=s, src_weights={j: a_j}, dst_weights={k: b_k})``: agent
``i`` sends :math:`b^{(i)}_k x_i` to every ``k`` in its ``dst_weights`` and computes

.. math:: x_i^{+} = s_i\, x_i + \sum_{j \in \mathrm{src}(i)} a^{(i)}_j\,\bigl(b^{(j)}_i\, x_j\bigr),

i.e. one mixing step with the dense matrix :math:`W_{ii} = s_i`,
:math:`W_{ij} = a^{(i)}_j b^{(j)}_i` (:math:`b = 1` where ``dst_weights`` is ``None``). The
matrix is compiled into a schedule of full permutations exactly like a topology, so the
backends execute it with the same code.

Each argument is either a plain value or a callable ``rank -> value``, evaluated in Python for
a static int rank: the MPI backend evaluates it for its own rank and learns the others' specs
with one host ``allgather``; the simulator, where the rank is traced under ``vmap``, evaluates
it for every rank ``0 .. n-1`` at trace time. This module holds the backend-independent part:
evaluating and checking one rank's spec, reporting every rank's errors the same way, and
building the (cached) schedule from all specs.

Reference: Bluefog ``bf.neighbor_allreduce(tensor, self_weight, src_weights, dst_weights)``
(B. Ying et al., arXiv:2111.04287, 2021).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

from ..topology.schedule import Schedule, compile_schedule
from ..validation import check_real

__all__ = ["DynamicSpec", "rank_spec", "attempt", "agreed", "dynamic_schedule",
           "check_rank_independent"]

OP = "neighbor_allreduce"
_SHOWN_ERRORS = 4

#: ``(self_weight, ((src, a), ...) sorted, ((dst, b), ...) sorted or None)``: plain Python,
#: hashable and picklable (it travels through ``mpi4py``'s ``allgather``).
DynamicSpec = tuple

_SEQUENCES = (list, tuple, set, frozenset, range)


def _peer(key, what: str, rank: int, n: int) -> int:
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
        raise TypeError(f"{OP}: {what} keys must be int ranks; got {key!r} of type "
                        f"{type(key).__name__}.")
    if not 0 <= int(key) < n or int(key) == rank:
        raise ValueError(
            f"{OP}: {what} keys must be other ranks in [0, {n}) (not this rank {rank}; "
            f"its weight is self_weight); got {key}.")
    return int(key)


def _weight(value, what: str) -> float:
    return check_real(value, what, where=OP)


def _resolve(value, rank: int):
    return value(rank) if callable(value) else value


def rank_spec(rank: int, n: int, self_weight, src_weights, dst_weights) -> DynamicSpec:
    """Evaluate and check the per-call weights of agent ``rank`` (callables called with it).

    Parameters
    ----------
    rank, n : int
        The agent whose spec is evaluated, and the number of agents.
    self_weight : real or callable ``rank -> real``
    src_weights : dict ``{rank: real}`` or callable ``rank -> dict``
    dst_weights : dict ``{rank: real}``, sequence of ranks (weight 1), None, or a callable
        ``rank ->`` one of those

    Returns
    -------
    DynamicSpec
        ``(s, sorted src items, sorted dst items or None)``.

    Raises
    ------
    TypeError, ValueError
        With a message naming the argument, what was expected and what was received.

    References
    ----------
    Bluefog ``neighbor_allreduce``'s argument checks (``bluefog/torch/mpi_ops.py``).
    """
    s, src, dst = (_resolve(v, rank) for v in (self_weight, src_weights, dst_weights))
    if s is None or src is None:
        raise ValueError(
            f"{OP}: the dynamic form needs both self_weight and src_weights on every rank "
            f"(a receiver must know its senders); got self_weight={s!r}, src_weights={src!r}. "
            f"Example: self_weight=0.5, src_weights=lambda r: {{(r - 1) % {n}: 0.5}}.")
    s = _weight(s, "self_weight")
    if not isinstance(src, dict):
        raise TypeError(f"{OP}: src_weights must be a dict {{rank: weight}} (or a callable "
                        f"rank -> dict); got {type(src).__name__}.")
    src = {_peer(k, "src_weights", rank, n): _weight(v, f"src_weights[{k}]")
           for k, v in src.items()}
    if dst is None:
        return s, tuple(sorted(src.items())), None
    if isinstance(dst, dict):
        dst = {_peer(k, "dst_weights", rank, n): _weight(v, f"dst_weights[{k}]")
               for k, v in dst.items()}
    elif isinstance(dst, _SEQUENCES):
        dst = {_peer(k, "dst_weights", rank, n): 1.0 for k in dst}
    else:
        raise TypeError(f"{OP}: dst_weights must be a dict {{rank: weight}}, a list of ranks "
                        f"or None (or a callable rank -> one of those); got "
                        f"{type(dst).__name__}.")
    return s, tuple(sorted(src.items())), tuple(sorted(dst.items()))


def attempt(spec_of: Callable[[int], DynamicSpec], rank: int):
    """``(spec, None)`` or ``(None, (exception class name, message))`` for one rank.

    Errors are returned, not raised, so that an MPI rank with a bad spec still joins the
    ``allgather`` (a rank that raised alone would leave the others waiting).
    """
    try:
        return spec_of(rank), None
    except (TypeError, ValueError) as err:
        return None, (type(err).__name__, str(err))


def agreed(results) -> tuple:
    """The specs of all ranks, in rank order, or raise every rank's error at once.

    ``results[r]`` is :func:`attempt`'s answer for rank ``r``. The exception has the type of
    the first failing rank's error; its message lists the failing ranks
    (``"rank 2: neighbor_allreduce: ..."``), so every MPI rank raises the same error.
    """
    bad = [(r, err) for r, (_, err) in enumerate(results) if err is not None]
    if not bad:
        return tuple(spec for spec, _ in results)
    shown = "; ".join(f"rank {r}: {msg}" for r, (_, msg) in bad[:_SHOWN_ERRORS])
    if len(bad) > _SHOWN_ERRORS:
        shown += f"; (and {len(bad) - _SHOWN_ERRORS} more ranks)"
    raise (TypeError if bad[0][1][0] == "TypeError" else ValueError)(shown)


def check_rank_independent(src_weights, dst_weights, n: int) -> None:
    """Refuse per-peer weights that cannot be per-agent where the rank is traced.

    In the simulator every agent runs the same Python call under ``vmap``; a plain dict or
    list would give every agent the same peers, itself included. Empty ones and ``None`` are
    fine; anything else must be a callable ``rank -> value``.
    """
    examples = {"src_weights": f"src_weights=lambda r: {{(r - 1) % {n}: 0.5}}",
                "dst_weights": f"dst_weights=lambda r: {{(r + 1) % {n}: 1.0}} (or None)"}
    for name, value in (("src_weights", src_weights), ("dst_weights", dst_weights)):
        if isinstance(value, (dict,) + _SEQUENCES) and len(value) > 0:
            raise TypeError(
                f"{OP}: in the simulator {name} must be a callable rank -> weights (all agents "
                f"share one Python call under vmap, where the rank is traced, so a plain "
                f"{type(value).__name__} would give every agent the same peers, itself "
                f"included); got {value!r}. Pass e.g. {examples[name]}.")


def _dense(specs: tuple) -> np.ndarray:
    n = len(specs)
    W = np.zeros((n, n))
    problems = []
    for i, (s, _src, _dst) in enumerate(specs):
        W[i, i] = s
    for i, (_s, src, _dst) in enumerate(specs):
        for j, a in src:
            dst_j = specs[j][2]
            if dst_j is None:
                W[i, j] = a
                continue
            dmap = dict(dst_j)
            if i not in dmap:
                problems.append(f"rank {i} lists rank {j} in src_weights but rank {j}'s "
                                f"dst_weights {sorted(dmap)} do not include {i}")
                continue
            W[i, j] = a * dmap[i]
    for j, (_s, _src, dst) in enumerate(specs):
        for i, _b in (dst or ()):
            if j not in dict(specs[i][1]):
                problems.append(f"rank {j} lists rank {i} in dst_weights but rank {i}'s "
                                f"src_weights {sorted(dict(specs[i][1]))} do not include {j}")
    if problems:
        raise ValueError(
            f"{OP} (dynamic form): senders and receivers disagree: " + "; ".join(problems)
            + ". Each receiver must list its senders in src_weights and each sender its "
            "receivers in dst_weights (or pass dst_weights=None to infer them).")
    return W


@lru_cache(maxsize=256)
def dynamic_schedule(specs: tuple) -> Schedule:
    r"""Compile every rank's spec into the schedule of :math:`W_{ii} = s_i`,
    :math:`W_{ij} = a^{(i)}_j b^{(j)}_i` (see the module docstring); cached per specs.

    Raises
    ------
    ValueError
        A receiver lists a sender that does not list it in ``dst_weights``, or the reverse.

    References
    ----------
    The schedule: :func:`bluefog.topology.schedule.compile_schedule` (Konig edge colouring);
    the weights: Bluefog's dynamic ``neighbor_allreduce`` (Ying et al., 2021).
    """
    return compile_schedule(_dense(specs))
