"""Every algorithm runs in both backends with matching trajectories: one ``mpiexec -n 4``
launch of ``tests/mpi/algorithms_cross_backend.py`` (all algorithms in one launch, to keep CI
fast). The oracle is the simulator's stacked trajectory, itself checked against dense NumPy
re-implementations in ``tests/test_algorithms_oracle.py``."""

import re

import pytest

from mpi_support import assert_mpi_ok, run_mpi

pytestmark = pytest.mark.mpi

EXPECTED = {"consensus", "push_sum", "dgd", "diffusion_atc", "diffusion_awc", "exact_diffusion",
            "extra", "nids", "gradient_tracking", "gradient_tracking_atc", "push_diging", "dsgd",
            "dsgd_local_momentum", "gradient_allreduce"}


def test_every_algorithm_matches_the_simulator_under_mpiexec():
    proc = run_mpi(4, ["tests/mpi/algorithms_cross_backend.py"], timeout=900)
    assert_mpi_ok(proc)
    ok = dict(re.findall(r"CROSS-BACKEND OK (\w+) ([0-9.e+-]+)", proc.stdout))
    assert set(ok) == EXPECTED, proc.stdout[-3000:]
    assert all(float(v) <= 1e-6 for v in ok.values()), ok
