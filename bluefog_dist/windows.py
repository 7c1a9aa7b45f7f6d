r"""Real one-sided MPI windows (``mpi4py`` ``MPI.Win``) with Bluefog's window semantics.

The host-side counterpart of :mod:`bluefog.comm.window` for the MPI backend: local compute
stays jitted, and these ops run on the host between jitted chunks, on NumPy buffers
registered once (``MPI.Win.Create`` in :meth:`MpiWindows.create`). Every op is passive
target: the origin opens an access epoch on the target (``Lock``), issues
``Accumulate``/``Get`` and closes it (``Unlock``); the target takes no part.

Layout on each rank, per window: a float64 buffer of shape ``(1 + R, d + 1)`` where ``d`` is
the flattened size of the value: row 0 is this rank's own value (what neighbours
``get``), row ``1 + s`` the slot of its ``s``-th in-neighbour (sorted ranks); the last column
counts deliveries (Bluefog's window version). ``put`` is ``Accumulate(op=REPLACE)`` on the data
and ``Accumulate(op=SUM)`` of 1 on the counter in one epoch; ``accumulate`` uses ``SUM`` for
both, so concurrent accumulates from several origins are each applied exactly once.
The owner reads its slots under an exclusive lock on itself, so a collect (read and zero)
is atomic with respect to incoming accumulates: no mass is lost or counted twice.

Progress: with the mpich wheel a passive-target operation does not complete while the target
is outside MPI (measured: an ``Accumulate``/``Unlock`` to a rank sleeping 2 s took 2.0 s;
0.088 s with ``MPIR_CVAR_ASYNC_PROGRESS=1``; 0.017 s with a thread that polls
``Iprobe`` every 0.5 ms). :class:`MpiWindows` therefore starts such a progress thread by
default (``progress="thread"``); ``progress="none"`` relies on the environment (e.g.
``MPIR_CVAR_ASYNC_PROGRESS=1``).

References
----------
Bluefog ``bluefog/torch/mpi_ops.py`` (``win_create`` ... ``get_win_version``); MPI 4.0
standard, chapter 12 (one-sided communication, passive target synchronization).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from bluefog.topology import Topology

__all__ = ["MpiWindows"]


def _neighbors(W: np.ndarray, rank: int):
    n = W.shape[0]
    ins = [j for j in range(n) if j != rank and W[rank, j] != 0]
    outs = [i for i in range(n) if i != rank and W[i, rank] != 0]
    return ins, outs


class _Progress:
    """A daemon thread polling ``Iprobe`` on a private communicator (MPI progress)."""

    def __init__(self, comm, interval: float = 5e-4):
        self.comm, self.interval = comm.Dup(), interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True, name="bluefog-mpi-progress")
        self.thread.start()

    def _spin(self):
        from mpi4py import MPI

        while not self.stop.is_set():
            self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG)
            time.sleep(self.interval)

    def close(self):
        self.stop.set()
        self.thread.join()
        self.comm.Free()


class _Win:
    def __init__(self, win, buf, shape, dtype, ins, outs, topology):
        self.win, self.buf, self.shape, self.dtype = win, buf, shape, dtype
        self.ins, self.outs, self.topology = ins, outs, topology


class MpiWindows:
    """Named one-sided windows of this rank (see the module docstring).

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD`` (duplicated: window traffic never mixes with the caller's).
    progress : {"thread", "none"}
        Start a progress thread (default) or rely on the MPI library's own progress.
    """

    def __init__(self, comm=None, progress: str = "thread"):
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
        self.progress = _Progress(self.comm) if progress == "thread" else None

    # ---- lifecycle (collective) ---------------------------------------------------------
    def create(self, x, name: str, topology, zero_init: bool = False) -> None:
        """Register ``x`` as window ``name`` over ``topology``'s in-edges (collective).

        Every rank must pass the same name and a value of the same shape and dtype; a
        difference raises ``ValueError`` on every rank (one ``allgather``), never a hang."""
        x = np.asarray(x)
        fields = (name, tuple(x.shape), str(x.dtype), getattr(topology, "fingerprint", None),
                  name in self.windows)
        every = self.comm.allgather(fields)
        if any(f != every[0] for f in every):
            raise ValueError(
                f"win_create: every rank must create the same window (name, shape, dtype, "
                f"topology); got {[f[:3] for f in every]} (rank order). Pass the same value "
                "shape and dtype on every rank.")
        if every[0][4]:
            raise ValueError(f"win_create: a window named {name!r} exists already; free it "
                             "first or choose another name.")
        if not isinstance(topology, Topology) or topology.size != self.size:
            raise ValueError(f"win_create: topology must be a static Topology of {self.size} "
                             f"agents (one per rank); got {topology!r}.")
        W = np.asarray(topology.weights)
        ins, outs = _neighbors(W, self.rank)
        buf = np.zeros((1 + len(ins), x.size + 1), np.float64)
        buf[0, :-1] = x.ravel()
        if not zero_init:
            buf[1:, :-1] = x.ravel()
        win = self.MPI.Win.Create(buf, disp_unit=buf.itemsize, comm=self.comm)
        self.windows[name] = _Win(win, buf, x.shape, x.dtype, ins, outs, topology)
        self.comm.Barrier()

    def free(self, name: str | None = None) -> None:
        """Free window ``name`` (``None``: all) after a barrier (collective)."""
        if name is not None:
            self._lookup(name, "win_free")
        names = list(self.windows) if name is None else [name]
        self.comm.Barrier()
        for k in names:
            self.windows.pop(k).win.Free()

    def close(self) -> None:
        """Free every window, stop the progress thread, free the communicator."""
        self.free()
        if self.progress is not None:
            self.progress.close()
        self.comm.Free()

    # ---- one-sided ops ------------------------------------------------------------------
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

    def _send(self, x, name, dst_weights, self_weight, data_op, op):
        w = self._lookup(name, op)
        x = np.asarray(x)
        if x.shape != w.shape:
            raise ValueError(f"{op}: x must have the shape of window {name!r}, {w.shape}; got "
                             f"{x.shape}.")
        MPI = self.MPI
        for dst, weight in self._weights(w, dst_weights, w.outs, "dst_weights", op).items():
            slot = _slot_of(w.topology, dst, self.rank)
            msg = np.ascontiguousarray(weight * x.ravel(), np.float64)
            d = msg.size + 1
            w.win.Lock(dst, MPI.LOCK_SHARED)
            w.win.Accumulate(msg, dst, target=(slot * d, msg.size, MPI.DOUBLE), op=data_op)
            w.win.Accumulate(np.ones(1), dst, target=(slot * d + msg.size, 1, MPI.DOUBLE),
                             op=MPI.SUM)
            w.win.Unlock(dst)
        scale = 1.0 if self_weight is None else float(self_weight)
        with _own(w, self.rank, MPI):
            w.buf[0, :-1] = scale * x.ravel()

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
        slot here."""
        w = self._lookup(name, "win_get")
        MPI, d = self.MPI, w.buf.shape[1]
        for src, weight in self._weights(w, src_weights, w.ins, "src_weights", "win_get").items():
            tmp = np.empty(d - 1, np.float64)
            w.win.Lock(src, MPI.LOCK_SHARED)
            w.win.Get(tmp, src, target=(0, d - 1, MPI.DOUBLE))
            w.win.Unlock(src)
            with _own(w, self.rank, MPI):
                s = 1 + w.ins.index(src)
                w.buf[s, :-1] = weight * tmp
                w.buf[s, -1] += 1

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
            out = float(self_weight) * w.buf[0, :-1]
            for j, a in nbr.items():
                s = 1 + w.ins.index(j)
                out = out + a * w.buf[s, :-1]
                if reset:
                    w.buf[s, :-1] = 0.0
                w.buf[s, -1] = 0.0
            w.buf[0, :-1] = out
        return out.reshape(w.shape).astype(w.dtype)

    def update_then_collect(self, name: str):
        """Bluefog ``win_update_then_collect``: value plus every slot, slots zeroed."""
        w = self._lookup(name, "win_update_then_collect")
        return self.update(name, 1.0, {j: 1.0 for j in w.ins}, reset=True)

    def versions(self, name: str) -> dict:
        """Bluefog ``get_win_version``: ``{in-neighbour: deliveries since last read}``."""
        w = self._lookup(name, "win_versions")
        with _own(w, self.rank, self.MPI):
            return {j: int(w.buf[1 + s, -1]) for s, j in enumerate(w.ins)}


def _slot_of(topology, receiver: int, sender: int) -> int:
    ins, _ = _neighbors(np.asarray(topology.weights), receiver)
    return 1 + ins.index(sender)


class _own:
    """Exclusive lock on this rank's own window (local reads/writes in an epoch)."""

    def __init__(self, w, rank, MPI):
        self.w, self.rank, self.MPI = w, rank, MPI

    def __enter__(self):
        self.w.win.Lock(self.rank, self.MPI.LOCK_EXCLUSIVE)

    def __exit__(self, *exc):
        self.w.win.Unlock(self.rank)
