"""Run an algorithm under MPI, one agent per rank; the same shape as :func:`bluefog_sim.run`.

The loop itself is :func:`bluefog.engine.execute`; this module supplies the MPI adapter
(:class:`MpiBackend`): rank ``i`` is agent ``i``, host-level agreement and callback outcomes
travel by ``allgather`` so that an error on one rank is raised on every rank.
"""

from __future__ import annotations

import warnings
from typing import Callable

import jax
import jax.numpy as jnp

from bluefog.algorithm import Algorithm, Problem
from bluefog.engine import CallbackError, RunResult, agent_key, execute

from . import failfast
from .agreement import agree
from .comm import MpiComm

__all__ = ["run", "default_comm", "MpiBackend"]

_DEFAULT_COMMS: dict = {}


def default_comm(local_size: int | None = None, timeline: str | None = None) -> MpiComm:
    """The :class:`MpiComm` over ``COMM_WORLD`` that :func:`run` uses when given none.

    Created once per ``(local_size, timeline)`` (construction is collective, so every rank
    must make the same sequence of calls, as it does when all ranks run the same script).
    """
    key = (local_size, timeline)
    if key not in _DEFAULT_COMMS:
        _DEFAULT_COMMS[key] = MpiComm(local_size=local_size, timeline=timeline)
    return _DEFAULT_COMMS[key]


class MpiBackend:
    """The MPI engine adapter (:class:`bluefog.engine.Backend`): this rank is one agent."""

    name = "mpi"

    def __init__(self, comm: MpiComm):
        failfast.install()  # an uncaught exception on one rank ends the job, never a hang
        self.comm = comm
        self.size = comm.size
        self.rank = comm.rank()
        self.is_root = self.rank == 0

    def agree(self, fields):
        agree(self.comm.comm, fields, what="bluefog_dist.run")

    def check_agents(self, topology):
        if topology.size != self.size:
            raise ValueError(
                f"the MPI world size must equal topology.size; got world size {self.size} and "
                f"topology.size={topology.size}. Launch with bfrun -np {topology.size} (or "
                f"mpiexec -n {topology.size}), or build the topology for {self.size} agents.")

    def agent_inputs(self, problem, seed):
        data = jax.tree_util.tree_map(jnp.asarray, problem.agent_data(self.rank))
        return data, agent_key(seed, self.rank)

    def initial_params(self, x0, problem):
        if x0 is None:
            return problem.init_params, None
        return jax.tree_util.tree_map(lambda a: a[self.rank], x0), None

    def map_agents(self, fn, in_axes):
        return fn

    def agent_view(self, tree):
        return tree

    def run_callback(self, fn):
        error, local = None, None
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - shared with every rank, then re-raised
            error, local = f"{type(err).__name__}: {err}", err
        # Collective BEFORE raising: a rank that raised alone would leave the others waiting
        # in their next exchange.
        failures = [(r, e) for r, e in enumerate(self.comm.comm.allgather(error)) if e]
        if failures:
            raise CallbackError(
                "on_segment failed on rank(s) " + ", ".join(str(r) for r, _ in failures) + ": "
                + "; ".join(f"rank {r}: {e}" for r, e in failures), failures) from local

    def finish(self, history):
        # Metrics are identical on every rank up to MPI_Allreduce's reduction order; rank 0's
        # copy makes the histories bitwise equal.
        return self.comm.comm.bcast(history if self.is_root else None, root=0)


def run(algorithm: Algorithm, problem: Problem, topology, steps: int, *, seed: int = 0,
        x0=None, record_every: int | None = None, progress: bool | None = None,
        metrics: Callable | None = None, state=None, comm: MpiComm | None = None,
        local_size: int | None = None, timeline: str | None = None,
        segment_every: int | None = None, on_segment: Callable | None = None,
        on_nonfinite: str = "raise") -> RunResult:
    """Run ``steps`` iterations of ``algorithm`` with one agent per MPI rank.

    Call it on every rank with the same arguments (``bfrun -np n python script.py``). Rank
    ``i`` is agent ``i``: it holds only ``problem.agent_data(i)`` on its device and the key
    ``fold_in(PRNGKey(seed), i)`` (equal to ``bluefog_sim.agent_keys(seed, n)[i]``), so the
    trajectory of rank ``i`` equals row ``i`` of :func:`bluefog_sim.run` with the same
    arguments, to floating-point tolerance. The loop is :func:`bluefog.engine.execute`,
    shared with the simulator; its dispatches depend only on ``(steps, record_every,
    segment_every)``, never on the progress display, so every rank runs the same sequence
    of compiled programs.

    Before anything is compiled or sent, every rank takes part in **one** ``allgather``
    (:func:`bluefog_dist.agreement.agree`) comparing the world size, topology fingerprint,
    algorithm name and config, problem name, config and data shapes, initial parameters,
    ``x0``, ``state`` shapes, ``steps``, ``seed``, ``record_every``, ``segment_every``,
    ``on_nonfinite``, metric function, ``local_size`` and versions; a mismatch, or an
    invalid argument on any rank, raises :class:`~bluefog_dist.agreement.AgreementError` on
    **every** rank naming the rank and field, instead of a deadlock. The world size must
    equal ``topology.size``; at world size 1 a ``RuntimeWarning`` says that only one agent
    runs (launch with ``bfrun -np N``).

    Parameters
    ----------
    algorithm, problem, topology, steps, seed, x0, record_every, progress, metrics
        As in :func:`bluefog_sim.run` (``x0`` stacked ``(n, ...)``; rank ``i`` takes row
        ``i``). The progress bar is shown on rank 0 only.
    state : pytree, optional
        This rank's algorithm state to continue from (``result.state`` of an earlier
        ``bluefog_dist.run``; unstacked, unlike the simulator's).
    comm : MpiComm, optional
        Default: one over ``COMM_WORLD`` (:func:`default_comm`).
    local_size, timeline : optional
        Passed to the default :class:`MpiComm` (ignored when ``comm`` is given).
    segment_every, on_segment, on_nonfinite
        As in :func:`bluefog_sim.run`; ``on_segment`` runs on every rank with this rank's
        state, and an exception in it on any rank raises
        :class:`bluefog.engine.CallbackError` on every rank (no rank is left waiting).

    Returns
    -------
    RunResult
        ``params`` / ``state`` of this rank's agent; ``history`` identical on every rank
        (broadcast from rank 0).

    Reference: Bluefog's ``bfrun`` + ``bf.neighbor_allreduce`` training loop (Ying et al.,
    arXiv:2111.04287, 2021).
    """
    if comm is None:
        comm = default_comm(local_size, timeline)
    elif not isinstance(comm, MpiComm):
        raise TypeError(f"comm must be a bluefog_dist.MpiComm or None; got {type(comm).__name__}.")
    if comm.size == 1:
        warnings.warn(
            "bluefog_dist.run: the MPI world size is 1, so a single agent runs. Launch with "
            "`bfrun -np N python script.py` (or mpiexec -n N) to run N agents.",
            RuntimeWarning, stacklevel=2)
    result = execute(MpiBackend(comm), algorithm, problem, topology, steps, seed=seed, x0=x0,
                     record_every=record_every, progress=progress, metrics=metrics,
                     state=state, segment_every=segment_every, on_segment=on_segment,
                     on_nonfinite=on_nonfinite)
    if comm.timeline is not None:
        comm.timeline.flush()
    return result
