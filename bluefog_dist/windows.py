r"""Real one-sided MPI windows (``mpi4py`` ``MPI.Win``) with Bluefog's window semantics.

The host-side counterpart of :mod:`bluefog.comm.window` for the MPI backend: local compute
stays jitted, and these ops run on the host between jitted chunks, on NumPy buffers
registered once (``MPI.Win.Create`` in :meth:`MpiWindows.create`). Every op is passive
target: the origin opens an access epoch on the target (``Lock``), issues
``Accumulate``/``Get`` and closes it (``Unlock``); the target takes no part.

Layout on each rank, per window: a float64 buffer of shape ``(1 + R, d + 2)`` where ``d`` is
the flattened size of the value. Row 0 is this rank's own value (what neighbours ``get``),
row ``1 + s`` the slot of its ``s``-th in-neighbour (sorted ranks). Column 0 is the *stamp*:
in a slot, the sender's send counter when it sent the newest delivered message (``-1``: none
yet; Bluefog has no stamp, the simulator's :class:`bluefog.comm.WindowInfo` does); in row 0,
this rank's sends so far. Columns ``1 .. d`` hold the data, the last column counts deliveries
since the last read (Bluefog's window version). One send is two operations in one epoch per
destination: ``put`` is ``Accumulate(REPLACE)`` of ``[stamp, d_ij x]`` and ``Accumulate(SUM)``
of 1 on the counter; ``accumulate`` is ``Accumulate(REPLACE)`` of the stamp and
``Accumulate(SUM)`` of ``[d_ij x, 1]``, so concurrent accumulates from several origins are
each applied exactly once. The owner reads its slots under an exclusive lock on itself, so
a collect (read and zero) is atomic with respect to incoming accumulates: no mass is lost or
counted twice.

Non-blocking ops (Bluefog ``win_put_nonblocking`` ... ``win_poll`` / ``win_wait``): the
payload is copied and this rank's own value written at the call; the remote epochs run on a
communication thread (:class:`~bluefog_dist.window_threads.WindowWorker`, FIFO), and the call
returns a ticket at once. Blocking ops issued while non-blocking ones are outstanding go
through the same queue, so a sender's messages to a target always complete in send order.

Progress: with the mpich wheel a passive-target operation does not complete while the target
is outside MPI (measured: an ``Accumulate``/``Unlock`` to a rank sleeping 2 s took 2.0 s;
0.088 s with ``MPIR_CVAR_ASYNC_PROGRESS=1``; 0.017 s with a thread that polls
``Iprobe`` every 0.5 ms). :class:`MpiWindows` therefore starts such a progress thread by
default (``progress="thread"``); ``progress="none"`` relies on the environment (e.g.
``MPIR_CVAR_ASYNC_PROGRESS=1``).

Exit: windows still open at interpreter exit are freed by an ``atexit`` handler (collective:
a rank that finished waits there for the others, whose late operations on it still
complete); if the rank is exiting on an uncaught exception, the handler aborts the job
instead, since the other ranks may be waiting for this one.

References
----------
Bluefog ``bluefog/torch/mpi_ops.py`` (``win_create`` ... ``get_win_version``,
``win_*_nonblocking``, ``win_poll``, ``win_wait``); MPI 4.0 standard, chapter 12 (one-sided
communication, passive target synchronization; accumulate ordering, 12.7.2).
"""

from __future__ import annotations

import atexit
import sys
import threading

import numpy as np

from bluefog.topology import Topology

from .failfast import abort_job
from .window_threads import Progress, WindowWorker

__all__ = ["MpiWindows"]


def _neighbors(W: np.ndarray, rank: int):
    n = W.shape[0]
    ins = [j for j in range(n) if j != rank and W[rank, j] != 0]
    outs = [i for i in range(n) if i != rank and W[i, rank] != 0]
    return ins, outs


class _Win:
    def __init__(self, win, buf, shape, dtype, rank, topology):
        W = np.asarray(topology.weights)
        self.win, self.buf, self.shape, self.dtype = win, buf, shape, dtype
        self.ins, self.outs = _neighbors(W, rank)
        #: the row of this rank's slot at each out-neighbour
        self.row_at = {i: 1 + _neighbors(W, i)[0].index(rank) for i in self.outs}
        self.topology, self.sent = topology, 0
        self.mutex = threading.Lock()  # one thread at a time in MPI calls on this window

    @property
    def d(self) -> int:
        return self.buf.shape[1] - 2


class MpiWindows:
    """Named one-sided windows of this rank (see the module docstring).

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD`` (duplicated: window traffic never mixes with the caller's).
    progress : {"thread", "none"}
        Start a progress thread (default) or rely on the MPI library's own progress.
    progress_interval : float
        Seconds the progress thread sleeps between polls (default 0.5 ms).
    """

    def __init__(self, comm=None, progress: str = "thread", progress_interval: float = 5e-4):
        from mpi4py import MPI

        if progress not in ("thread", "none"):
            raise ValueError(f"MpiWindows: progress must be 'thread' or 'none'; got "
                             f"{progress!r}.")
        if progress == "thread" and MPI.Query_thread() < MPI.THREAD_MULTIPLE:
            raise RuntimeError("MpiWindows: a progress thread needs MPI_THREAD_MULTIPLE; MPI "
                               f"was initialised with level {MPI.Query_thread()}. Initialise "
                               "with mpi4py's default (multiple) or pass progress='none'.")
        self.MPI = MPI
        self.comm = (comm or MPI.COMM_WORLD).Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.windows: dict = {}
        #: ``{name: {in-neighbour: deliveries}}`` seen by the last update (record/replay)
        self.last_read: dict = {}
        if isinstance(progress_interval, bool) or not isinstance(
                progress_interval, (int, float)) or not 0 <= progress_interval < 1:
            raise ValueError(f"MpiWindows: progress_interval must be a number of seconds in "
                             f"[0, 1); got {progress_interval!r}. Pass e.g. 5e-4.")
        self.progress = (Progress(self.comm, float(progress_interval))
                         if progress == "thread" else None)
        self._worker: WindowWorker | None = None
        self.closed = False
        atexit.register(self._at_exit)

    # ---- lifecycle (collective) ---------------------------------------------------------
    def create(self, x, name: str, topology, zero_init: bool = False,
               layout: str | None = None) -> None:
        """Register ``x`` as window ``name`` over ``topology``'s in-edges (collective).

        Every rank must pass the same name, a value of the same shape and dtype, the same
        topology and the same ``layout`` (a caller's description of what ``x`` flattens,
        e.g. a pytree's structure and leaf dtypes); a difference raises ``ValueError`` on
        every rank (one ``allgather``), never a hang."""
        x = np.asarray(x)
        fields = (name, tuple(x.shape), str(x.dtype), getattr(topology, "fingerprint", None),
                  layout, name in self.windows)
        every = self.comm.allgather(fields)
        if any(f[:5] != every[0][:5] for f in every):
            keys = ("name", "shape", "dtype", "topology", "layout")
            diff = [k for i, k in enumerate(keys) if any(f[i] != every[0][i] for f in every)]
            raise ValueError(
                f"win_create: every rank must create the same window; the ranks differ in "
                f"{diff}: {[tuple(f[keys.index(k)] for k in diff) for f in every]} (rank "
                f"order). Pass a value of the same structure, shape and dtype on every rank.")
        if any(f[5] for f in every):
            raise ValueError(f"win_create: a window named {name!r} exists already; free it "
                             "first or choose another name.")
        if not isinstance(topology, Topology) or topology.size != self.size:
            raise ValueError(f"win_create: topology must be a static Topology of {self.size} "
                             f"agents (one per rank); got {topology!r}.")
        ins, _ = _neighbors(np.asarray(topology.weights), self.rank)
        buf = np.zeros((1 + len(ins), x.size + 2), np.float64)
        buf[1:, 0] = -1.0                                   # no message delivered yet
        buf[0, 1:-1] = x.ravel()
        if not zero_init:
            buf[1:, 1:-1] = x.ravel()
        win = self.MPI.Win.Create(buf, disp_unit=buf.itemsize, comm=self.comm)
        self.windows[name] = _Win(win, buf, x.shape, x.dtype, self.rank, topology)
        self.comm.Barrier()

    def free(self, name: str | None = None) -> None:
        """Free window ``name`` (``None``: all) after completing this rank's outstanding
        non-blocking ops and a barrier (collective)."""
        if name is not None:
            self._lookup(name, "win_free")
        names = list(self.windows) if name is None else [name]
        self.wait_all()
        self.comm.Barrier()
        for k in names:
            self.windows.pop(k).win.Free()

    def close(self) -> None:
        """Free every window, stop the threads, free the communicator (collective)."""
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self._at_exit)
        self.free()
        if self._worker is not None:
            self._worker.close()
        if self.progress is not None:
            self.progress.close()
        self.comm.Free()

    def _at_exit(self) -> None:
        if self.closed or self.MPI.Is_finalized():
            return
        if getattr(sys, "last_value", None) is not None:
            abort_job(f"[bluefog rank {self.rank}] MpiWindows: exiting on an uncaught exception "
                      "with windows open; aborting the MPI job (freeing the windows is "
                      "collective and the other ranks may be waiting for this one).")
        self.close()

    # ---- checks -------------------------------------------------------------------------
    def _lookup(self, name, op) -> _Win:
        if name not in self.windows:
            raise ValueError(f"{op}: no window named {name!r} on rank {self.rank}; the windows "
                             f"that exist are {sorted(self.windows)}. Create it first with "
                             f"win_create(x, {name!r}, topology).")
        return self.windows[name]

    def _weights(self, w: _Win, weights, peers, arg, op) -> dict:
        if weights is None:
            return {p: 1.0 for p in peers}
        if not isinstance(weights, dict):
            raise TypeError(f"{op}: {arg} must be a dict {{rank: weight}} or None; got "
                            f"{type(weights).__name__}.")
        bad = sorted(set(weights) - set(peers))
        if bad:
            raise ValueError(f"{op}: {arg} names ranks {bad} that are not neighbours of rank "
                             f"{self.rank} in {w.topology.name!r} (neighbours: {peers}).")
        return {int(k): float(v) for k, v in weights.items()}

    # ---- issuing: inline, or on the communication thread ----------------------------------
    def _issue(self, fn, nonblocking: bool) -> int:
        """Run ``fn`` now, or queue it; a blocking op queues too (and waits) while earlier
        non-blocking ops are outstanding, so a sender's operations complete in issue order."""
        if nonblocking:
            if self._worker is None:
                self._worker = WindowWorker()
            return self._worker.submit(fn)
        if self._worker is not None and self._worker.outstanding:
            self._worker.wait(self._worker.submit(fn))
        else:
            fn()
        return 0

    def _send(self, x, name, dst_weights, self_weight, data_op, op, nonblocking=False) -> int:
        w = self._lookup(name, op)
        x = np.asarray(x)
        if x.shape != w.shape:
            raise ValueError(f"{op}: x must have the shape of window {name!r}, {w.shape}; got "
                             f"{x.shape}.")
        weights = self._weights(w, dst_weights, w.outs, "dst_weights", op)
        flat = np.array(x.ravel(), np.float64)              # a copy: x may change after
        stamp, MPI = float(w.sent), self.MPI
        w.sent += 1
        scale = 1.0 if self_weight is None else float(self_weight)
        with _own(w, self.rank, MPI):
            w.buf[0, 1:-1] = scale * flat
            w.buf[0, 0] = w.sent

        def remote():
            for dst, weight in weights.items():
                base, d = w.row_at[dst] * w.buf.shape[1], flat.size
                # the origin buffers must stay alive until Unlock (MPI may read them there)
                if data_op == MPI.REPLACE:
                    first = (np.append(stamp, weight * flat), (base, d + 1), MPI.REPLACE)
                    second = (np.ones(1), (base + d + 1, 1), MPI.SUM)
                else:
                    first = (np.array([stamp]), (base, 1), MPI.REPLACE)
                    second = (np.append(weight * flat, 1.0), (base + 1, d + 1), MPI.SUM)
                with w.mutex:
                    w.win.Lock(dst, MPI.LOCK_SHARED)
                    for data, (disp, count), mpi_op in (first, second):
                        w.win.Accumulate(data, dst, target=(disp, count, MPI.DOUBLE),
                                         op=mpi_op)
                    w.win.Unlock(dst)

        return self._issue(remote, nonblocking)

    def _get(self, name, src_weights, op, nonblocking=False) -> int:
        w = self._lookup(name, op)
        weights = self._weights(w, src_weights, w.ins, "src_weights", op)
        MPI, cols = self.MPI, w.buf.shape[1]

        def remote():
            for src, weight in weights.items():
                tmp = np.empty(cols - 1, np.float64)         # [sent count, value]
                with w.mutex:
                    w.win.Lock(src, MPI.LOCK_SHARED)
                    w.win.Get(tmp, src, target=(0, cols - 1, MPI.DOUBLE))
                    w.win.Unlock(src)
                with _own(w, self.rank, MPI):
                    s = 1 + w.ins.index(src)
                    w.buf[s, 0], w.buf[s, 1:-1] = tmp[0], weight * tmp[1:]
                    w.buf[s, -1] += 1

        return self._issue(remote, nonblocking)

    # ---- one-sided ops ------------------------------------------------------------------
    def put(self, x, name: str, dst_weights=None, self_weight=None) -> None:
        """Bluefog ``win_put``: overwrite this rank's slot at each out-neighbour with
        ``weight * x``; this rank's value becomes ``self_weight * x`` (default ``x``)."""
        self._send(x, name, dst_weights, self_weight, self.MPI.REPLACE, "win_put")

    def accumulate(self, x, name: str, dst_weights=None, self_weight=None) -> None:
        """Bluefog ``win_accumulate``: add ``weight * x`` into this rank's slot at each
        out-neighbour (``MPI_SUM``); this rank's value becomes ``self_weight * x``."""
        self._send(x, name, dst_weights, self_weight, self.MPI.SUM, "win_accumulate")

    def get(self, name: str, src_weights=None) -> None:
        """Bluefog ``win_get``: copy each in-neighbour's value (times its weight) into its
        slot here; the slot's stamp becomes the neighbour's send count."""
        self._get(name, src_weights, "win_get")

    from .window_nonblocking import (accumulate_nonblocking, get_nonblocking,  # noqa: E402
                                     pending, poll, put_nonblocking, wait, wait_all)

    def update(self, name: str, self_weight=None, neighbor_weights=None, reset: bool = False):
        r"""Bluefog ``win_update``: :math:`v \leftarrow a_{ii} v + \sum_j a_{ij} b_j` under an
        exclusive lock on this rank's window (topology weights when both are omitted);
        ``reset`` zeroes the slots read; their versions drop to 0. Returns the value."""
        w = self._lookup(name, "win_update")
        if (self_weight is None) != (neighbor_weights is None):
            raise ValueError("win_update: pass self_weight and neighbor_weights together, or "
                             "neither for the topology's weights.")
        W = np.asarray(w.topology.weights)
        if self_weight is None:
            self_weight, neighbor_weights = W[self.rank, self.rank], {
                j: W[self.rank, j] for j in w.ins}
        nbr = self._weights(w, neighbor_weights, w.ins, "neighbor_weights", "win_update")
        with _own(w, self.rank, self.MPI):
            self.last_read[name] = {j: int(w.buf[1 + w.ins.index(j), -1]) for j in nbr}
            out = float(self_weight) * w.buf[0, 1:-1]
            for j, a in nbr.items():
                s = 1 + w.ins.index(j)
                out = out + a * w.buf[s, 1:-1]
                if reset:
                    w.buf[s, 1:-1] = 0.0
                w.buf[s, -1] = 0.0
            w.buf[0, 1:-1] = out
        return out.reshape(w.shape).astype(w.dtype)

    def update_then_collect(self, name: str):
        """Bluefog ``win_update_then_collect``: value plus every slot, slots zeroed."""
        w = self._lookup(name, "win_update_then_collect")
        return self.update(name, 1.0, {j: 1.0 for j in w.ins}, reset=True)

    def versions(self, name: str) -> dict:
        """Bluefog ``get_win_version``: ``{in-neighbour: deliveries since last read}``."""
        return self.info(name, "win_versions")["versions"]

    def info(self, name: str, op: str = "win_info") -> dict:
        """``{"versions": {j: deliveries since last read}, "stamps": {j: the sender's send
        counter of the newest delivered message, -1 if none}}`` over the in-neighbours
        ``j`` (the MPI side of :class:`bluefog.comm.WindowInfo`)."""
        w = self._lookup(name, op)
        with _own(w, self.rank, self.MPI):
            rows = w.buf[1:, [0, -1]].copy()
        return {"versions": {j: int(rows[s, 1]) for s, j in enumerate(w.ins)},
                "stamps": {j: int(rows[s, 0]) for s, j in enumerate(w.ins)}}


class _own:
    """Exclusive lock on this rank's own window (local reads/writes in an epoch)."""

    def __init__(self, w, rank, MPI):
        self.w, self.rank, self.MPI = w, rank, MPI

    def __enter__(self):
        self.w.mutex.acquire()
        try:
            self.w.win.Lock(self.rank, self.MPI.LOCK_EXCLUSIVE)
        except BaseException:
            self.w.mutex.release()
            raise

    def __exit__(self, *exc):
        try:
            self.w.win.Unlock(self.rank)
        finally:
            self.w.mutex.release()
