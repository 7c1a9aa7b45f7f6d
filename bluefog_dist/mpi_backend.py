"""The one-agent-per-rank MPI engine adapter (:class:`bluefog.engine.Backend`).

Rank ``i`` is agent ``i`` and takes its data through ``problem.agent_data(i)``, so a problem
holding only that row (``Problem(..., shard=(i, n))``) is enough; one that does not hold it
raises inside the start-up agreement, on every rank. Host-level agreement and callback
outcomes travel by ``allgather`` so that an error on one rank is raised on every rank, and
the history is rank 0's copy. :class:`~bluefog_dist.block_backend.BlockBackend` (a block of
agents per rank) inherits the parts that do not depend on how many agents a rank holds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bluefog.comm.faulty import origin
from bluefog.engine import CallbackError, agent_key

from . import failfast, heartbeat
from .agreement import agree
from .comm import MpiComm

__all__ = ["MpiBackend"]


def _fault_structure(comm):
    """The static part of ``comm``'s fault model (``None`` without faults)."""
    faults = getattr(comm, "faults", None)
    return None if faults is None else faults.structure


class MpiBackend:
    """The MPI engine adapter (:class:`bluefog.engine.Backend`): this rank is one agent."""

    name = "mpi"

    def __init__(self, comm: MpiComm):
        failfast.install()  # an uncaught exception on one rank ends the job, never a hang
        heartbeat.start()  # under bfrun --max-restarts: a stalled rank is seen
        self.comm = comm
        self.size = comm.size
        self.rank = comm.rank()
        self.is_root = self.rank == 0
        #: Programs are shared across runs on the same communicator (bluefog.engine.cache):
        #: :func:`bluefog_dist.default_comm` returns one object per configuration, so a
        #: second ``run()`` with equal shapes compiles nothing; a copy with faults keys by
        #: its origin and the faults' structure (their tables are inputs of the program).
        self.cache_key = ("mpi", self.size, self.rank, _fault_structure(comm))
        self.cache_refs = (origin(comm),)

    def agree(self, fields):
        agree(self.comm.comm, fields, what="bluefog_dist.run")

    def check_agents(self, topology):
        if topology.size != self.size:
            raise ValueError(
                f"the MPI world size must equal topology.size; got world size {self.size} and "
                f"topology.size={topology.size}. Launch with bfrun -np {topology.size} (or "
                f"mpiexec -n {topology.size}), or build the topology for {self.size} agents, "
                f"or run several agents per rank with agents_per_rank="
                f"{topology.size // self.size if topology.size % self.size == 0 else 'k'}.")

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
