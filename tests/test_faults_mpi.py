"""A fault model is a pure function of ``(seed, t, receiver, sender)``, so the same
``Faults`` gives the same trajectory under MPI as in the simulator: one ``mpiexec -n 4``
launch of ``tests/mpi/faults_cross_backend.py`` (oracle: the simulator's rows, themselves
checked against dense NumPy recursions in ``tests/test_faults_runs.py``). A hang fails by
timeout."""

import re

import pytest

from mpi_support import assert_mpi_ok, run_mpi

pytestmark = pytest.mark.mpi


def test_faulty_mpi_trajectory_equals_the_faulty_simulator_row():
    proc = run_mpi(4, ["tests/mpi/faults_cross_backend.py"], timeout=600)
    assert_mpi_ok(proc)
    ok = dict(re.findall(r"FAULTS OK (\w+) ([0-9.e+-]+)", proc.stdout))
    assert set(ok) == {"consensus_renormalise", "robust_push_sum_loss_crash",
                       "sweep_reuses_the_program", "hybrid_robust_push_sum"}, proc.stdout[-3000:]
    assert all(float(v) <= 1e-12 for v in ok.values()), ok
