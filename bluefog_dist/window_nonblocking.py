r"""The non-blocking window ops of :class:`bluefog_dist.windows.MpiWindows` (its methods).

Bluefog's ``win_put_nonblocking`` / ``win_accumulate_nonblocking`` / ``win_get_nonblocking``
return a handle at once; ``win_poll(handle)`` says whether the operation has completed and
``win_wait(handle)`` blocks until it has. Here the handle is a *ticket* (an ``int``, 1, 2, ...
in issue order on this rank). At the call, the payload is copied (the caller may change
``x`` afterwards) and this rank's own window value is written (``self_weight * x``), as the
blocking op does; the remote epochs (``Lock`` / ``Accumulate`` / ``Unlock`` per destination,
or ``Get`` per source) then run on the communication thread
(:class:`~bluefog_dist.window_threads.WindowWorker`) while the caller computes. When the
ticket has completed, every message of the op has been applied at its target (``Unlock``
returned), exactly as after the blocking op. The arithmetic is the blocking op's; only *when*
the transfer happens differs.

References
----------
Bluefog ``bluefog/torch/mpi_ops.py`` (``win_put_nonblocking``, ``win_accumulate_nonblocking``,
``win_get_nonblocking``, ``win_poll``, ``win_wait``); MPI 4.0 standard, 12.5.3 (passive
target: ``MPI_Win_unlock`` completes the operations at the target).
"""

from __future__ import annotations

__all__ = ["put_nonblocking", "accumulate_nonblocking", "get_nonblocking", "poll", "wait",
           "wait_all", "pending"]


def put_nonblocking(self, x, name: str, dst_weights=None, self_weight=None) -> int:
    """:meth:`~bluefog_dist.windows.MpiWindows.put` without waiting; returns the ticket."""
    return self._send(x, name, dst_weights, self_weight, self.MPI.REPLACE,
                      "win_put_nonblocking", nonblocking=True)


def accumulate_nonblocking(self, x, name: str, dst_weights=None, self_weight=None) -> int:
    """:meth:`~bluefog_dist.windows.MpiWindows.accumulate` without waiting; returns the
    ticket."""
    return self._send(x, name, dst_weights, self_weight, self.MPI.SUM,
                      "win_accumulate_nonblocking", nonblocking=True)


def get_nonblocking(self, name: str, src_weights=None) -> int:
    """:meth:`~bluefog_dist.windows.MpiWindows.get` without waiting; returns the ticket."""
    return self._get(name, src_weights, "win_get_nonblocking", nonblocking=True)


def _ticket(ticket, op: str) -> int:
    if isinstance(ticket, bool) or not isinstance(ticket, int):
        raise TypeError(f"{op}: handle must be the int returned by a *_nonblocking op; got "
                        f"{ticket!r} of type {type(ticket).__name__}.")
    return ticket


def poll(self, ticket: int) -> bool:
    """Bluefog ``win_poll``: whether operation ``ticket`` has completed (a ticket ``<= 0``
    names no operation: ``True``). Raises the error of a failed operation."""
    ticket = _ticket(ticket, "win_poll")
    if ticket > (0 if self._worker is None else self._worker.issued):
        raise ValueError(f"win_poll: no operation with handle {ticket} was issued on rank "
                         f"{self.rank}; pass a handle returned by a *_nonblocking op.")
    return ticket <= 0 or self._worker.poll(ticket)


def wait(self, ticket: int) -> None:
    """Bluefog ``win_wait``: block until operation ``ticket`` (and every earlier one) has
    completed at its targets. Raises the error of a failed operation."""
    ticket = _ticket(ticket, "win_wait")
    if ticket > (0 if self._worker is None else self._worker.issued):
        raise ValueError(f"win_wait: no operation with handle {ticket} was issued on rank "
                         f"{self.rank}; pass a handle returned by a *_nonblocking op.")
    if ticket > 0:
        self._worker.wait(ticket)


def wait_all(self) -> None:
    """Block until every non-blocking operation of this rank has completed."""
    if self._worker is not None:
        self._worker.wait_all()


def pending(self) -> int:
    """Non-blocking operations of this rank issued and not completed yet."""
    return 0 if self._worker is None else self._worker.outstanding
