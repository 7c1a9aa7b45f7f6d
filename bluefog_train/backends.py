"""Where ``bluefog-train`` runs: the vmap simulator (one process) or MPI (one agent per rank).

Each backend exposes the library's ``run`` (:func:`bluefog_sim.run` /
:func:`bluefog_dist.run`, one call per training run) and the few collectives the application
needs around it: gathering every agent's state on rank 0 to checkpoint it, scattering a
restored state back, and agreeing on a decision (an error, a path) so that every rank takes
the same branch. Under MPI, a decision made on rank 0 alone would leave the other ranks
waiting in their next exchange.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SimBackend", "MpiBackend", "make_backend"]


class SimBackend:
    """All agents in this process (:func:`bluefog_sim.run`); collectives are identities."""

    name = "sim"
    rank = 0
    size = None

    def run(self, *args, **kwargs):
        """:func:`bluefog_sim.run`."""
        import bluefog_sim

        return bluefog_sim.run(*args, **kwargs)

    def stacked(self, state):
        """The stacked ``(n, ...)`` state (already stacked in the simulator)."""
        return state

    def scatter(self, stacked):
        """This process's part of a stacked state: all of it."""
        return stacked

    def allgather(self, obj) -> list:
        """``[obj]``: one process."""
        return [obj]

    def bcast(self, obj):
        """``obj``: one process."""
        return obj


class MpiBackend:
    """One agent per MPI rank (:func:`bluefog_dist.run` over :func:`bluefog_dist.default_comm`)."""

    name = "mpi"

    def __init__(self, local_size: int):
        import bluefog_dist

        self.comm = bluefog_dist.default_comm(local_size)
        self.mpi = self.comm.comm
        self.rank, self.size = self.mpi.Get_rank(), self.mpi.Get_size()

    def run(self, *args, local_size=None, **kwargs):
        """:func:`bluefog_dist.run` on this backend's communicator."""
        import bluefog_dist

        return bluefog_dist.run(*args, comm=self.comm, **kwargs)

    def stacked(self, state):
        """All ranks' states stacked along a new leading axis on rank 0 (``None`` elsewhere).

        A collective: every rank must call it.
        """
        import jax

        leaves, treedef = jax.tree_util.tree_flatten(state)
        gathered = self.mpi.gather([np.asarray(v) for v in leaves], root=0)
        if self.rank != 0:
            return None
        return jax.tree_util.tree_unflatten(treedef, [np.stack(v) for v in zip(*gathered)])

    def scatter(self, stacked):
        """Row ``rank`` of the stacked state held by rank 0 (a collective)."""
        import jax

        parts = None
        if self.rank == 0:
            parts = [jax.tree_util.tree_map(lambda a, r=r: np.asarray(a)[r], stacked)
                     for r in range(self.size)]
        return self.mpi.scatter(parts, root=0)

    def allgather(self, obj) -> list:
        """One Python object from every rank, in rank order (a collective)."""
        return self.mpi.allgather(obj)

    def bcast(self, obj):
        """Rank 0's ``obj`` on every rank (a collective)."""
        return self.mpi.bcast(obj, root=0)


def make_backend(cfg: dict):
    """The backend named by ``cfg["backend"]`` (``"sim"`` or ``"mpi"``)."""
    if cfg["backend"] == "mpi":
        return MpiBackend(cfg["local_size"])
    return SimBackend()
