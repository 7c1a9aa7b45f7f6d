"""Run an algorithm under MPI, one agent per rank; the same shape as :func:`bluefog_sim.run`."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import bluefog
from bluefog.algorithm import AgentContext, Algorithm, Problem
from bluefog.driver import RunResult, drive, make_segment
from bluefog.run_common import (agent_key, check_run_inputs, check_stacked_x0,
                                default_record_every, resolve_metrics)
from bluefog.topology.validation import check_positive_int

from .agreement import agree, describe_tree
from .comm import MpiComm

__all__ = ["run", "default_comm"]

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


def _name(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def run(algorithm: Algorithm, problem: Problem, topology, steps: int, *, seed: int = 0,
        x0=None, record_every: int | None = None, progress: bool | None = None,
        metrics: Callable | None = None, state=None, comm: MpiComm | None = None,
        local_size: int | None = None, timeline: str | None = None) -> RunResult:
    """Run ``steps`` iterations of ``algorithm`` with one agent per MPI rank.

    Call it on every rank with the same arguments (``bfrun -np n python script.py``). Rank
    ``i`` is agent ``i``: it holds only ``problem.agent_data(i)`` on its device and the key
    ``fold_in(PRNGKey(seed), i)`` (equal to ``bluefog_sim.agent_keys(seed, n)[i]``), so the
    trajectory of rank ``i`` equals row ``i`` of :func:`bluefog_sim.run` with the same
    arguments, to floating-point tolerance.

    As in the simulator, each dispatch is one compiled ``jit(scan(...))`` over ``records``
    chunks of ``record_every`` steps whose metrics are computed inside the scan with MPI
    collectives, so the host intervenes only between dispatches (DESIGN.md: jit the loop).

    Before anything is compiled or sent, every rank takes part in **one** ``allgather``
    (:func:`bluefog_dist.agreement.agree`) comparing the world size, topology fingerprint,
    algorithm name and config, problem name, config and data shapes, initial parameters,
    ``x0``, ``steps``, ``seed``, ``record_every``, metric function, ``local_size`` and
    versions; a mismatch, or an invalid argument on any rank, raises
    :class:`~bluefog_dist.agreement.AgreementError` on **every** rank naming the rank and
    field, instead of a deadlock. The world size must equal ``topology.size``.

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
    rank, size = comm.rank(), comm.size
    resolved: dict = {}

    def fields():
        check_run_inputs(algorithm, problem, topology, seed)
        check_positive_int(steps, "steps")
        if topology.size != size:
            raise ValueError(
                f"the MPI world size must equal topology.size; got world size {size} and "
                f"topology.size={topology.size}. Launch with bfrun -np {topology.size} (or "
                f"mpiexec -n {topology.size}), or build the topology for {size} agents.")
        resolved["record_every"] = default_record_every(steps, record_every)
        resolved["metrics"] = resolve_metrics(metrics)
        check_stacked_x0(x0, size, state)
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None; got {progress!r}.")
        return {
            "world_size": size,
            "topology": f"{topology.name} {topology.fingerprint}",
            "algorithm": f"{algorithm.name} {algorithm.config!r}",
            "problem": f"{problem.name} {problem.config!r}",
            "data": describe_tree(problem.data),
            "init_params": problem.init_params,
            "x0": "none" if x0 is None else x0,
            "state": "none" if state is None else describe_tree(state),
            "steps": int(steps),
            "seed": int(seed),
            "record_every": int(resolved["record_every"]),
            "metrics": _name(resolved["metrics"]),
            "local_size": comm.local_size,
            "x64": bool(jax.config.jax_enable_x64),
            "versions": f"jax {jax.__version__}, bluefog {getattr(bluefog, '__version__', '?')}",
        }

    agree(comm.comm, fields, what="bluefog_dist.run")
    metrics_fn = resolved["metrics"]
    data_i = jax.tree_util.tree_map(jnp.asarray, problem.agent_data(rank))
    key_i = agent_key(int(seed), rank)

    def ctx(d, k):
        return AgentContext(comm, topology, problem, d, k)

    if state is None:
        x0_i = problem.init_params if x0 is None else jax.tree_util.tree_map(lambda a: a[rank], x0)
        state = jax.jit(lambda x, d, k: algorithm.init(x, ctx(d, k)))(x0_i, data_i, key_i)
    else:
        state = jax.tree_util.tree_map(jnp.array, state)  # a private copy: segments donate it

    metrics_jit = jax.jit(lambda s, d, k: metrics_fn(algorithm.params(s), ctx(d, k)))

    def initial_metrics(s):
        return {k: np.asarray(v).reshape(1) for k, v in metrics_jit(s, data_i, key_i).items()}

    def compile_segment(records, chunk_steps, s):
        seg = make_segment(algorithm, metrics_fn, chunk_steps, records)
        compiled = jax.jit(lambda s_, d, k: seg(s_, ctx(d, k)), donate_argnums=0) \
            .lower(s, data_i, key_i).compile()
        return lambda s_: compiled(s_, data_i, key_i)

    state, history, c_sec, r_sec = drive(
        state, steps=steps, record_every=resolved["record_every"],
        compile_segment=compile_segment, initial_metrics=initial_metrics, progress=progress,
        desc=f"{algorithm.name} | {topology.name} | mpi n={size}", show=rank == 0)
    # The metrics are identical on every rank up to the reduction order of MPI_Allreduce;
    # rank 0's copy makes the histories bitwise equal.
    history = comm.comm.bcast(history if rank == 0 else None, root=0)
    params = jax.jit(algorithm.params)(state)
    if comm.timeline is not None:
        comm.timeline.flush()
    return RunResult(params, history, state, c_sec, r_sec)
