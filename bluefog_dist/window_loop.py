r"""The loop arguments of :func:`bluefog_dist.window_comm.run_async`: checks and step counter.

:func:`stop_rule` validates every loop argument in plain Python and is called inside
:func:`bluefog_dist.agreement.agree`, so that an error on one rank (a negative delay given
on rank 2 only, say) is raised on every rank instead of leaving the others waiting in the
start barrier; the fields it returns (except this rank's own delay, which may legitimately
differ between ranks) must be equal on every rank.

References
----------
Bluefog ``examples/pytorch_average_consensus.py --asynchronous-mode`` (a per-rank sleep
emulating a slow agent); the agreement rule of :mod:`bluefog_dist.agreement`.
"""

from __future__ import annotations

import time

import numpy as np

from bluefog.validation import check_nonnegative_int, check_positive_float, check_real

__all__ = ["stop_rule", "rank_delay", "own_steps"]


def rank_delay(compute_delay, size: int, rank: int) -> tuple:
    """``(this rank's delay in seconds, the agreed form)`` of ``compute_delay``.

    ``compute_delay`` is either one number (this rank's own delay; ranks may pass different
    numbers) or a sequence of ``size`` numbers, one per rank, equal on every rank (the agreed
    form is then the tuple, compared across ranks). Every delay must be a finite real
    :math:`\\ge 0`."""
    where, example = "run_async", "compute_delay=0.01"
    if isinstance(compute_delay, (list, tuple, np.ndarray)):
        if np.ndim(compute_delay) != 1 or len(compute_delay) != size:
            raise ValueError(
                f"run_async: compute_delay as a sequence must have one delay per rank "
                f"({size}); got shape {np.shape(compute_delay)}. Pass {size} numbers, or one "
                f"number per rank, e.g. {example}.")
        vals = tuple(check_real(v, f"compute_delay[{i}]", low=0.0, where=where,
                                example=example) for i, v in enumerate(compute_delay))
        return vals[rank], vals
    return check_real(compute_delay, "compute_delay", low=0.0, where=where,
                      example=example), "per-rank"


def stop_rule(steps, duration, trace, on_step, compute_delay, size: int, rank: int) -> dict:
    """Validate ``run_async``'s loop arguments; returns the fields to agree on plus
    ``"delay"`` (this rank's delay, not compared)."""
    if (steps is None) == (duration is None):
        raise ValueError(
            f"run_async: pass exactly one of steps= (own steps of each rank) or duration= "
            f"(seconds of wall clock, one deadline for every rank); got steps={steps!r}, "
            f"duration={duration!r}. Use duration=2.0 when ranks run at different speeds.")
    if trace is not None and not isinstance(trace, str):
        raise TypeError(f"run_async: trace must be a path prefix (str) or None; got "
                        f"{type(trace).__name__}. Pass e.g. trace='/tmp/run'.")
    if on_step is not None and not callable(on_step):
        raise TypeError(f"run_async: on_step must be a callable (k, state, seconds) -> None or "
                        f"None; got {type(on_step).__name__}. Pass e.g. "
                        "on_step=lambda k, state, seconds: None.")
    if steps is not None:
        check_nonnegative_int(steps, "steps", where="run_async")
        stop = "steps"                              # own step counts may differ by rank
    else:
        stop = ("duration", check_positive_float(duration, "duration", where="run_async"))
    delay, agreed = rank_delay(compute_delay, size, rank)
    return {"stop": stop, "trace": trace is not None, "compute_delay": agreed, "delay": delay}


def own_steps(steps, duration, start):
    """Yield own step numbers ``k``: ``steps`` of them, or until ``start + duration``.

    ``start`` is taken on each rank's monotonic clock right after a common barrier (the
    barrier's skew is microseconds on one node), so no wall-clock synchronisation between
    nodes is needed.
    """
    k = 0
    while k < steps if steps is not None else time.monotonic() < start + float(duration):
        yield k
        k += 1
