"""Real one-sided MPI windows (bluefog_dist.windows) under ``mpiexec -n 4``, with a timeout.

One launch runs every check of ``tests/mpi/windows_program.py``: asynchronous push-sum with
heterogeneous per-rank delays conserves mass (sum of weights = n to 1e-12 after a final
barrier and collect; ratios = exact average to 1e-10), put/update equal the dense ``W @ X``,
versions count deliveries, bad input raises on every rank, the library's async_push_sum
runs unchanged on the MPI windows (same tolerances), free and exit leave nobody blocked.
A hang fails the test (the job is killed after the timeout) instead of blocking the suite.
"""

import pytest

from mpi_support import ROOT, run_mpi

pytestmark = pytest.mark.mpi


def test_async_push_sum_and_window_ops_under_mpiexec_4():
    proc = run_mpi(4, [str(ROOT / "tests" / "mpi" / "windows_program.py")], timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "windows ok=True" in proc.stdout, proc.stdout[-3000:]
    assert "FAIL" not in proc.stdout
