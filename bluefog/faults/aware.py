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

The wrapper depends only on the static part of the model (crashes present, a reset present,
``keep_last``); the crash windows are read at trace time from the model of the
communicator the step is given (``ctx.comm.faults``, bound by the engine to the program's
input tables, :mod:`bluefog.faults.inputs`). So :func:`with_faults` returns the *same*
wrapped object for the same algorithm and the same static part, and a run with other crash
steps reuses the compiled program.
"""

from __future__ import annotations

from collections import OrderedDict
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


#: ``(id(algorithm), static flags) -> (algorithm, wrapped)``, least recently used last; the
#: entry holds the algorithm, so its id is never reused while the entry lives.
_WRAPPED: "OrderedDict[tuple, tuple]" = OrderedDict()
_MAX_WRAPPED = 64


def with_faults(algorithm: Algorithm, faults: Faults | None) -> Algorithm:
    """``algorithm`` wrapped to apply ``faults``' crashes and ``keep_last`` memory.

    Returned unchanged when neither is needed (losses under ``"renormalise"``/``"absorb"``
    are applied by the communicator alone). The wrapped state is :class:`FaultAwareState`;
    ``params`` reads the inner state. The same algorithm under models with the same static
    part gets the same wrapped object (so the engine's program cache can reuse its programs).
    """
    if faults is None or not (faults.has_crashes or faults.rule == "keep_last"):
        return algorithm
    flags = (faults.rule == "keep_last", faults.has_resets, faults.has_crashes)
    key = (id(algorithm), flags)
    entry = _WRAPPED.get(key)
    if entry is not None and entry[0] is algorithm:
        _WRAPPED.move_to_end(key)
        return entry[1]
    wrapped = _wrap(algorithm, *flags)
    _WRAPPED[key] = (algorithm, wrapped)
    while len(_WRAPPED) > _MAX_WRAPPED:
        _WRAPPED.popitem(last=False)
    return wrapped


def _wrap(algorithm: Algorithm, keep_last: bool, resets: bool, crashes: bool) -> Algorithm:
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
        faults = ctx.comm.faults  # the model bound to this program's tables
        if resets:
            inner = _where(faults.reset_now(t, rank, jnp), state.initial._replace(count=t), inner)
        memory = state.memory
        if keep_last:
            view = MemoryComm(ctx.comm, state.memory)
            new = algorithm.step(inner, ctx._replace(comm=view))
            memory = view.new_memory
        else:
            new = algorithm.step(inner, ctx)
        if crashes:
            new = _where(faults.down(t, rank, jnp), inner._replace(count=new.count), new)
        return FaultAwareState(new, state.initial, memory, new.count)

    return Algorithm(init, step, lambda s: algorithm.params(s.inner), algorithm.name,
                     algorithm.config)
