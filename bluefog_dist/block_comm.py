r"""``BlockComm``: the Communicator protocol for a block of agents on every MPI rank.

The hybrid backend: ``R`` ranks times ``k`` agents per rank run ``n = R k`` agents. Rank
``q`` holds the **contiguous block** of agents ``q k .. q k + k - 1`` and runs the algorithm
for all of them at once under ``jax.vmap`` over a named axis, as the simulator does; the
agent index :meth:`BlockComm.rank` is ``q k + axis_index``, a traced value.

Placement rule: contiguous blocks. For a circulant graph (ring, exponential graph), the
round of offset :math:`s` moves agent :math:`i + s` to agent :math:`i`; with contiguous
blocks, :math:`k - (s \bmod k)` of each block's rows stay inside the rank when
:math:`s < k`, and the rows that leave go to at most two ranks (see
:mod:`bluefog_dist.block_plan`). A ring then sends 2 rows per rank and step across ranks,
where round-robin placement (agent ``i`` on rank ``i mod R``) would send all ``2k``; for the
exponential graph with ``R`` a power of two round-robin sends fewer rows (offsets that are
multiples of ``R`` stay local: 512 vs 767 of 2,560 per rank at ``n = 1024, R = 4``).

==================  ==========================================================================
primitive           implementation
==================  ==========================================================================
``rank()``          ``q k + lax.axis_index(axis_name)`` (traced int32)
``_exchange``       the block (``lax.all_gather`` over the vmap axis, unbatched), one
                    ``mpi4jax.sendrecv`` per step of the rank-level permutation carrying all
                    rows that go to that rank, then one gather of this agent's row
``_sum``            ``lax.psum`` over the block, then ``mpi4jax.allreduce``
``_gather``         ``lax.all_gather`` over the block, then ``mpi4jax.allgather``
``broadcast``       the root's row on its owner rank, then ``mpi4jax.bcast``
``_uniform``        ``lax.pmax`` over the block (the value is equal on every rank by contract)
==================  ==========================================================================

References
----------
B. Ying et al., "BlueFog: make decentralized algorithms practical for optimization and
deep learning", arXiv:2111.04287 (2021); D. Hafner, F. Vicentini, "mpi4jax", JOSS 6(65),
3419 (2021).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bluefog.comm import ScheduleCommunicator
from bluefog.validation import check_positive_int

from .block_plan import RoundPlan, plan_round
from .comm import MpiComm, _mpi
from .op_names import NamedOps, OpNames
from .wire import pack, unpack

__all__ = ["BlockComm", "BLOCK_AXIS"]

#: Name of the vmap axis over this rank's block of agents.
BLOCK_AXIS = "agents"


class BlockComm(NamedOps, ScheduleCommunicator):
    """Communicator for ``agents_per_rank`` agents on each rank of an :class:`MpiComm`.

    Use it inside ``jax.vmap(f, axis_name=comm.axis_name)`` over this rank's block of
    agents (stacked along axis 0), under ``jax.jit``; :func:`bluefog_dist.run` with
    ``agents_per_rank=k`` does this. Construction is local (no collective): it reuses the
    cloned communicator of ``mpi_comm``.

    Parameters
    ----------
    mpi_comm : MpiComm
        The rank-level communicator (``R`` ranks).
    agents_per_rank : int
        ``k``; the number of agents is ``size = R k`` and rank ``q`` holds agents
        ``q k .. q k + k - 1``.
    axis_name : str
        Name of the vmap axis over the block.
    local_size : int
        Agents per machine for ``hierarchical_neighbor_allreduce`` (consecutive agents, as in
        the simulator); must divide ``size``.
    """

    def __init__(self, mpi_comm: MpiComm, agents_per_rank: int, *, axis_name: str = BLOCK_AXIS,
                 local_size: int = 1):
        if not isinstance(mpi_comm, MpiComm):
            raise TypeError(f"mpi_comm must be a bluefog_dist.MpiComm; got "
                            f"{type(mpi_comm).__name__}. Pass bluefog_dist.default_comm().")
        self.block = check_positive_int(agents_per_rank, "agents_per_rank")
        if not isinstance(axis_name, str) or not axis_name:
            raise TypeError(f"axis_name must be a non-empty str; got {axis_name!r}.")
        self.axis_name = axis_name
        self._mpi_comm = mpi_comm
        self.ranks = mpi_comm.size
        self.rank_index = mpi_comm.rank()
        self.offset = self.rank_index * self.block
        self.size = self.ranks * self.block
        local_size = check_positive_int(local_size, "local_size")
        if self.size % local_size:
            raise ValueError(
                f"local_size must divide the number of agents {self.size}; got {local_size}. "
                "Every machine holds the same number of agents.")
        self.local_size = local_size
        self._plans: dict = {}
        self._ops = OpNames()  # messages named <op>/<primitive> for the timeline

    @property
    def comm(self):
        """The cloned mpi4py communicator (shared with ``mpi_comm``)."""
        return self._mpi_comm.comm

    # ---- primitives -----------------------------------------------------------------------
    def rank(self):
        """This agent's global index ``q k + axis_index`` (traced int32)."""
        return self.offset + lax.axis_index(self.axis_name)

    def _table(self, values, dtype):
        block = np.asarray(values)[self.offset:self.offset + self.block]
        return jnp.asarray(block, dtype=dtype)[lax.axis_index(self.axis_name)]

    def _plan(self, rnd) -> RoundPlan:
        key = np.asarray(rnd.sources).tobytes()
        if key not in self._plans:
            self._plans[key] = plan_round(rnd.sources, self.rank_index, self.block)
        return self._plans[key]

    def _exchange(self, leaves, rnd):
        import mpi4jax

        plan = self._plan(rnd)
        local = np.arange(self.block, dtype=np.int32)
        if plan.local_only and np.array_equal(plan.lookup, local):
            return list(leaves)  # every local agent receives its own value
        here = jnp.asarray(plan.lookup)[lax.axis_index(self.axis_name)]
        packed = pack(leaves)
        outs = []
        for _, _, buf in packed:
            block = lax.all_gather(buf, self.axis_name)  # (k, L), not batched
            parts = [block]
            for msg in plan.messages:
                send = block[msg.send_rows] if msg.send_rows.size else block[:1]
                template = jnp.zeros((max(1, msg.recv_rows), block.shape[1]), block.dtype)
                parts.append(self._ops.message(
                    "sendrecv", send, lambda b, t=template, m=msg: mpi4jax.sendrecv(
                        b, t, m.source, m.dest, comm=self.comm)))
            rows = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
            outs.append(rows[here])
        return unpack(leaves, list(zip(packed, outs)))

    def _sum(self, leaves):
        import mpi4jax

        MPI = _mpi()
        packed = pack(leaves, reduce=True)
        outs = []
        for _, _, buf in packed:
            total = lax.psum(buf, self.axis_name)
            if self.ranks > 1:
                total = self._ops.message("allreduce", total, lambda b: mpi4jax.allreduce(
                    b, op=MPI.SUM, comm=self.comm))
            outs.append(total)
        return unpack(leaves, list(zip(packed, outs)))

    def _gather(self, leaves):
        import mpi4jax

        packed = pack(leaves)
        outs = []
        for _, _, buf in packed:
            block = lax.all_gather(buf, self.axis_name)  # (k, L)
            if self.ranks > 1:
                block = self._ops.message("allgather", block, lambda b: mpi4jax.allgather(
                    b, comm=self.comm)).reshape(self.size, -1)
            outs.append(block)
        return unpack(leaves, list(zip(packed, outs)), lead=(self.size,))

    def _uniform(self, value):
        return lax.pmax(value, self.axis_name)

    def broadcast(self, x, root: int):
        r"""Agent ``root``'s value on every agent, :math:`x_i^{+} = x_{\text{root}}`: its row
        of the block on the owner rank ``root // k``, then ``MPI_Bcast`` from that rank."""
        import mpi4jax

        root = self._check_root(root, "broadcast")
        owner, row = divmod(root, self.block)
        leaves, treedef = jax.tree_util.tree_flatten(x)
        if not leaves:
            raise ValueError(f"broadcast: x must contain at least one array; got {x!r}.")
        leaves = [jnp.asarray(leaf) for leaf in leaves]
        packed = pack(leaves)
        outs = []
        for _, _, buf in packed:
            value = lax.all_gather(buf, self.axis_name)[row if owner == self.rank_index else 0]
            if self.ranks > 1:
                with self._ops.named("broadcast"):
                    value = self._ops.message("bcast", value, lambda b: mpi4jax.bcast(
                        b, owner, comm=self.comm))
            outs.append(value)
        return jax.tree_util.tree_unflatten(treedef, unpack(leaves, list(zip(packed, outs))))

    def barrier(self) -> None:
        """Block until every rank has reached this point (``MPI_Barrier``)."""
        import mpi4jax

        mpi4jax.barrier(comm=self.comm)

    def __repr__(self) -> str:
        return (f"BlockComm(rank={self.rank_index}, ranks={self.ranks}, agents_per_rank="
                f"{self.block}, size={self.size}, local_size={self.local_size})")
