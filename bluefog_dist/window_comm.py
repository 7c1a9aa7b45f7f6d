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
from bluefog.validation import check_bool

from .agreement import agree
from .window_jit import jit_step
from .window_loop import own_steps, stop_rule
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
        self._sig: dict = {}
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

    def _dict(self, name, weights, which, op):
        w = self.mpi._lookup(name, op)
        if weights is None:
            return None
        if isinstance(weights, (int, float, np.floating)):
            peers = w.outs if which == "out" else w.ins
            return {p: float(weights) for p in peers}
        arr = np.asarray(weights, np.float64)
        r = self.rank()
        if arr.ndim == 2:
            if which == "out":
                return {i: arr[i, r] for i in w.outs if arr[i, r] != 0}
            return {j: arr[r, j] for j in w.ins}
        out: dict = {}
        for peer, v in zip(self._rounds(name, which), arr):
            if peer >= 0:
                out[peer] = out.get(peer, 0.0) + float(v)
        return out

    def _flat(self, x, name, op):
        """``x`` flattened (float64 for the buffer), after checking that it has the window's
        structure, leaf shapes and leaf dtypes (as the simulator does)."""
        self.mpi._lookup(name, op)
        leaves, treedef = jax.tree_util.tree_flatten(x)
        got = (treedef, [(np.shape(v), np.result_type(v)) for v in leaves])
        if got != self._sig[name]:
            want = [(s, str(d)) for s, d in self._sig[name][1]]
            raise ValueError(
                f"{op}: x must match window {name!r} leaf by leaf (structure "
                f"{self._sig[name][0]}, leaves (shape, dtype) {want}); got {got[0]}, "
                f"{[(s, str(d)) for s, d in got[1]]}. Cast or reshape x, or create another "
                "window for it.")
        return np.asarray(ravel_pytree(x)[0], np.float64)

    # ---- the window ops ------------------------------------------------------------------
    def win_create(self, windows, x, name, topology, zero_init=False):
        """``MpiWindows.create`` (collective); returns ``{..., name: name}``. Every rank must
        pass a value of the same structure, leaf shapes and leaf dtypes: a difference raises
        ``ValueError`` on every rank."""
        leaves, treedef = jax.tree_util.tree_flatten(x)
        sig = (treedef, [(np.shape(v), np.result_type(v)) for v in leaves])
        flat, unravel = ravel_pytree(x)
        layout = f"{treedef}; " + ", ".join(f"{d}{list(s)}" for s, d in sig[1])
        self.mpi.create(np.asarray(flat), name, topology, zero_init=zero_init, layout=layout)
        self._unravel[name], self._topo[name], self._sig[name] = unravel, topology, sig
        return {**(windows or {}), name: name}

    def _enter(self):
        """While recording: take the global step lock at this step's first window op."""
        if self._lock is not None and not self._held:
            self.recorder.sequence.append(self._lock.acquire())
            self._held = True

    def _end_step(self):
        if self._held:
            try:
                self.mpi.wait_all()     # a recorded step is atomic: its sends have landed
            finally:
                self._lock.release()
                self._held = False

    def _send(self, fn, x, name, dst_weights, self_weight, op):
        flat = self._flat(x, name, op)
        self._enter()
        dests = self._dict(name, dst_weights, "out", op)
        ticket = fn(flat, name, dests, None if self_weight is None else float(self_weight))
        if self.recorder is not None:
            self.recorder.sent(name, self.mpi.windows[name].outs if dests is None else dests)
        return ticket

    def _read(self, name, out):
        if self.recorder is not None:
            self.recorder.read(name, self.mpi.last_read[name])
        return self._unravel[name](jnp.asarray(out))

    def win_put(self, windows, x, name, dst_weights=None, self_weight=None):
        """``MpiWindows.put``."""
        self._send(self.mpi.put, x, name, dst_weights, self_weight, "win_put")
        return windows

    def win_accumulate(self, windows, x, name, dst_weights=None, self_weight=None):
        """``MpiWindows.accumulate``."""
        self._send(self.mpi.accumulate, x, name, dst_weights, self_weight, "win_accumulate")
        return windows

    def win_get(self, windows, name, src_weights=None):
        """``MpiWindows.get``."""
        self._enter()
        self.mpi.get(name, self._dict(name, src_weights, "in", "win_get"))
        return windows

    def win_update(self, windows, name, self_weight=None, neighbor_weights=None, reset=False):
        """``MpiWindows.update``; returns ``(value, windows)``."""
        sw = None if self_weight is None else float(np.asarray(self_weight))
        self._enter()
        out = self.mpi.update(name, sw, self._dict(name, neighbor_weights, "in", "win_update"),
                              reset=reset)
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

    from .window_comm_ops import (win_accumulate_nonblocking, win_get_nonblocking,  # noqa: E402
                                  win_info, win_poll, win_put_nonblocking, win_wait)

    def win_free(self, windows, name=None):
        """``MpiWindows.free`` (collective)."""
        self.mpi.free(name)
        return {} if name is None else {k: v for k, v in windows.items() if k != name}


def run_async(algorithm, problem, topology, steps: int | None = None, *,
              duration: float | None = None, x0=None, seed: int = 0,
              compute_delay=0.0, comm: MpiWindowComm | None = None,
              trace: str | None = None, on_step=None, jit: bool = False):
    r"""Run a window algorithm on this rank with no lock-step, for ``steps`` own steps or
    ``duration`` seconds.

    Each step sleeps ``compute_delay`` seconds first (emulating a slower rank), then runs
    ``algorithm.step`` on the host (its window ops are MPI one-sided calls; non-blocking
    ones run on a communication thread, :mod:`bluefog_dist.window_nonblocking`).
    ``compute_delay`` is this rank's delay (a number :math:`\ge 0`; ranks may differ) or a
    sequence of one delay per rank, equal on every rank; a negative, non-finite or
    wrongly sized value raises on every rank. Ends by completing this rank's non-blocking
    ops and a barrier, after which every message sent has been applied at its target. Returns
    ``(state, comm)``; read the windows with ``comm.mpi``, the own step count with
    ``state.count``.

    Rank ``r`` takes its data through ``problem.agent_data(r)``: a problem holding only
    that row (``Problem(..., shard=(r, n))``) is enough, and one without it raises on every
    rank inside the agreement below.

    Every rank leaves a barrier before its first step (the common start). The first step
    compiles its operations (op by op, or the whole step with ``jit=True``) after that
    barrier, so on a loaded machine a rank that compiles sooner can run several steps
    before the others begin (15 steps once, in a recorded 4-rank run on 2 cores); for
    push-sum methods its weight then shrinks geometrically, as described below for
    ``steps``. Stop rule (exactly one):

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

    ``jit=True``: the step is compiled once (:func:`bluefog_dist.window_jit.jit_step`): the
    gradient and update run as one XLA program and only the window ops run on the host, as
    ordered callbacks; the default runs the step op by op.

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
    rule: dict = {}

    def fields():  # checked inside agree: an error on one rank is raised on every rank
        rule.update(stop_rule(steps, duration, trace, on_step, compute_delay, comm.size, r),
                    jit=check_bool(jit, "jit", where="run_async"))
        own["data"] = problem.agent_data(r)  # a shard without this rank's agent raises
        return {k: v for k, v in rule.items() if k != "delay"}

    own: dict = {}
    agree(comm.mpi.comm, fields, what="run_async")
    delay, data = rule["delay"], own["data"]
    comm.recorder = None if trace is None else TraceRecorder(r, comm.size, algorithm, topology)
    comm._lock = None if trace is None else StepLock(comm.mpi.comm)
    ctx = AgentContext(comm, topology, problem, data, agent_key(seed, r))
    x = problem.init_params if x0 is None else jax.tree_util.tree_map(lambda v: v[r], x0)
    state = algorithm.init(x, ctx)
    step = (jit_step(algorithm, problem, topology, comm, data, ctx.key, state.windows)
            if rule["jit"] else (lambda s: algorithm.step(s, ctx)))
    comm.barrier()                                  # the common start
    start = time.monotonic()
    for k in own_steps(steps, duration, start):
        if delay:
            time.sleep(delay)
        try:
            state = step(state)
        finally:
            comm._end_step()
        if comm.recorder is not None:
            comm.recorder.end_step(algorithm.params(state), state)
        if on_step is not None:
            on_step(k, state, time.monotonic() - start)
    comm.mpi.wait_all()                             # this rank's non-blocking sends landed
    comm.barrier()
    if comm._lock is not None:
        comm._lock.free()
        comm.recorder.write(trace)
        comm.recorder, comm._lock = None, None
    return state, comm
