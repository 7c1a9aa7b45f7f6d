r"""The fault-aware algorithm: node crashes and per-link memory around any algorithm's step.

The engine wraps the algorithm of a run with faults (:func:`with_faults`), so a crash is
applied inside the compiled program, identically in both backends. With :math:`D_i(t)` =
"agent ``i`` is down during step ``t``" (:meth:`bluefog.faults.Faults.down`) and
:math:`S` the algorithm's step,

.. math::
    s_i^{(t+1)} = \begin{cases} S(s_i^{(t)}) & \text{not } D_i(t) \\
                                s_i^{(t)} \text{ with the counter advanced} & D_i(t)
                  \end{cases}

(the crashed agent still executes the step, so every exchange stays a full permutation, but
all its messages are lost and its result is discarded). At a ``state="reset"`` rejoin step
:math:`t_2` its state is first replaced by its initial state (the one ``algorithm.init``
gave it, kept in the wrapper's state) with the counter set to :math:`t_2`. The step counter
keeps advancing on every agent so that time-varying topologies and fault masks stay in step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..algorithm import Algorithm
from .memory import MemoryComm
from .spec import Faults

__all__ = ["FaultAwareState", "with_faults"]


class FaultAwareState(NamedTuple):
    """State of an algorithm wrapped by :func:`with_faults`.

    Attributes
    ----------
    inner : the wrapped algorithm's state (with its ``count``)
    initial : the wrapped algorithm's initial state (only with ``state="reset"`` crashes;
        else ``()``)
    memory : tuple, one ``(values, weights)`` pair per ``neighbor_allreduce`` call of a step
        (``rule="keep_last"``; else ``()``), see :mod:`bluefog.faults.memory`
    count : int32 scalar, the wrapped state's step counter
    """

    inner: Any
    initial: Any
    memory: Any
    count: jax.Array


def _where(pred, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)


def _check_counted(state, name: str):
    if not (hasattr(state, "_replace") and "count" in getattr(state, "_fields", ())):
        raise TypeError(
            f"faults: a node crash or rule='keep_last' needs a state NamedTuple with a 'count' "
            f"field (the step counter); {name}'s state is {type(state).__name__}. Give the "
            "state a count field, or drop the NodeCrash models and use rule='renormalise'.")


def with_faults(algorithm: Algorithm, faults: Faults | None) -> Algorithm:
    """``algorithm`` wrapped to apply ``faults``' crashes and ``keep_last`` memory.

    Returned unchanged when neither is needed (losses under ``"renormalise"``/``"absorb"``
    are applied by the communicator alone). The wrapped state is :class:`FaultAwareState`;
    ``params`` reads the inner state.
    """
    if faults is None or not (faults.has_crashes or faults.rule == "keep_last"):
        return algorithm
    keep_last, resets = faults.rule == "keep_last", faults.has_resets

    def init(params, ctx):
        inner = algorithm.init(params, ctx)
        _check_counted(inner, algorithm.name)
        memory = ()
        if keep_last:  # trace one step without communicating to learn the calls' shapes
            probe = MemoryComm(ctx.comm)
            algorithm.step(inner, ctx._replace(comm=probe))
            memory = probe.new_memory
        return FaultAwareState(inner, inner if resets else (), memory, inner.count)

    def step(state, ctx):
        inner, t, rank = state.inner, state.inner.count, ctx.comm.rank()
        if resets:
            inner = _where(faults.reset_now(t, rank, jnp), state.initial._replace(count=t), inner)
        memory = state.memory
        if keep_last:
            view = MemoryComm(ctx.comm, state.memory)
            new = algorithm.step(inner, ctx._replace(comm=view))
            memory = view.new_memory
        else:
            new = algorithm.step(inner, ctx)
        if faults.has_crashes:
            new = _where(faults.down(t, rank, jnp), inner._replace(count=new.count), new)
        return FaultAwareState(new, state.initial, memory, new.count)

    return Algorithm(init, step, lambda s: algorithm.params(s.inner), algorithm.name,
                     algorithm.config)
