r"""``MpiComm``: the Communicator protocol under ``mpirun``, one agent per rank, with mpi4jax.

The mixing logic (rounds of full permutations, weights, ``lax.switch`` over the patterns of a
time-varying topology, hierarchical averaging) is inherited from
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
``_local_average``  ``mpi4jax.allreduce`` on the shared-memory sub-communicator
                    (``Split_type(COMM_TYPE_SHARED)``), divided by ``local_size``
==================  ==========================================================================

All leaves of one dtype are packed into one contiguous buffer, so a pytree costs one message
per dtype per round rather than one per leaf. Dtypes mpi4jax lacks (float16, bfloat16) travel
bit-cast to unsigned integers (exact), or as float32 inside reductions.

Bluefog's *dynamic* form of ``neighbor_allreduce`` (explicit ``self_weight``,
``src_weights``, ``dst_weights`` for one call) is also supported; see
:meth:`MpiComm.neighbor_allreduce`.

References
----------
B. Ying, K. Yuan, H. Hu, Y. Chen, W. Yin, "BlueFog: Make decentralized algorithms practical
for optimization and deep learning", arXiv:2111.04287 (2021).
mpi4jax: D. Hafner, F. Vicentini, "mpi4jax: Zero-copy MPI communication of JAX arrays",
JOSS 6(65), 3419 (2021).
"""

from __future__ import annotations

import contextlib
import os

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.comm import ScheduleCommunicator, dynamic
from bluefog.topology.schedule import Round

from .timeline import ENV_VAR as TIMELINE_ENV, Timeline, timeline_path

__all__ = ["MpiComm", "LOCAL_SIZE_ENV"]

#: Environment variable overriding the number of ranks per machine (tests, emulation).
LOCAL_SIZE_ENV = "BLUEFOG_LOCAL_SIZE"


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "bluefog_dist needs mpi4py and mpi4jax built against the same MPI; install them "
            "with tools/setup_env.sh (or `pip install -e .[mpi]`). Check with `bfrun --check`."
        ) from err
    return MPI


#: dtypes mpi4jax can send natively (its MPI_TYPE_MAP)
_NATIVE = {"float32", "float64", "complex64", "complex128", "int8", "int16", "int32", "int64",
           "uint8", "uint16", "uint32", "uint64", "bool"}
_BITS = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}


def _to_wire(buf, reduce: bool):
    """A buffer mpi4jax can carry: 16-bit floats etc. travel bit-cast to unsigned integers
    (exact) for copies, and as float32 for reductions (then rounded back once)."""
    name = jnp.dtype(buf.dtype).name
    if name in _NATIVE:
        return buf
    if reduce:
        return buf.astype(jnp.float32)
    return jax.lax.bitcast_convert_type(buf, _BITS[jnp.dtype(buf.dtype).itemsize])


def _from_wire(buf, dtype):
    if buf.dtype == dtype:
        return buf
    if jnp.issubdtype(buf.dtype, jnp.unsignedinteger):
        return jax.lax.bitcast_convert_type(buf, dtype)
    return buf.astype(dtype)


def _pack(leaves, reduce: bool = False):
    """Group leaves by dtype: ``[(dtype, indices, flat_wire_buffer)]``, one buffer per dtype,
    so a pytree costs one message per dtype."""
    groups: dict = {}
    for idx, leaf in enumerate(leaves):
        groups.setdefault(jnp.dtype(leaf.dtype), []).append(idx)
    packed = []
    for dtype, idxs in groups.items():
        if len(idxs) == 1:
            buf = jnp.reshape(leaves[idxs[0]], (-1,))
        else:
            buf = jnp.concatenate([jnp.reshape(leaves[i], (-1,)) for i in idxs])
        packed.append((dtype, idxs, _to_wire(buf, reduce)))
    return packed


def _unpack(leaves, packed_out, lead=()):
    """Inverse of :func:`_pack` for received buffers of shape ``lead + (total,)``."""
    out = [None] * len(leaves)
    for (dtype, idxs, _), buf in packed_out:
        buf = _from_wire(buf, dtype)
        offset = 0
        for i in idxs:
            shape, size = leaves[i].shape, int(np.prod(leaves[i].shape, dtype=np.int64))
            piece = buf[..., offset:offset + size] if len(idxs) > 1 else buf
            out[i] = jnp.reshape(piece, tuple(lead) + tuple(shape))
            offset += size
    return out


def _nbytes(buf) -> int:
    return int(np.prod(buf.shape, dtype=np.int64)) * jnp.dtype(buf.dtype).itemsize


class MpiComm(ScheduleCommunicator):
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
        Per-rank Chrome-trace output (prefix or template with ``{rank}``, see
        :mod:`bluefog_dist.timeline`). Default: the environment variable
        ``BLUEFOG_TIMELINE``; off when neither is set.

    Notes
    -----
    Every schedule round is a full permutation, so every rank sends and receives exactly
    once per round (a zero-weight padding exchange included), exactly as the simulator's
    ``lax.ppermute``; a rank paired with itself sends nothing.
    """

    _static_rank = True  # rank() is this process's Python int

    def __init__(self, comm=None, *, local_size: int | None = None, timeline: str | None = None):
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
        self._timeline = None
        self._op = "op"
        self._setup_local(MPI, local_size)
        spec = timeline if timeline is not None else os.environ.get(TIMELINE_ENV) or None
        if spec is not None:
            self._timeline = Timeline.for_path(timeline_path(spec, self._rank), self._rank)

    # ---- construction helpers -------------------------------------------------------------
    def _setup_local(self, MPI, local_size):
        """Find machines; one allgather so that every rank reaches the same verdict."""
        requested, error = None, None
        source = "local_size"
        if local_size is None and os.environ.get(LOCAL_SIZE_ENV):
            local_size, source = os.environ[LOCAL_SIZE_ENV], LOCAL_SIZE_ENV
            try:
                local_size = int(local_size)
            except ValueError:
                error = (f"{LOCAL_SIZE_ENV} must be a positive integer dividing the world size "
                         f"{self.size}; got {os.environ[LOCAL_SIZE_ENV]!r}.")
        if error is None and local_size is not None:
            if isinstance(local_size, bool) or not isinstance(local_size, (int, np.integer)):
                error = f"{source} must be an int; got {local_size!r}."
            elif local_size < 1 or self.size % int(local_size):
                error = (f"{source} must be a positive divisor of the world size {self.size}; "
                         f"got {local_size}. Every machine holds the same number of ranks.")
            else:
                requested = int(local_size)
        shared = self._comm.Split_type(MPI.COMM_TYPE_SHARED, key=self._rank)
        node_first = shared.allreduce(self._rank, op=MPI.MIN)
        node_size = shared.Get_size()
        info = self._comm.allgather((requested, error, node_first, node_size))
        errors = [(r, e) for r, (_, e, _, _) in enumerate(info) if e is not None]
        if errors:
            shared.Free()
            r, e = errors[0]
            raise ValueError(f"MpiComm: rank {r}: {e}")
        reqs = {q for q, _, _, _ in info}
        if len(reqs) != 1:
            shared.Free()
            raise ValueError(
                "MpiComm: local_size differs between ranks: "
                + ", ".join(f"rank {r}: {q}" for r, (q, _, _, _) in enumerate(info))
                + ". Pass the same local_size (or BLUEFOG_LOCAL_SIZE) on every rank."
            )
        self._local_error = None
        if requested is not None:
            shared.Free()
            self.local_size = requested
            self._local_comm = self._comm.Split(self._rank // requested, key=self._rank)
            return
        L = node_size
        consistent = all(s == L and first == (r // L) * L for r, (_, _, first, s) in enumerate(info))
        self.local_size = L if consistent else 1
        self._local_comm = shared
        if not consistent:
            layout = {}
            for r, (_, _, first, _) in enumerate(info):
                layout.setdefault(first, []).append(r)
            self._local_error = (
                "hierarchical_neighbor_allreduce needs machines made of equal blocks of "
                f"consecutive ranks; MPI's shared-memory split gives {list(layout.values())}. "
                "Launch with block placement (e.g. bfrun/mpiexec with -ppn), or set "
                f"{LOCAL_SIZE_ENV} / MpiComm(local_size=...) to emulate machines."
            )

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

    def _message(self, primitive: str, buf, fn, **args):
        if self._timeline is None:
            return fn(buf)
        args["bytes"] = _nbytes(buf)
        return self._timeline.timed(f"{self._op}/{primitive}", args, fn, buf)

    def _exchange(self, leaves, rnd: Round):
        import mpi4jax

        src = int(rnd.sources[self._rank])
        dst = int(rnd.destinations[self._rank])
        if src == self._rank:  # paired with itself in this round (then dst == rank too)
            return list(leaves)
        packed = _pack(leaves)
        outs = []
        for _, _, buf in packed:
            out = self._message(
                "sendrecv", buf,
                lambda b, s=src, d=dst: mpi4jax.sendrecv(b, b, s, d, comm=self._comm),
                source=src, dest=dst)
            outs.append(out)
        return _unpack(leaves, list(zip(packed, outs)))

    def _sum(self, leaves):
        if self.size == 1:
            return list(leaves)
        return self._allreduce(leaves, self._comm, "allreduce")

    def _allreduce(self, leaves, comm, name):
        import mpi4jax

        MPI = _mpi()
        packed = _pack(leaves, reduce=True)
        outs = [self._message(name, buf, lambda b: mpi4jax.allreduce(b, op=MPI.SUM, comm=comm))
                for _, _, buf in packed]
        return _unpack(leaves, list(zip(packed, outs)))

    def _gather(self, leaves):
        import mpi4jax

        if self.size == 1:
            return [leaf[None] for leaf in leaves]
        packed = _pack(leaves)
        outs = [self._message("allgather", buf, lambda b: mpi4jax.allgather(b, comm=self._comm))
                for _, _, buf in packed]
        return _unpack(leaves, list(zip(packed, outs)), lead=(self.size,))

    def _local_average(self, leaves):
        if self._local_error is not None:
            raise ValueError(self._local_error)
        if self.local_size == 1:
            return list(leaves)
        summed = self._allreduce(leaves, self._local_comm, "local_allreduce")
        return [v / jnp.asarray(self.local_size, v.dtype) for v in summed]

    def broadcast(self, x, root: int):
        """Rank ``root``'s value on every rank (``MPI_Bcast``); any dtypes."""
        import mpi4jax

        root = self._check_root(root, "broadcast")
        leaves, treedef = jax.tree_util.tree_flatten(x)
        if not leaves:
            raise ValueError(f"broadcast: x must contain at least one array; got {x!r}.")
        leaves = [jnp.asarray(leaf) for leaf in leaves]
        if self.size == 1:
            return jax.tree_util.tree_unflatten(treedef, leaves)
        with self._named("broadcast"):
            packed = _pack(leaves)
            outs = [self._message("bcast", buf,
                                  lambda b: mpi4jax.bcast(b, root, comm=self._comm), root=root)
                    for _, _, buf in packed]
        return jax.tree_util.tree_unflatten(treedef, _unpack(leaves, list(zip(packed, outs))))

    def barrier(self) -> None:
        """Block until every rank has reached this point (``MPI_Barrier``; also in ``jit``)."""
        import mpi4jax

        mpi4jax.barrier(comm=self._comm)

    # ---- op names for the timeline ------------------------------------------------------------
    @contextlib.contextmanager
    def _named(self, op):
        previous, self._op = self._op, op
        try:
            yield
        finally:
            self._op = previous

    def allreduce(self, x, average: bool = True):
        with self._named("allreduce"):
            return super().allreduce(x, average)

    allreduce.__doc__ = ScheduleCommunicator.allreduce.__doc__

    def allgather(self, x):
        with self._named("allgather"):
            return super().allgather(x)

    allgather.__doc__ = ScheduleCommunicator.allgather.__doc__

    def neighbor_allgather(self, x, topology, t=None):
        with self._named("neighbor_allgather"):
            return super().neighbor_allgather(x, topology, t)

    neighbor_allgather.__doc__ = ScheduleCommunicator.neighbor_allgather.__doc__

    def hierarchical_neighbor_allreduce(self, x, machine_topology, t=None):
        with self._named("hierarchical_neighbor_allreduce"):
            return super().hierarchical_neighbor_allreduce(x, machine_topology, t)

    hierarchical_neighbor_allreduce.__doc__ = \
        ScheduleCommunicator.hierarchical_neighbor_allreduce.__doc__

    # ---- neighbor_allreduce: the per-call form learns the other ranks' specs -----------------
    def neighbor_allreduce(self, x, topology=None, t=None, *, self_weight=None,
                           src_weights=None, dst_weights=None):
        with self._named("neighbor_allreduce"):
            return super().neighbor_allreduce(x, topology, t, self_weight=self_weight,
                                              src_weights=src_weights, dst_weights=dst_weights)

    neighbor_allreduce.__doc__ = ScheduleCommunicator.neighbor_allreduce.__doc__

    def _agree_specs(self, spec_of):
        """One host ``allgather`` of this rank's (spec, error): every rank raises the same."""
        # Collective BEFORE raising: a rank that raised alone would leave the others waiting.
        return dynamic.agreed(self._comm.allgather(dynamic.attempt(spec_of, self._rank)))

    # ---- misc -----------------------------------------------------------------------------
    @property
    def timeline(self) -> Timeline | None:
        """The :class:`~bluefog_dist.timeline.Timeline` of this rank, or ``None`` when off."""
        return self._timeline

    def __repr__(self) -> str:
        return (f"MpiComm(rank={self._rank}, size={self.size}, local_size={self.local_size}, "
                f"timeline={'on' if self._timeline else 'off'})")
