r"""Run a window algorithm asynchronously in virtual time, through the one engine.

:func:`asynchronous` turns an algorithm written against the window ops into an ordinary
:class:`~bluefog.Algorithm` whose engine step is one *event* of a :class:`Timeline`: at event
:math:`e` (time :math:`t_e`) every agent runs the step program, but only the agents whose step
completes at :math:`t_e` keep its result; the others keep their state, while messages that
arrive for them by :math:`t_e` are still delivered into their windows (passive target). Each
agent's window ops see a :class:`~bluefog.comm.Clock` with ``now = t_e``, its ``active`` flag,
the link latencies and the in-flight capacity, so a message sent at :math:`t_e` from ``j`` to
``i`` is delivered by ``i``'s first window op at or after :math:`t_e + L_{ij}`.

Everything stays one ``jit(vmap(scan))`` program: the timeline is a constant table looked up
by the event counter and the agent's rank.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithm import Algorithm
from ..comm import Clock, ClockedComm, Window
from ..comm.window_state import deliver_all, time_dtype
from .timeline import Timeline

__all__ = ["AsyncState", "asynchronous", "drain", "check_windows", "window_mass"]


class AsyncState(NamedTuple):
    """State of :func:`asynchronous` for one agent.

    Attributes
    ----------
    inner : NamedTuple
        The wrapped algorithm's state; it has a ``windows`` field ``{name: Window}``.
    event : int32 scalar
        Events processed so far (the engine's step counter).
    """

    inner: Any
    event: jax.Array


def _check_inner(state, name: str):
    if not hasattr(state, "_replace") or "windows" not in getattr(state, "_fields", ()):
        raise TypeError(
            f"asynchronous: {name}'s state must be a NamedTuple with a 'windows' field (the "
            f"dict returned by comm.win_create); got {type(state).__name__}. Use an algorithm "
            "written against the window ops, e.g. algorithms.async_push_sum().")


def asynchronous(algorithm: Algorithm, timeline: Timeline) -> Algorithm:
    """Wrap a window algorithm so that each engine step is one event of ``timeline``.

    Run it for ``timeline.events`` steps (``bluefog_sim.run(asynchronous(alg, tl), problem,
    topology, steps=tl.events)``); :func:`bluefog.asynchrony.virtual_time` maps the recorded
    steps to virtual time. Past the last event nothing happens (no agent is active).

    Parameters
    ----------
    algorithm : Algorithm
        Written against the window ops; its state is a NamedTuple with a ``windows`` field.
    timeline : Timeline
        From :func:`bluefog.asynchrony.event_timeline`, for ``problem.size`` agents.
    """
    if not isinstance(algorithm, Algorithm):
        raise TypeError(f"asynchronous: algorithm must be a bluefog Algorithm; got "
                        f"{type(algorithm).__name__}.")
    if not isinstance(timeline, Timeline):
        raise TypeError(f"asynchronous: timeline must be a Timeline (bluefog.asynchrony."
                        f"event_timeline(model, events)); got {type(timeline).__name__}.")
    E = timeline.events
    times_np = np.append(timeline.times, np.inf)
    active_np = np.vstack([timeline.active, np.zeros((1, timeline.size), bool)])

    def clocked(ctx, now, active):
        if ctx.comm.size != timeline.size:
            raise ValueError(f"asynchronous: the timeline is for {timeline.size} agents; the run "
                             f"has {ctx.comm.size}. Build the timeline for {ctx.comm.size}.")
        clock = Clock(now, active, timeline.latency, timeline.capacity, timeline.arrivals)
        return ctx._replace(comm=ClockedComm(ctx.comm, clock))

    def init(params, ctx) -> AsyncState:
        now = jnp.zeros((), time_dtype())
        inner = algorithm.init(params, clocked(ctx, now, jnp.ones((), bool)))
        _check_inner(inner, algorithm.name)
        return AsyncState(inner, jnp.zeros((), jnp.int32))

    def step(state: AsyncState, ctx) -> AsyncState:
        e = jnp.minimum(state.event, E)
        now = jnp.asarray(times_np, time_dtype())[e]
        active = jnp.asarray(active_np)[e, ctx.comm.rank()]
        new = algorithm.step(state.inner, clocked(ctx, now, active))
        kept = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b),
                                      new._replace(windows={}), state.inner._replace(windows={}))
        return AsyncState(kept._replace(windows=new.windows), state.event + 1)

    config = {**algorithm.config, "events": E, "capacity": timeline.capacity}
    return Algorithm(init, step, lambda s: algorithm.params(s.inner),
                     f"async_{algorithm.name}", config)


def _windows_of(state) -> dict:
    inner = state.inner if isinstance(state, AsyncState) else state
    _check_inner(inner, "the algorithm")
    return inner.windows


def drain(state):
    """Deliver every message still in flight in a stacked (simulator) state: returns the state
    with each window as if time had run to infinity with nobody sending. Accumulated mass is
    then entirely in the agents' values and buffers (see :func:`window_mass`)."""
    windows = {k: jax.vmap(deliver_all)(w) for k, w in _windows_of(state).items()}
    inner = (state.inner if isinstance(state, AsyncState) else state)._replace(windows=windows)
    return state._replace(inner=inner) if isinstance(state, AsyncState) else inner


def window_mass(window: Window):
    r"""Per agent, value plus every real slot and in-flight message of a stacked window:
    :math:`v_i + \sum_r b_{ir} + \sum_{\text{in flight}} m`, leaf by leaf (padding slots
    excluded). For push-sum, :math:`\sum_i` of it is invariant."""
    rounds = window.topology.schedule.rounds
    real = np.stack([r.active for r in rounds], axis=1) if rounds else np.zeros((window.topology.size, 0), bool)
    flying = np.asarray(window.p_used)                   # (n, R, K)

    def mass(v, b, p):
        v, b, p = np.asarray(v), np.asarray(b), np.asarray(p)
        rb = real.reshape(real.shape + (1,) * (b.ndim - 2))
        fb = (flying & real[:, :, None]).reshape(flying.shape + (1,) * (p.ndim - 3))
        return v + np.sum(np.where(rb, b, 0), axis=1) + np.sum(np.where(fb, p, 0), axis=(1, 2))

    return jax.tree_util.tree_map(mass, window.value, window.buffers, window.pending)


def check_windows(state) -> None:
    """Raise ``RuntimeError`` if any window of a stacked state overflowed its in-flight
    capacity (a message that could not be queued); the timeline's ``sends_per_step`` fixes
    it."""
    for name, win in _windows_of(state).items():
        over = int(np.sum(np.asarray(win.overflow)))
        if over:
            raise RuntimeError(
                f"window {name!r}: {over} message(s) found their in-flight queue full "
                f"(capacity {win.capacity}); results are not exact. Build the timeline with a "
                "larger sends_per_step (sends per window per step of the algorithm).")
