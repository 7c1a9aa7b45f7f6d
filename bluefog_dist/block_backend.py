"""The hybrid engine adapter: a contiguous block of agents per MPI rank, ``vmap`` inside it.

:class:`BlockBackend` is :class:`bluefog.engine.Backend` for :class:`~.block_comm.BlockComm`:
rank ``q`` loads only the data and keys of its agents ``q k .. q k + k - 1``
(``problem.block_data``: a problem holding only those rows, ``shard=(q k, n)``, is enough; one
that does not hold them raises on every rank, inside the start-up agreement), lifts every
per-agent function with ``jax.vmap`` over them (axis name ``comm.axis_name``), and shares
agreement, callback outcomes and the history with the other ranks exactly as the
one-agent-per-rank :class:`~.mpi_backend.MpiBackend` does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.comm.faulty import origin
from bluefog.engine import agent_key, first_agent

from . import failfast, heartbeat
from .block_comm import BlockComm
from .mpi_backend import MpiBackend, _fault_structure

__all__ = ["BlockBackend"]


class BlockBackend(MpiBackend):
    """Engine adapter for ``k`` agents per rank (see the module docstring).

    Parameters
    ----------
    comm : BlockComm
    error : Exception, optional
        A validation error of ``bluefog_dist.run``'s own arguments, raised inside the
        start-up agreement (so every rank raises it, none is left waiting).
    """

    name = "mpi-block"

    def __init__(self, comm: BlockComm, error: Exception | None = None):
        failfast.install()  # an uncaught exception on one rank ends the job, never a hang
        heartbeat.start()  # under bfrun --max-restarts: a stalled rank is seen
        self.comm = comm
        self.size = comm.size
        self.rank = comm.rank_index
        self.is_root = self.rank == 0
        self._agents = slice(comm.offset, comm.offset + comm.block)
        self._error = error
        self.cache_key = ("mpi-block", self.size, self.rank, comm.block, _fault_structure(comm))
        self.cache_refs = (origin(comm),)  # one BlockComm per configuration (bluefog_dist.run)

    def check_agents(self, topology):
        if self._error is not None:
            raise self._error
        if topology.size != self.size:
            ranks, k = self.comm.ranks, self.comm.block
            raise ValueError(
                f"topology.size must equal world size x agents_per_rank = {ranks} x {k} = "
                f"{self.size}; got topology.size={topology.size}. Pass agents_per_rank="
                f"{topology.size // ranks if topology.size % ranks == 0 else 'n / world size'}"
                f" (or 'auto'), or build the topology for {self.size} agents.")

    def _own(self, tree):
        return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[self._agents]), tree)

    def agent_inputs(self, problem, seed):
        agents = jnp.arange(self._agents.start, self._agents.stop, dtype=jnp.uint32)
        start, count = self._agents.start, self._agents.stop - self._agents.start
        data = jax.tree_util.tree_map(jnp.asarray, problem.block_data(start, count))
        return data, jax.vmap(lambda i: agent_key(seed, i))(agents)

    def initial_params(self, x0, problem):
        if x0 is None:
            return problem.init_params, None
        return self._own(x0), 0

    def map_agents(self, fn, in_axes):
        return jax.vmap(fn, in_axes=in_axes, axis_name=self.comm.axis_name)

    def agent_view(self, tree):
        return first_agent(tree)
