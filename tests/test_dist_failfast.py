"""A rank that dies of an uncaught exception after start-up ends the whole job, fast.

Oracle: wall time and exit status of ``mpiexec``: without the hook the other ranks block
in their next exchange until the timeout kills them.
"""

import textwrap
import time

import pytest

from mpi_support import run_mpi

pytestmark = pytest.mark.mpi

SCRIPT = textwrap.dedent("""
    import numpy as np
    import bluefog_dist
    from algorithms import dgd
    from algorithms.problems import quadratic
    from bluefog.topology import ring_graph
    from mpi4py import MPI

    n = MPI.COMM_WORLD.Get_size()
    problem = quadratic(np.arange(3.0 * n, dtype=np.float32).reshape(n, 3))
    res = bluefog_dist.run(dgd(lr=0.1), problem, ring_graph(n), 20, progress=False)
    if MPI.COMM_WORLD.Get_rank() == 1:
        raise OSError("rank 1 cannot write its output")
    # the others go on to the next collective, where they would wait for rank 1 forever
    bluefog_dist.run(dgd(lr=0.1), problem, ring_graph(n), 20, progress=False)
    print("UNREACHABLE: every rank finished")
""")


def test_uncaught_exception_on_one_rank_aborts_every_rank(tmp_path):
    script = tmp_path / "fail_on_rank_1.py"
    script.write_text(SCRIPT)
    t0 = time.monotonic()
    proc = run_mpi(4, [str(script)], timeout=240)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert proc.stdout.count("rank 1 cannot write its output") >= 1
    assert "[bluefog rank 1/4] uncaught exception; aborting the whole MPI job" in proc.stdout
    assert "UNREACHABLE" not in proc.stdout
    assert elapsed < 120, f"took {elapsed:.0f} s"
