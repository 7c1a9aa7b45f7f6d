r"""Which ranks share a machine: the ``local_size`` of :class:`bluefog_dist.MpiComm`.

``hierarchical_neighbor_allreduce`` treats machine :math:`m` as the block of ranks
:math:`mL, \dots, mL + L - 1` and averages inside it. ``L`` comes from, in order:

1. ``MpiComm(local_size=L)``;
2. the environment variable ``BLUEFOG_LOCAL_SIZE`` (tests, emulating machines on one host;
   ``bfrun --local-size`` sets it);
3. MPI's shared-memory split (``Split_type(COMM_TYPE_SHARED)``), accepted only if every
   machine is a block of ``L`` consecutive ranks (``mpiexec``'s default block placement);
   otherwise ``local_size`` is 1 and the hierarchical op raises a ``ValueError`` explaining
   the placement.

One ``allgather`` lets every rank reach the same verdict, so a bad value raises the same
``ValueError`` on every rank instead of leaving the others waiting.

Reference: Bluefog's ``local_size()`` / ``hierarchical_neighbor_allreduce`` (B. Ying et al.,
arXiv:2111.04287, 2021).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

__all__ = ["LOCAL_SIZE_ENV", "Machines", "find_machines"]

#: Environment variable overriding the number of ranks per machine (tests, emulation).
LOCAL_SIZE_ENV = "BLUEFOG_LOCAL_SIZE"


class Machines(NamedTuple):
    """The verdict of :func:`find_machines`.

    Attributes
    ----------
    local_size : int
        Ranks per machine.
    local_comm : mpi4py.MPI.Intracomm
        The communicator of this rank's machine (for the in-machine allreduce).
    error : str or None
        Why the hierarchical op cannot run (machines are not equal blocks), else ``None``.
    """

    local_size: int
    local_comm: object
    error: str | None


def _requested(local_size, size: int):
    """``(requested local_size or None, error or None)`` from the argument or environment."""
    source = "local_size"
    if local_size is None and os.environ.get(LOCAL_SIZE_ENV):
        local_size, source = os.environ[LOCAL_SIZE_ENV], LOCAL_SIZE_ENV
        try:
            local_size = int(local_size)
        except ValueError:
            return None, (f"{LOCAL_SIZE_ENV} must be a positive integer dividing the world "
                          f"size {size}; got {os.environ[LOCAL_SIZE_ENV]!r}.")
    if local_size is None:
        return None, None
    if isinstance(local_size, bool) or not isinstance(local_size, (int, np.integer)):
        return None, f"{source} must be an int; got {local_size!r}."
    if local_size < 1 or size % int(local_size):
        return None, (f"{source} must be a positive divisor of the world size {size}; got "
                      f"{local_size}. Every machine holds the same number of ranks.")
    return int(local_size), None


def find_machines(comm, MPI, local_size=None) -> Machines:
    """Find this rank's machine (collective: call it on every rank of ``comm``).

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
    MPI : the ``mpi4py.MPI`` module
    local_size : int, optional
        Explicit ranks per machine (see the module docstring for the defaults).

    Raises
    ------
    ValueError
        On every rank, if any rank's ``local_size`` is invalid or the ranks disagree.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    requested, error = _requested(local_size, size)
    shared = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    node_first = shared.allreduce(rank, op=MPI.MIN)
    info = comm.allgather((requested, error, node_first, shared.Get_size()))
    errors = [(r, e) for r, (_, e, _, _) in enumerate(info) if e is not None]
    if errors:
        shared.Free()
        r, e = errors[0]
        raise ValueError(f"MpiComm: rank {r}: {e}")
    if len({q for q, _, _, _ in info}) != 1:
        shared.Free()
        raise ValueError(
            "MpiComm: local_size differs between ranks: "
            + ", ".join(f"rank {r}: {q}" for r, (q, _, _, _) in enumerate(info))
            + ". Pass the same local_size (or BLUEFOG_LOCAL_SIZE) on every rank.")
    if requested is not None:
        shared.Free()
        return Machines(requested, comm.Split(rank // requested, key=rank), None)
    L = shared.Get_size()
    if all(s == L and first == (r // L) * L for r, (_, _, first, s) in enumerate(info)):
        return Machines(L, shared, None)
    layout: dict = {}
    for r, (_, _, first, _) in enumerate(info):
        layout.setdefault(first, []).append(r)
    return Machines(1, shared, (
        "hierarchical_neighbor_allreduce needs machines made of equal blocks of "
        f"consecutive ranks; MPI's shared-memory split gives {list(layout.values())}. "
        "Launch with block placement (e.g. bfrun/mpiexec with -ppn), or set "
        f"{LOCAL_SIZE_ENV} / MpiComm(local_size=...) to emulate machines."))
