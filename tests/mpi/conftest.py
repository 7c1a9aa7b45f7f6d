"""Tests in this folder run only under ``mpiexec`` (one pytest per rank), mpi4jax-style.

They are written in terms of ``rank`` and ``size`` so that one file runs at any world size;
``tests/test_dist_mpi.py`` launches them with ``mpiexec -n 4``, ``-n 3`` and ``-n 1`` from
the normal ``python -m pytest`` run. Collected directly (not under mpiexec) they are ignored.
A failing test aborts the whole MPI job (after printing its report) so that the other ranks
cannot hang waiting for it in a collective.
"""

import os
import sys

import pytest

_MPI_ENV = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
UNDER_MPIEXEC = any(v in os.environ for v in _MPI_ENV)

if not UNDER_MPIEXEC:
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config):
    if not UNDER_MPIEXEC:
        return "tests/mpi: not under mpiexec, skipped (run via tests/test_dist_mpi.py)"
    from mpi4py import MPI

    return (f"MPI rank {MPI.COMM_WORLD.Get_rank()} of size {MPI.COMM_WORLD.Get_size()} "
            f"({MPI.Get_library_version().splitlines()[0].strip()})")


@pytest.fixture(scope="session")
def comm():
    from bluefog_dist import MpiComm

    return MpiComm()


@pytest.fixture(scope="session")
def rank(comm):
    return comm.rank()


@pytest.fixture(scope="session")
def size(comm):
    return comm.size


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and UNDER_MPIEXEC:
        from mpi4py import MPI

        if MPI.COMM_WORLD.Get_size() > 1:
            sys.stderr.write(f"\n[rank {MPI.COMM_WORLD.Get_rank()}] FAILED {item.nodeid}\n"
                             f"{report.longreprtext}\n")
            sys.stderr.flush()
            MPI.COMM_WORLD.Abort(1)
