r"""Run the window algorithms of :mod:`algorithms` on real MPI windows, unchanged.

:class:`MpiWindowComm` answers the window ops of the Communicator protocol
(:mod:`bluefog.comm.window`) with :class:`bluefog_dist.windows.MpiWindows`, so the *same*
algorithm object that the simulator runs in virtual time (``algorithms.async_push_sum()``,
``async_sgp``, ``ad_psgd``) runs under ``mpiexec`` with true asynchrony: no rank waits for
another between steps. The step runs on the host, op by op (the window ops are MPI calls on
the host between JAX computations); the ``windows`` dict in the state holds only the window
names, the memory lives in the MPI windows.

Weights are translated from the simulator's forms: an ``(n, n)`` matrix ``D`` becomes this
rank's ``{i: D[i, rank]}`` (sends) or ``{j: D[rank, j]}`` (reads); a per-round array ``v`` of
length ``R`` becomes ``{peer of round r: v[r]}`` over the window topology's schedule rounds,
as in the simulator.

:func:`run_async` is the loop: ``steps`` own steps of this rank, or steps until a deadline
common to every rank (``duration``), each preceded by ``compute_delay`` seconds of emulated
extra compute (a straggler flag), then a barrier.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bluefog.algorithm import AgentContext
from bluefog.engine import agent_key
from bluefog.validation import check_nonnegative_int, check_positive_float

from .agreement import agree
from .window_trace import StepLock, TraceRecorder
from .windows import MpiWindows

__all__ = ["MpiWindowComm", "run_async"]


class MpiWindowComm:
    """The window ops of the protocol for this MPI rank (see the module docstring)."""

    def __init__(self, windows: MpiWindows | None = None):
        self.mpi = windows or MpiWindows()
        self.size, self.local_size = self.mpi.size, 1
        self._unravel: dict = {}
        self._topo: dict = {}
        #: a :class:`~bluefog_dist.window_trace.TraceRecorder` while recording, else None
        self.recorder = None
        self._lock, self._held = None, False

    def rank(self) -> int:
        """This rank (a Python int)."""
        return self.mpi.rank

    def barrier(self) -> None:
        """``MPI_Barrier`` on the windows' communicator."""
        self.mpi.comm.Barrier()

    # ---- weights -------------------------------------------------------------------------
    def _rounds(self, name, which):
        rounds = self._topo[name].schedule.rounds
        r = self.rank()
        if which == "in":
            return [int(rnd.sources[r]) if rnd.active[r] else -1 for rnd in rounds]
        return [int(rnd.destinations[r]) if rnd.active[rnd.destinations[r]] else -1
                for rnd in rounds]

    def _dict(self, name, weights, which):
        if weights is None:
            return None
        if isinstance(weights, (int, float, np.floating)):
            peers = self.mpi.windows[name].outs if which == "out" else self.mpi.windows[name].ins
            return {p: float(weights) for p in peers}
        arr = np.asarray(weights, np.float64)
        r = self.rank()
        if arr.ndim == 2:
            if which == "out":
                return {i: arr[i, r] for i in self.mpi.windows[name].outs if arr[i, r] != 0}
            return {j: arr[r, j] for j in self.mpi.windows[name].ins}
        out: dict = {}
        for peer, v in zip(self._rounds(name, which), arr):
            if peer >= 0:
                out[peer] = out.get(peer, 0.0) + float(v)
        return out

    def _flat(self, x):
        flat, unravel = ravel_pytree(x)
        return np.asarray(flat, np.float64), unravel

    # ---- the window ops ------------------------------------------------------------------
    def win_create(self, windows, x, name, topology, zero_init=False):
        """``MpiWindows.create`` (collective); returns ``{..., name: name}``."""
        flat, self._unravel[name] = self._flat(x)
        self._topo[name] = topology
        self.mpi.create(flat, name, topology, zero_init=zero_init)
        return {**(windows or {}), name: name}

    def _enter(self):
        """While recording: take the global step lock at this step's first window op."""
        if self._lock is not None and not self._held:
            self.recorder.sequence.append(self._lock.acquire())
            self._held = True

    def _end_step(self):
        if self._held:
            self._lock.release()
            self._held = False

    def _send(self, fn, x, name, dst_weights, self_weight):
        self._enter()
        dests = self._dict(name, dst_weights, "out")
        fn(self._flat(x)[0], name, dests, None if self_weight is None else float(self_weight))
        if self.recorder is not None:
            self.recorder.sent(name, self.mpi.windows[name].outs if dests is None else dests)

    def _read(self, name, out):
        if self.recorder is not None:
            self.recorder.read(name, self.mpi.last_read[name])
        return self._unravel[name](jnp.asarray(out))

    def win_put(self, windows, x, name, dst_weights=None, self_weight=None):
        """``MpiWindows.put``."""
        self._send(self.mpi.put, x, name, dst_weights, self_weight)
        return windows

    def win_accumulate(self, windows, x, name, dst_weights=None, self_weight=None):
        """``MpiWindows.accumulate``."""
        self._send(self.mpi.accumulate, x, name, dst_weights, self_weight)
        return windows

    def win_get(self, windows, name, src_weights=None):
        """``MpiWindows.get``."""
        self._enter()
        self.mpi.get(name, self._dict(name, src_weights, "in"))
        return windows

    def win_update(self, windows, name, self_weight=None, neighbor_weights=None, reset=False):
        """``MpiWindows.update``; returns ``(value, windows)``."""
        sw = None if self_weight is None else float(np.asarray(self_weight))
        self._enter()
        out = self.mpi.update(name, sw, self._dict(name, neighbor_weights, "in"), reset=reset)
        return self._read(name, out), windows

    def win_update_then_collect(self, windows, name):
        """``MpiWindows.update_then_collect``; returns ``(value, windows)``."""
        self._enter()
        return self._read(name, self.mpi.update_then_collect(name)), windows

    def win_in_neighbors(self, windows, name):
        """In-neighbour per schedule round (``-1``: none), as in the simulator."""
        return jnp.asarray(self._rounds(name, "in"), jnp.int32)

    def win_out_neighbors(self, windows, name):
        """Destination per schedule round (``-1``: none), as in the simulator."""
        return jnp.asarray(self._rounds(name, "out"), jnp.int32)

    def win_free(self, windows, name=None):
        """``MpiWindows.free`` (collective)."""
        self.mpi.free(name)
        return {} if name is None else {k: v for k, v in windows.items() if k != name}


def _stop_rule(steps, duration, trace, on_step) -> dict:
    """Validate ``run_async``'s loop arguments (inside :func:`agree`, so every rank raises)."""
    if (steps is None) == (duration is None):
        raise ValueError(
            f"run_async: pass exactly one of steps= (own steps of each rank) or duration= "
            f"(seconds of wall clock, one deadline for every rank); got steps={steps!r}, "
            f"duration={duration!r}. Use duration=2.0 when ranks run at different speeds.")
    if trace is not None and not isinstance(trace, str):
        raise TypeError(f"run_async: trace must be a path prefix (str) or None; got "
                        f"{type(trace).__name__}. Pass e.g. trace='/tmp/run'.")
    if on_step is not None and not callable(on_step):
        raise TypeError(f"run_async: on_step must be a callable (k, state, seconds) -> None or "
                        f"None; got {type(on_step).__name__}. Pass e.g. "
                        "on_step=lambda k, state, seconds: None.")
    if steps is not None:
        check_nonnegative_int(steps, "steps", where="run_async")
        stop = "steps"                              # own step counts may differ by rank
    else:
        stop = ("duration", check_positive_float(duration, "duration", where="run_async"))
    return {"stop": stop, "trace": trace is not None}


def _own_steps(steps, duration, start):
    """Yield own step numbers ``k``: ``steps`` of them, or until ``start + duration``.

    ``start`` is taken on each rank's monotonic clock right after a common barrier (the
    barrier's skew is microseconds on one node), so no wall-clock synchronisation between
    nodes is needed.
    """
    k = 0
    while k < steps if steps is not None else time.monotonic() < start + float(duration):
        yield k
        k += 1


def run_async(algorithm, problem, topology, steps: int | None = None, *,
              duration: float | None = None, x0=None, seed: int = 0,
              compute_delay: float = 0.0, comm: MpiWindowComm | None = None,
              trace: str | None = None, on_step=None):
    r"""Run a window algorithm on this rank with no lock-step, for ``steps`` own steps or
    ``duration`` seconds.

    Each step sleeps ``compute_delay`` seconds first (emulating a slower rank), then runs
    ``algorithm.step`` on the host (its window ops are MPI one-sided calls). Ends with a
    barrier, after which every message sent has been applied at its target. Returns
    ``(state, comm)``; read the windows with ``comm.mpi``, the own step count with
    ``state.count``.

    Every rank leaves a barrier before its first step (the common start). Stop rule
    (exactly one):

    * ``steps``: every rank runs that many *own* steps. With unequal speeds the fast ranks
      finish first and the slowest rank runs on alone, pushing its mass into ranks that no
      longer step; for push-sum methods its weight :math:`v` then decays geometrically and
      a tracker added to the mass-weighted iterate makes :math:`u / v` diverge.
    * ``duration``: every rank steps until one common deadline, ``duration`` seconds after
      the common start, so rank :math:`i` runs about ``duration / t_i`` steps at its own rate
      :math:`t_i` and all stop within one step of each other: the wall-clock counterpart of
      the simulator's virtual-time horizon (:func:`bluefog.asynchrony.event_timeline`).

    The stop rule is checked on every rank with one ``allgather``
    (:func:`bluefog_dist.agreement.agree`): a bad or differing value raises the same error
    on every rank instead of leaving the others blocked.

    ``trace``: a path prefix; every rank then records which messages each of its reads
    consumed, its per-step iterates and final state, and writes ``{trace}.rank{r}.json``
    (:mod:`bluefog_dist.window_trace`), replayable with
    :func:`bluefog.asynchrony.replay_timeline`. While recording, a step holds a global
    :class:`~bluefog_dist.window_trace.StepLock` from its first window op to its end (so
    the window part of each step is atomic; compute before it and the delay run
    concurrently), so the interleaving is one of whole steps.

    ``on_step(k, state, seconds)``: called on this rank after its own step ``k`` (0-based),
    ``seconds`` after the common start, e.g. to log the iterate, or, with ``steps`` only, to
    call ``comm.barrier()`` for a lock-step baseline of the same method (with ``duration``
    each rank reads the deadline on its own clock, so one rank may start a step another
    skips, and its barrier would pair with that rank's final one).

    References
    ----------
    M. Assran, N. Loizou, N. Ballas, M. Rabbat, "Stochastic gradient push for distributed
    deep learning", ICML 2019 (asynchronous runs compared at equal wall-clock time).
    """
    comm = comm or MpiWindowComm()
    r = comm.rank()
    agree(comm.mpi.comm, lambda: _stop_rule(steps, duration, trace, on_step), what="run_async")
    comm.recorder = None if trace is None else TraceRecorder(r, comm.size, algorithm, topology)
    comm._lock = None if trace is None else StepLock(comm.mpi.comm)
    data = jax.tree_util.tree_map(lambda leaf: leaf[r], problem.data)
    ctx = AgentContext(comm, topology, problem, data, agent_key(seed, r))
    x = problem.init_params if x0 is None else jax.tree_util.tree_map(lambda v: v[r], x0)
    state = algorithm.init(x, ctx)
    comm.barrier()                                  # the common start
    start = time.monotonic()
    for k in _own_steps(steps, duration, start):
        if compute_delay:
            time.sleep(compute_delay)
        try:
            state = algorithm.step(state, ctx)
        finally:
            comm._end_step()
        if comm.recorder is not None:
            comm.recorder.end_step(algorithm.params(state), state)
        if on_step is not None:
            on_step(k, state, time.monotonic() - start)
    comm.barrier()
    if comm._lock is not None:
        comm._lock.free()
        comm.recorder.write(trace)
        comm.recorder, comm._lock = None, None
    return state, comm
