r"""Non-blocking window ops with Bluefog's semantics: a handle, ``win_poll`` and ``win_wait``.

Bluefog's ``win_put_nonblocking``, ``win_accumulate_nonblocking`` and ``win_get_nonblocking``
start a one-sided operation and return a handle at once; ``win_poll(handle)`` says whether it
has completed, ``win_wait(handle)`` blocks until it has. The point is overlap: the transfer
runs while the caller computes (e.g. SGP's overlap variant sends the previous iterate while
the next gradient is computed, :func:`algorithms.async_sgp` with ``overlap=True``).

In the explicit-state window model of :mod:`bluefog.comm.window` a non-blocking op has the
*same arithmetic* as its blocking op: the message is delivered when the clock says it has
arrived (at once under the immediate clock; at :math:`t + L_{ij}` in virtual time). What the
handle adds is the op's completion time,

.. math:: \text{due} = t + \max_{i \in \text{out}(j)} L_{ij} \quad (\text{put, accumulate}),
    \qquad t + \max_{i \in \text{in}(j)} L_{ji} \quad (\text{get}),

(in replay mode the largest recorded arrival of the op's messages), so ``win_poll`` is
:math:`\text{now} \ge \text{due}` and ``win_wait`` is a no-op on the values (an agent cannot
block in virtual time; its messages arrive when they arrive). Under MPI
(:class:`bluefog_dist.window_comm.MpiWindowComm`) the same calls run the transfer on a
communication thread and ``win_wait`` really blocks.

These functions are methods of :class:`bluefog.comm.window.WindowOps` (``self`` is the
communicator).

References
----------
Bluefog ``bluefog/torch/mpi_ops.py`` (``win_put_nonblocking``, ``win_accumulate_nonblocking``,
``win_get_nonblocking``, ``win_poll``, ``win_wait``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import window_weights as ww
from .window_state import time_dtype

__all__ = ["WinHandle", "no_handle", "win_put_nonblocking", "win_accumulate_nonblocking",
           "win_get_nonblocking", "win_poll", "win_wait"]


@dataclass(frozen=True)
class WinHandle:
    """The handle of a non-blocking window op (a pytree: keep it in the algorithm state).

    Attributes
    ----------
    name : str (static)
        The window.
    ticket : int32 scalar
        Which op: in the simulator the message's stamp (this agent's send counter; ``-1``
        for a get); under MPI the communication thread's ticket. ``ticket < 0`` together
        with ``due = 0`` (:func:`no_handle`) names no op (always complete).
    due : float scalar
        Virtual time by which every message of the op has arrived (simulator); 0 under MPI,
        where completion is polled on the communication thread.
    """

    ticket: Any
    due: Any
    name: str


jax.tree_util.register_dataclass(WinHandle, data_fields=["ticket", "due"], meta_fields=["name"])


def no_handle(name: str) -> WinHandle:
    """A handle of no operation on window ``name`` (complete at once), e.g. for an algorithm
    state before its first non-blocking send."""
    return WinHandle(jnp.asarray(-1, jnp.int32), jnp.zeros((), time_dtype()), name)


def _check_handle(handle, windows, op: str) -> WinHandle:
    if not isinstance(handle, WinHandle):
        raise TypeError(f"{op}: handle must be the WinHandle returned by a *_nonblocking op "
                        f"(or bluefog.comm.no_handle(name)); got {type(handle).__name__}.")
    ww.lookup(windows, handle.name, op)
    return handle


def _latency_due(self, win, direction: str, tdt):
    """``max`` latency over this agent's out-edges (sends) or in-edges (gets)."""
    clock = self._win_clock()
    if clock.latency is None:
        return jnp.zeros((), tdt)
    L = np.asarray(clock.latency, np.float64)
    edges = ww._edge_matrix(win.topology)                   # edges[i, j]: j -> i
    if direction == "out":
        per = np.max(np.where(edges, L, -np.inf), axis=0)   # over receivers i, per sender j
    else:
        per = np.max(np.where(edges, L, -np.inf), axis=1)   # over senders j, per receiver i
    return self._table(np.where(np.isfinite(per), per, 0.0), tdt)


def _replay_due(self, win, table, ticket, tdt):
    """Replay mode: the latest recorded arrival of this agent's message with stamp
    ``ticket`` over its receivers (``inf`` if one never arrived)."""
    A = np.asarray(table, np.float64)                        # (n, R, M)
    due = np.full((win.topology.size, A.shape[2]), -np.inf)
    for r, rnd in enumerate(win.topology.schedule.rounds):
        for i in np.flatnonzero(rnd.active):
            due[rnd.sources[i]] = np.maximum(due[rnd.sources[i]], A[i, r])
    row = self._table(np.where(due == -np.inf, 0.0, due), tdt)
    return row[jnp.clip(ticket, 0, row.shape[0] - 1)]


def _nonblocking(self, windows, name, op, direction, blocking):
    win = ww.lookup(windows, name, op)
    tdt, clock = win.arrived.dtype, self._win_clock()
    ticket = win.sent if direction == "out" else jnp.asarray(-1, jnp.int32)
    windows = blocking()
    now = jnp.asarray(clock.now, tdt)
    table = None if clock.arrivals is None else clock.arrivals.get(name)
    if table is not None and direction == "out":
        due = _replay_due(self, win, table, ticket, tdt)
    else:
        due = now + _latency_due(self, win, direction, tdt)
    return WinHandle(jnp.asarray(ticket, jnp.int32), due, name), windows


def win_put_nonblocking(self, windows, x, name: str, dst_weights=None, self_weight=None):
    """Start :meth:`~bluefog.comm.window.WindowOps.win_put`; returns ``(handle, windows)``
    (Bluefog ``win_put_nonblocking``). Same arithmetic as ``win_put``."""
    return _nonblocking(self, windows, name, "win_put_nonblocking", "out",
                        lambda: self.win_put(windows, x, name, dst_weights, self_weight))


def win_accumulate_nonblocking(self, windows, x, name: str, dst_weights=None,
                               self_weight=None):
    """Start :meth:`~bluefog.comm.window.WindowOps.win_accumulate`; returns
    ``(handle, windows)`` (Bluefog ``win_accumulate_nonblocking``)."""
    return _nonblocking(self, windows, name, "win_accumulate_nonblocking", "out",
                        lambda: self.win_accumulate(windows, x, name, dst_weights, self_weight))


def win_get_nonblocking(self, windows, name: str, src_weights=None):
    """Start :meth:`~bluefog.comm.window.WindowOps.win_get`; returns ``(handle, windows)``
    (Bluefog ``win_get_nonblocking``)."""
    return _nonblocking(self, windows, name, "win_get_nonblocking", "in",
                        lambda: self.win_get(windows, name, src_weights))


def win_poll(self, windows, handle: WinHandle):
    """Bluefog ``win_poll``: whether the op of ``handle`` has completed, i.e. every message
    of it has arrived by the clock's current time (a traced bool; always true under the
    immediate clock)."""
    handle = _check_handle(handle, windows, "win_poll")
    now = jnp.asarray(self._win_clock().now, jnp.asarray(handle.due).dtype)
    return now >= handle.due


def win_wait(self, windows, handle: WinHandle) -> dict:
    """Bluefog ``win_wait``: complete the op of ``handle``; returns ``windows``. In virtual
    time a no-op on the values (messages are delivered when they arrive, by the window ops
    that follow)."""
    _check_handle(handle, windows, "win_wait")
    return windows
