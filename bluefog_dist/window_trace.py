r"""Record the event trace of an asynchronous MPI run (the *record* half of record/replay).

With ``run_async(..., trace=prefix)`` every rank writes ``{prefix}.rank{r}.json`` (plain JSON,
no pickle): for each window, every send call of this rank (the step it was made in and the
ranks it reached: its index is the *stamp* the simulator gives the message) and every read
(``win_update`` / ``win_update_then_collect``: the step and, per in-neighbour ``j``, the
number of ``j``'s messages delivered into the slot since the previous read, taken atomically
with the read under the exclusive lock of :class:`~bluefog_dist.windows.MpiWindows`). A
sender's messages to one target complete in send order (``MPI_Win_unlock`` returns after the
operation completed at the target), so the ``c``-th counted delivery from ``j`` is ``j``'s
``c``-th send to this rank: the counts identify every consumed message by (sender, stamp).
Non-blocking sends are completed before a recorded step ends, so steps stay atomic.
:func:`bluefog.asynchrony.load_trace` merges the rank files and
:func:`bluefog.asynchrony.replay_timeline` replays them in the simulator.

References
----------
MPI 4.0 standard, section 12.5.3 (passive target: ``MPI_Win_unlock`` completes the
operations at the target); Bluefog ``win_accumulate`` / ``win_update_then_collect``.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from bluefog.asynchrony import TRACE_FORMAT, algorithm_fingerprint
from bluefog.comm import WinHandle

__all__ = ["TraceRecorder", "StepLock", "algorithm_state"]


def algorithm_state(state):
    """``state`` without its windows and non-blocking handles (backend bookkeeping: a
    handle's ticket is the MPI communication thread's number, the simulator's a stamp), the
    part of the state that a replay must reproduce."""
    is_handle = lambda v: isinstance(v, WinHandle)  # noqa: E731
    return jax.tree_util.tree_map(lambda v: None if is_handle(v) else v,
                                  state._replace(windows={}), is_leaf=is_handle)


class StepLock:
    """A global mutex over the window ops of one step (recording needs atomic steps).

    An exclusive passive-target lock on a one-counter window of rank 0, acquired by a
    ``Fetch_and_op`` + ``Flush`` (MPICH may defer an ``MPI_Win_lock`` to the first
    operation), released by ``Unlock``. The returned counter is the global step sequence
    number. Emulated compute (``compute_delay``) runs outside the lock, so ranks still step
    at their own rates with no lock-step; only a step's sends and reads are made atomic.
    Collective to create and to free.
    """

    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI = MPI
        self.buf = np.zeros(1, np.int64)
        self.win = MPI.Win.Create(self.buf, disp_unit=8, comm=comm)
        self.one, self.seq = np.ones(1, np.int64), np.zeros(1, np.int64)

    def acquire(self) -> int:
        """Block until this rank holds the lock; returns the global step number."""
        self.win.Lock(0, self.MPI.LOCK_EXCLUSIVE)
        self.win.Fetch_and_op(self.one, self.seq, 0, 0, self.MPI.SUM)
        self.win.Flush(0)
        return int(self.seq[0])

    def release(self) -> None:
        """Release the lock."""
        self.win.Unlock(0)

    def free(self) -> None:
        """Free the window (collective)."""
        self.win.Free()


class TraceRecorder:
    """Collects one rank's trace (see the module docstring); :meth:`write` saves it.

    Parameters
    ----------
    rank, size : int
    algorithm : bluefog.Algorithm
        Its name and config are the trace's algorithm fingerprint.
    topology : Topology
        Its ``fingerprint`` is stored and checked on replay.
    """

    def __init__(self, rank: int, size: int, algorithm, topology):
        self.rank, self.size, self.step = int(rank), int(size), 0
        self.algorithm, self.topology = algorithm_fingerprint(algorithm), topology.fingerprint
        self.windows: dict = {}
        self.sequence: list = []
        self.iterates: list = []
        self.final: list | None = None

    def _win(self, name):
        return self.windows.setdefault(name, {"sends": [], "reads": []})

    def sent(self, name: str, dests) -> None:
        """One send call on window ``name`` that reached ranks ``dests``."""
        self._win(name)["sends"].append([self.step, sorted(int(d) for d in dests)])

    def read(self, name: str, counts: dict) -> None:
        """One read of window ``name``: ``counts[j]`` deliveries from ``j`` consumed."""
        self._win(name)["reads"].append(
            [self.step, [[int(j), int(c)] for j, c in sorted(counts.items())]])

    def end_step(self, params, state) -> None:
        """Close the current step: store its iterate (flattened ``params``) and the state."""
        self.iterates.append(np.asarray(ravel_pytree(params)[0], np.float64).tolist())
        self.final = np.asarray(ravel_pytree(algorithm_state(state))[0],
                                np.float64).tolist()
        self.step += 1

    def write(self, prefix: str) -> str:
        """Write ``{prefix}.rank{rank}.json``; returns the path."""
        path = f"{prefix}.rank{self.rank}.json"
        doc = {"format": TRACE_FORMAT, "rank": self.rank, "size": self.size,
               "algorithm": self.algorithm, "topology": self.topology, "steps": self.step,
               "sequence": self.sequence,
               "windows": self.windows, "iterates": self.iterates, "final": self.final}
        with open(path, "w") as f:
            json.dump(doc, f)
        return path
