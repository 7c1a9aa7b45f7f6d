"""What the MPI launcher told this process: world size, local rank, local size.

Read from the environment variables that launchers set for every rank, so that a program
can learn, before importing JAX or initialising MPI, whether it runs under ``mpiexec`` /
``bfrun`` / ``srun`` and which device to pin (one per rank)::

    import os
    from bluefog_dist import local_rank
    os.environ["CUDA_VISIBLE_DEVICES"] = str(local_rank())   # before importing jax

==================  =========================  ==========================  ===================
launcher            world size                 local rank                  local size
==================  =========================  ==========================  ===================
MPICH / Hydra       ``PMI_SIZE``               ``MPI_LOCALRANKID``         ``MPI_LOCALNRANKS``
Open MPI            ``OMPI_COMM_WORLD_SIZE``   ``OMPI_COMM_WORLD_LOCAL_    ``OMPI_COMM_WORLD_
                                               RANK``                      LOCAL_SIZE``
MVAPICH2            ``MV2_COMM_WORLD_SIZE``    ``MV2_COMM_WORLD_LOCAL_     ``MV2_COMM_WORLD_
                                               RANK``                      LOCAL_SIZE``
Slurm ``srun``      ``PMI_SIZE`` (PMI2)        ``SLURM_LOCALID``           ``SLURM_STEP_TASKS_
                                                                           PER_NODE`` at
                                                                           ``SLURM_NODEID``
PMIx (no size var)  ``mpi4py`` ``Get_size()``  --                          --
==================  =========================  ==========================  ===================

Where no variable is set, :func:`local_rank` and :func:`local_size` return 0 and 1 (a
single process). They never call MPI: a collective (such as a shared-memory split) called by
only some ranks would leave them waiting. References: Bluefog's ``bf.local_rank()`` / ``bf.local_size()``,
Horovod's ``hvd.local_rank()``.
"""

from __future__ import annotations

import os

__all__ = ["world_size_from_env", "launched_world_size", "local_rank", "local_size"]

_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
                    "SLURM_LOCALID")
_LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")


def _int_var(names, env) -> int | None:
    for name in names:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def world_size_from_env(env=None) -> int | None:
    """The world size the MPI launcher announced, or ``None`` outside an MPI launch.

    Parameters
    ----------
    env : mapping, optional
        The environment to read (default ``os.environ``).
    """
    return _int_var(_SIZE_VARS, os.environ if env is None else env)


def launched_world_size(env=None) -> int:
    """The number of ranks of this launch: :func:`world_size_from_env`, else (under PMIx,
    which names no size variable) ``mpi4py``'s ``COMM_WORLD.Get_size()``, else 1."""
    env = os.environ if env is None else env
    size = world_size_from_env(env)
    if size is not None:
        return size
    if "PMIX_RANK" in env:
        try:
            from mpi4py import MPI
        except ImportError:
            return 1
        return MPI.COMM_WORLD.Get_size()
    return 1


def local_rank(env=None) -> int:
    """This rank's index among the ranks on its machine (0 outside an MPI launch).

    Use it to pin one accelerator per rank (``CUDA_VISIBLE_DEVICES=local_rank()``, set
    before JAX is imported). See the module docstring for the variables read.
    """
    value = _int_var(_LOCAL_RANK_VARS, os.environ if env is None else env)
    return 0 if value is None else value


def local_size(env=None) -> int:
    """The number of ranks on this machine (1 outside an MPI launch).

    Under a direct ``srun`` (no MPI launcher variable), the count of this node's entry of
    ``SLURM_STEP_TASKS_PER_NODE`` (else ``SLURM_TASKS_PER_NODE``; ``"4(x2),2"`` means 4, 4
    and 2 tasks on nodes 0, 1, 2) at index ``SLURM_NODEID``.
    """
    env = os.environ if env is None else env
    value = _int_var(_LOCAL_SIZE_VARS, env)
    if value is None:
        value = _slurm_local_size(env)
    return 1 if value is None else value


def _slurm_local_size(env) -> int | None:
    from .slurm import tasks_per_node

    node = _int_var(("SLURM_NODEID",), env)
    for counts_var, nodes_var in (("SLURM_STEP_TASKS_PER_NODE", "SLURM_STEP_NUM_NODES"),
                                  ("SLURM_TASKS_PER_NODE", "SLURM_JOB_NUM_NODES")):
        text, nodes = env.get(counts_var), _int_var((nodes_var, "SLURM_NNODES"), env)
        if text and nodes is not None and node is not None and node < nodes:
            try:
                return tasks_per_node(text, nodes)[node]
            except ValueError:
                return None  # unreadable: not ours to fail on (local_size falls back to 1)
    return None
