"""Run an algorithm under MPI; the same shape as :func:`bluefog_sim.run`.

The loop itself is :func:`bluefog.engine.execute`; this module picks the MPI adapter: one
agent per rank (:class:`~bluefog_dist.mpi_backend.MpiBackend`) or, with
``agents_per_rank=k``, a contiguous block of ``k`` agents per rank under ``jax.vmap``
(:class:`~bluefog_dist.block_backend.BlockBackend` over
:class:`~bluefog_dist.block_comm.BlockComm`).
"""

from __future__ import annotations

import warnings
from typing import Callable

from bluefog.algorithm import Algorithm, Problem
from bluefog.engine import RunResult, execute
from bluefog.validation import check_positive_int

from .block_backend import BlockBackend
from .block_comm import BlockComm
from .comm import MpiComm
from .mpi_backend import MpiBackend

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


def run(algorithm: Algorithm, problem: Problem, topology, steps: int, *, seed: int = 0,
        x0=None, record_every: int | None = None, progress: bool | None = None,
        metrics: Callable | None = None, state=None, comm: MpiComm | None = None,
        local_size: int | None = None, timeline: str | None = None,
        segment_every: int | None = None, on_segment: Callable | None = None,
        on_nonfinite: str = "raise", agents_per_rank: int | str | None = None,
        faults=None) -> RunResult:
    """Run ``steps`` iterations of ``algorithm`` with one agent (or a block of agents) per rank.

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
    agents_per_rank : int, "auto" or None
        ``None`` or 1 (default): rank ``i`` is agent ``i``. ``k > 1``: the hybrid backend,
        ``n = R k`` agents on ``R`` ranks; rank ``q`` holds the contiguous block of agents
        ``q k .. q k + k - 1`` (their data, keys and rows of ``x0``) and runs them under
        ``jax.vmap``; each schedule round is a gather inside the block plus one
        ``sendrecv`` per peer rank carrying every row that crosses to it
        (:mod:`bluefog_dist.block_comm`). ``"auto"``: ``k = topology.size / R``. The same
        algorithm object runs unchanged; the trajectory of agent ``i`` equals row ``i`` of
        :func:`bluefog_sim.run`.
    faults : bluefog.faults.Faults, optional
        As in :func:`bluefog_sim.run`: every rank evaluates the same masks from ``(seed, t,
        receiver, sender)``, sends every message and ignores the ones marked lost, so rank
        ``i``'s faulty trajectory equals row ``i`` of the faulty simulation.

    Returns
    -------
    RunResult
        ``params`` / ``state`` of this rank's agent (stacked ``(k, ...)`` over its block with
        ``agents_per_rank=k > 1``); ``history`` identical on every rank (broadcast from
        rank 0).

    Reference: Bluefog's ``bfrun`` + ``bf.neighbor_allreduce`` training loop (Ying et al.,
    arXiv:2111.04287, 2021).
    """
    if comm is None:
        comm = default_comm(local_size, timeline)
    elif not isinstance(comm, MpiComm):
        raise TypeError(f"comm must be a bluefog_dist.MpiComm or None; got {type(comm).__name__}.")
    k, error = _agents_per_rank(agents_per_rank, topology, comm.size)
    if comm.size == 1 and k == 1:
        warnings.warn(
            "bluefog_dist.run: the MPI world size is 1, so a single agent runs. Launch with "
            "`bfrun -np N python script.py` (or mpiexec -n N) to run N agents.",
            RuntimeWarning, stacklevel=2)
    if k == 1 and error is None:
        backend = MpiBackend(comm if faults is None else comm.with_faults(faults))
    else:
        block = _block_comm(comm, k, k * _machine_ranks(comm))
        backend = BlockBackend(block if faults is None else block.with_faults(faults),
                               error=error)
    return execute(backend, algorithm, problem, topology, steps, seed=seed, x0=x0,
                   record_every=record_every, progress=progress, metrics=metrics,
                   state=state, segment_every=segment_every, on_segment=on_segment,
                   on_nonfinite=on_nonfinite)


#: ``(id(mpi comm), k, local_size) -> (mpi comm, BlockComm)``: one block communicator per
#: configuration, so that runs on it share compiled programs (the comm is kept alive with it,
#: so its id is never reused while the entry exists).
_BLOCK_COMMS: dict = {}


def _block_comm(comm: MpiComm, k: int, local_size: int) -> BlockComm:
    key = (id(comm), k, local_size)
    if key not in _BLOCK_COMMS or _BLOCK_COMMS[key][0] is not comm:
        _BLOCK_COMMS[key] = (comm, BlockComm(comm, k, local_size=local_size))
    return _BLOCK_COMMS[key][1]


def _machine_ranks(comm: MpiComm) -> int:
    """Ranks per machine where machines are uniform blocks of ranks, else 1."""
    return 1 if comm._local_error is not None else comm.local_size


def _agents_per_rank(agents_per_rank, topology, world: int):
    """``(k, error)``: the block size, and a validation error to raise inside the start-up
    agreement (so that a bad value on one rank raises on every rank, never a hang)."""
    try:
        if agents_per_rank is None:
            return 1, None
        if agents_per_rank == "auto":
            n = getattr(topology, "size", None)
            if not isinstance(n, int) or n % world:
                raise ValueError(
                    f"agents_per_rank='auto' needs topology.size to be a multiple of the world "
                    f"size {world}; got topology.size={n}. Launch a number of ranks that "
                    f"divides it, or build the topology for a multiple of {world} agents.")
            return n // world, None
        return check_positive_int(agents_per_rank, "agents_per_rank", where="bluefog_dist.run"), None
    except (TypeError, ValueError) as err:
        return 1, err
