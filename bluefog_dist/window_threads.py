r"""The threads behind :class:`bluefog_dist.windows.MpiWindows`: MPI progress and the
communication worker of the non-blocking window ops.

* :class:`Progress` polls ``Iprobe`` on a private communicator, so that passive-target
  operations aimed at this rank complete while the main thread computes outside MPI (the
  mpich wheel makes no progress otherwise; measured numbers in :mod:`bluefog_dist.windows`).
* :class:`WindowWorker` runs the remote part of the non-blocking window ops
  (``win_put_nonblocking`` ...) on its own thread, one operation after the other in issue
  order (a FIFO queue), so that the transfer runs while the main thread computes. An
  operation is identified by its *ticket* (1, 2, ...); because the queue is FIFO, ticket
  :math:`t` is complete exactly when the count of completed operations is :math:`\ge t`,
  which is what :meth:`WindowWorker.poll` and :meth:`WindowWorker.wait` test (Bluefog's
  ``win_poll`` / ``win_wait``). An exception raised by an operation on the worker is kept
  and raised again on the main thread at the next ``poll``/``wait``/``submit``, so that it
  reaches the program (and :mod:`bluefog_dist.failfast`) instead of dying with the thread.

Both need ``MPI_THREAD_MULTIPLE`` (mpi4py's default request); MPI calls on one window are
serialised by :class:`~bluefog_dist.windows.MpiWindows` with a per-window mutex.

References
----------
MPI 4.0 standard, section 12.4 (thread safety: ``MPI_THREAD_MULTIPLE``) and chapter 12
(one-sided communication, passive target); Bluefog ``bluefog/torch/mpi_ops.py``
(``win_put_nonblocking``, ``win_poll``, ``win_wait``: handles of operations that a background
thread completes).
"""

from __future__ import annotations

import queue
import threading
import time

__all__ = ["Progress", "WindowWorker", "WindowOpError"]


class WindowOpError(RuntimeError):
    """A non-blocking window operation failed on the communication thread."""


class Progress:
    """A daemon thread polling ``Iprobe`` on a duplicate of ``comm`` every ``interval`` s.

    Parameters
    ----------
    comm : mpi4py communicator
    interval : float
        Seconds between polls (default 0.5 ms).
    """

    def __init__(self, comm, interval: float = 5e-4):
        self.comm, self.interval = comm.Dup(), interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True,
                                       name="bluefog-mpi-progress")
        self.thread.start()

    def _spin(self):
        from mpi4py import MPI

        while not self.stop.is_set():
            self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG)
            time.sleep(self.interval)

    def close(self):
        """Stop the thread and free its communicator."""
        self.stop.set()
        self.thread.join()
        self.comm.Free()


class WindowWorker:
    """A FIFO communication thread for the non-blocking window ops (see the module
    docstring). Tickets start at 1; ticket 0 or below names no operation (always done)."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self.issued = 0
        self.completed = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="bluefog-window-ops")
        self._thread.start()

    def _run(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            ticket, fn = item
            try:
                if self._error is None:  # after a failure the rest is not run
                    fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self._error = exc
            with self._cond:
                self.completed = ticket
                self._cond.notify_all()

    def check(self) -> None:
        """Raise :class:`WindowOpError` (chained) if an operation failed on the worker."""
        if self._error is not None:
            raise WindowOpError(
                f"a non-blocking window operation failed on the communication thread: "
                f"{type(self._error).__name__}: {self._error}") from self._error

    def submit(self, fn) -> int:
        """Queue ``fn`` (no arguments); returns its ticket."""
        self.check()
        with self._cond:
            self.issued += 1
            ticket = self.issued
        self._queue.put((ticket, fn))
        return ticket

    @property
    def outstanding(self) -> int:
        """Operations issued and not completed yet."""
        return self.issued - self.completed

    def poll(self, ticket: int) -> bool:
        """Whether operation ``ticket`` (and every earlier one) has completed."""
        self.check()
        return int(ticket) <= self.completed

    def wait(self, ticket: int) -> None:
        """Block until operation ``ticket`` (and every earlier one) has completed."""
        with self._cond:
            while self.completed < int(ticket):
                self._cond.wait()
        self.check()

    def wait_all(self) -> None:
        """Block until every operation issued so far has completed."""
        self.wait(self.issued)

    def close(self) -> None:
        """Complete every queued operation, then stop the thread (an operation's failure is
        raised after the thread has stopped)."""
        try:
            self.wait_all()
        finally:
            self._queue.put(None)
            self._thread.join()
