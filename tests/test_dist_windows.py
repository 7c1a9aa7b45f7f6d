"""Real one-sided MPI windows (bluefog_dist.windows) under ``mpiexec -n 4``, with timeouts.

``tests/mpi/windows_program.py``: asynchronous push-sum with heterogeneous per-rank delays
conserves mass (sum of weights = n to 1e-12 after a final barrier and collect; ratios = exact
average to 1e-10), put/update equal the dense ``W @ X``, versions count deliveries, bad input
raises on every rank, the library's async_push_sum runs unchanged on the MPI windows (same
tolerances), free and exit leave nobody blocked.

``tests/mpi/windows_gaps_program.py``: ``win_info`` equals the simulator's, a cross-rank
dtype or structure mismatch raises on every rank, ``run_async`` validates ``compute_delay``
on every rank, non-blocking ops return before the transfer (poll False while the target
holds an exclusive lock), copy their payload and keep the issue order, and SGP's overlap
variant conserves the push-sum weight.

``tests/mpi/windows_exit_program.py``: windows left open at interpreter exit are freed
collectively (a late operation into a rank that already finished still completes, exit 0),
and a rank dying of an uncaught exception ends the job instead of leaving it blocked.

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


def test_win_info_agreement_delays_and_nonblocking_under_mpiexec_4():
    proc = run_mpi(4, [str(ROOT / "tests" / "mpi" / "windows_gaps_program.py")], timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "gaps ok=True" in proc.stdout, proc.stdout[-3000:]
    assert "FAIL" not in proc.stdout


def test_open_windows_at_exit_leave_no_rank_blocked():
    proc = run_mpi(4, [str(ROOT / "tests" / "mpi" / "windows_exit_program.py"), "late"],
                   timeout=90)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "late accumulate done" in proc.stdout


def test_uncaught_exception_with_open_windows_ends_the_job():
    proc = run_mpi(4, [str(ROOT / "tests" / "mpi" / "windows_exit_program.py"), "raise"],
                   timeout=90)
    assert proc.returncode != 0
    assert ("[bluefog rank 2] MpiWindows: exiting on an uncaught exception with windows open; "
            "aborting the MPI job") in proc.stdout, proc.stdout[-3000:]
    assert "barrier passed" not in proc.stdout
