r"""``win_info`` and the non-blocking window ops of
:class:`bluefog_dist.window_comm.MpiWindowComm` (its methods; ``self`` is the communicator).

They give the protocol's answers (:mod:`bluefog.comm.window_async`,
:class:`bluefog.comm.WindowInfo`) from :class:`bluefog_dist.windows.MpiWindows`:

* ``win_*_nonblocking`` return ``(WinHandle(ticket, 0.0, name), windows)`` where ``ticket``
  is the communication thread's ticket; ``win_poll`` / ``win_wait`` ask that thread. The
  algorithm state may hold the handle (a :func:`bluefog.comm.no_handle` names no op).
* ``win_info`` reports, per schedule round of the window's topology (the simulator's slot
  order; ``-1`` for a padding slot): the in-neighbour, the versions (deliveries since the
  last read), the stamps (the sender's send counter of the newest delivered message, ``-1``
  if none: equal to the sender's step counter for methods that send once per step), the
  arrival times as NaN (a wall-clock arrival is not recorded at the target) and the
  messages in flight as ``-1``: not measurable at the receiver without an extra round trip
  to every sender (the sender's own outstanding non-blocking ops are
  ``comm.mpi.pending()``).

References
----------
Bluefog ``bluefog/torch/mpi_ops.py`` (``win_*_nonblocking``, ``win_poll``, ``win_wait``,
``get_win_version``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bluefog.comm import WindowInfo, WinHandle

__all__ = ["win_put_nonblocking", "win_accumulate_nonblocking", "win_get_nonblocking",
           "win_poll", "win_wait", "win_info"]


def _handle(ticket: int, name: str) -> WinHandle:
    return WinHandle(ticket, 0.0, name)


def win_put_nonblocking(self, windows, x, name, dst_weights=None, self_weight=None):
    """``MpiWindows.put_nonblocking``; returns ``(handle, windows)``."""
    t = self._send(self.mpi.put_nonblocking, x, name, dst_weights, self_weight,
                   "win_put_nonblocking")
    return _handle(t, name), windows


def win_accumulate_nonblocking(self, windows, x, name, dst_weights=None, self_weight=None):
    """``MpiWindows.accumulate_nonblocking``; returns ``(handle, windows)``."""
    t = self._send(self.mpi.accumulate_nonblocking, x, name, dst_weights, self_weight,
                   "win_accumulate_nonblocking")
    return _handle(t, name), windows


def win_get_nonblocking(self, windows, name, src_weights=None):
    """``MpiWindows.get_nonblocking``; returns ``(handle, windows)``."""
    self._enter()
    t = self.mpi.get_nonblocking(name, self._dict(name, src_weights, "in",
                                                  "win_get_nonblocking"))
    return _handle(t, name), windows


def _ticket(self, handle, op) -> int:
    if not isinstance(handle, WinHandle):
        raise TypeError(f"{op}: handle must be the WinHandle returned by a *_nonblocking op "
                        f"(or bluefog.comm.no_handle(name)); got {type(handle).__name__}.")
    self.mpi._lookup(handle.name, op)
    return int(np.asarray(handle.ticket))


def win_poll(self, windows, handle) -> bool:
    """``MpiWindows.poll``: whether the op of ``handle`` has completed at its targets."""
    return self.mpi.poll(_ticket(self, handle, "win_poll"))


def win_wait(self, windows, handle):
    """``MpiWindows.wait``: block until the op of ``handle`` has completed; returns
    ``windows``."""
    self.mpi.wait(_ticket(self, handle, "win_wait"))
    return windows


def win_info(self, windows, name) -> WindowInfo:
    """Per slot (schedule-round order): sources, versions, stamps, arrival times (NaN: not
    recorded under MPI) and messages in flight (``-1``: not measurable at the receiver)."""
    info = self.mpi.info(name)
    src = self._rounds(name, "in")
    R = len(src)
    return WindowInfo(
        jnp.asarray(src, jnp.int32),
        jnp.asarray([info["versions"][j] if j >= 0 else 0 for j in src], jnp.int32),
        jnp.asarray([info["stamps"][j] if j >= 0 else -1 for j in src], jnp.int32),
        jnp.full((R,), jnp.nan), jnp.full((R,), -1, jnp.int32))
