r"""``MpiComm``: the Communicator protocol under ``mpirun``, one agent per rank, with mpi4jax.

The mixing logic (rounds of full permutations, weights, ``lax.switch`` over the patterns of a
time-varying topology, hierarchical averaging, Bluefog's per-call weights) is inherited from
:class:`bluefog.comm.ScheduleCommunicator`; this module only supplies the primitives:

==================  ==========================================================================
primitive           MPI call (on a communicator cloned from ``COMM_WORLD``)
==================  ==========================================================================
``rank()``          ``Get_rank()``, a plain Python ``int``, so peers are static under ``jit``
``_exchange``       one ``mpi4jax.sendrecv`` per schedule round: send to
                    ``round.destinations[rank]``, receive from ``round.sources[rank]``
``_sum``            ``mpi4jax.allreduce(op=MPI.SUM)``
``_gather``         ``mpi4jax.allgather``
``broadcast``       ``mpi4jax.bcast``
``barrier``         ``mpi4jax.barrier``
``_local_average``  ``mpi4jax.allreduce`` on the machine's sub-communicator
                    (:mod:`bluefog_dist.machines`), divided by ``local_size``
``_agree_specs``    one host ``allgather`` of this rank's per-call weights
==================  ==========================================================================

The other jobs live next door: the wire format (one buffer per dtype, bit-cast 16-bit
floats) in :mod:`bluefog_dist.wire`, machine detection in :mod:`bluefog_dist.machines`,
message naming for the timeline (``jax.named_scope``) in :mod:`bluefog_dist.op_names`.

References
----------
B. Ying, K. Yuan, H. Hu, Y. Chen, W. Yin, "BlueFog: Make decentralized algorithms practical
for optimization and deep learning", arXiv:2111.04287 (2021).
mpi4jax: D. Hafner, F. Vicentini, "mpi4jax: Zero-copy MPI communication of JAX arrays",
JOSS 6(65), 3419 (2021).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.comm import ScheduleCommunicator, check_faults, dynamic
from bluefog.topology.schedule import Round

from .machines import LOCAL_SIZE_ENV, find_machines
from .op_names import NamedOps, OpNames
from .timeline import ENV_VAR as TIMELINE_ENV, Timeline, timeline_for
from .wire import pack, unpack

__all__ = ["MpiComm", "LOCAL_SIZE_ENV"]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "bluefog_dist needs mpi4py and mpi4jax built against the same MPI; install them "
            "in two steps (pip install mpich mpi4py, then MPI4JAX_BUILD_MPICC=<env>/bin/mpicc "
            "pip install --no-build-isolation mpi4jax; on a cluster use the site MPI's mpicc): "
            "see the README's section 'Installing with pip, on a laptop or a cluster'. Check "
            "with `bfrun --check`."
        ) from err
    return MPI


class MpiComm(NamedOps, ScheduleCommunicator):
    """The Communicator protocol on MPI ranks (one agent per rank), built on mpi4jax.

    Construct it on **every** rank (it is collective: it clones the communicator and splits
    off the machine-local one). Use it inside ``jax.jit`` (recommended: compile whole loops,
    see :func:`bluefog_dist.run`) or eagerly.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm, optional
        The communicator to clone (default ``MPI.COMM_WORLD``). Its size is the number of
        agents and must equal ``topology.size`` in every op.
    local_size : int, optional
        Ranks per machine for :meth:`hierarchical_neighbor_allreduce`. Default: the
        environment variable ``BLUEFOG_LOCAL_SIZE`` if set, else the size of MPI's
        shared-memory split (``Split_type(COMM_TYPE_SHARED)``). Machines must be blocks of
        consecutive ranks of equal size (as ``mpiexec`` places them by default); otherwise
        the hierarchical op raises a ``ValueError`` explaining the placement.
    timeline : str, optional
        Directory of the per-rank ``jax.profiler`` timeline (``rank<r>.json``, see
        :mod:`bluefog_dist.timeline`; merge with :mod:`bluefog_dist.profile_merge`).
        Default: the environment variable ``BLUEFOG_TIMELINE`` (``bfrun --timeline`` sets
        it); off when neither is set. Every rank must agree on whether it is on (checked
        with one ``allgather`` at construction).
    faults : bluefog.faults.Faults, optional
        Fault model (:mod:`bluefog.faults`): every message is still sent; the receiver
        ignores the ones the model marks lost (the same masks as the simulator's).

    Notes
    -----
    Every schedule round is a full permutation, so every rank sends and receives exactly
    once per round (a zero-weight padding exchange included), exactly as the simulator's
    ``lax.ppermute``; a rank paired with itself sends nothing.
    """

    _static_rank = True  # rank() is this process's Python int

    def __init__(self, comm=None, *, local_size: int | None = None, timeline: str | None = None,
                 faults=None):
        MPI = _mpi()
        import mpi4jax  # noqa: F401  (fails early, with mpi4jax's own ABI message)

        base = MPI.COMM_WORLD if comm is None else comm
        if not isinstance(base, MPI.Intracomm):
            raise TypeError(
                f"comm must be an mpi4py.MPI.Intracomm (e.g. MPI.COMM_WORLD); got "
                f"{type(base).__name__}."
            )
        self._comm = base.Clone()
        self.size = self._comm.Get_size()
        self._rank = self._comm.Get_rank()
        machines = find_machines(self._comm, MPI, local_size)
        self.local_size = machines.local_size
        self._local_comm, self._local_error = machines.local_comm, machines.error
        spec = timeline if timeline is not None else os.environ.get(TIMELINE_ENV) or None
        self._ops = OpNames()
        self._timeline = timeline_for(spec, self._comm)  # collective, also when off
        self.faults = check_faults(faults, self.size)

    # ---- primitives -----------------------------------------------------------------------
    def rank(self) -> int:
        """This rank's index in the cloned communicator (a static Python ``int``)."""
        return self._rank

    @property
    def comm(self):
        """The cloned mpi4py communicator every op runs on."""
        return self._comm

    def _table(self, values, dtype):
        # rank is static: the weight is a compile-time constant, not a gather.
        return jnp.asarray(np.asarray(values)[self._rank], dtype=dtype)

    def _exchange(self, leaves, rnd: Round):
        import mpi4jax

        src = int(rnd.sources[self._rank])
        dst = int(rnd.destinations[self._rank])
        if src == self._rank:  # paired with itself in this round (then dst == rank too)
            return list(leaves)
        packed = pack(leaves)
        outs = [self._ops.message(
                    "sendrecv", buf,
                    lambda b: mpi4jax.sendrecv(b, b, src, dst, comm=self._comm))
                for _, _, buf in packed]
        return unpack(leaves, list(zip(packed, outs)))

    def _sum(self, leaves):
        if self.size == 1:
            return list(leaves)
        return self._allreduce(leaves, self._comm, "allreduce")

    def _allreduce(self, leaves, comm, name):
        import mpi4jax

        MPI = _mpi()
        packed = pack(leaves, reduce=True)
        outs = [self._ops.message(name, buf,
                                  lambda b: mpi4jax.allreduce(b, op=MPI.SUM, comm=comm))
                for _, _, buf in packed]
        return unpack(leaves, list(zip(packed, outs)))

    def _gather(self, leaves):
        import mpi4jax

        if self.size == 1:
            return [leaf[None] for leaf in leaves]
        packed = pack(leaves)
        outs = [self._ops.message("allgather", buf,
                                  lambda b: mpi4jax.allgather(b, comm=self._comm))
                for _, _, buf in packed]
        return unpack(leaves, list(zip(packed, outs)), lead=(self.size,))

    def _local_average(self, leaves):
        if self._local_error is not None:
            raise ValueError(self._local_error)
        if self.local_size == 1:
            return list(leaves)
        summed = self._allreduce(leaves, self._local_comm, "local_allreduce")
        return [v / jnp.asarray(self.local_size, v.dtype) for v in summed]

    def _agree_specs(self, spec_of):
        """One host ``allgather`` of this rank's (spec, error): every rank raises the same."""
        # Collective BEFORE raising: a rank that raised alone would leave the others waiting.
        return dynamic.agreed(self._comm.allgather(dynamic.attempt(spec_of, self._rank)))

    def broadcast(self, x, root: int):
        """Rank ``root``'s value on every rank (``MPI_Bcast``); any dtypes.

        :math:`x_i^{+} = x_{\\text{root}}` for every rank ``i``.
        """
        import mpi4jax

        root = self._check_root(root, "broadcast")
        leaves, treedef = jax.tree_util.tree_flatten(x)
        if not leaves:
            raise ValueError(f"broadcast: x must contain at least one array; got {x!r}.")
        leaves = [jnp.asarray(leaf) for leaf in leaves]
        if self.size == 1:
            return jax.tree_util.tree_unflatten(treedef, leaves)
        with self._ops.named("broadcast"):
            packed = pack(leaves)
            outs = [self._ops.message("bcast", buf,
                                      lambda b: mpi4jax.bcast(b, root, comm=self._comm))
                    for _, _, buf in packed]
        return jax.tree_util.tree_unflatten(treedef, unpack(leaves, list(zip(packed, outs))))

    def barrier(self) -> None:
        """Block until every rank has reached this point (``MPI_Barrier``; also in ``jit``)."""
        import mpi4jax

        mpi4jax.barrier(comm=self._comm)

    @property
    def timeline(self) -> Timeline | None:
        """The :class:`~bluefog_dist.timeline.Timeline` of this rank, or ``None`` when off."""
        return self._timeline

    def __repr__(self) -> str:
        return (f"MpiComm(rank={self._rank}, size={self.size}, local_size={self.local_size}, "
                f"timeline={'on' if self.timeline else 'off'})")
