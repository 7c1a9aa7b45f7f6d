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


THREAD_SCRIPT = textwrap.dedent("""
    import queue, sys, threading
    from mpi4py import MPI
    from bluefog_dist import failfast

    failfast.install()
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    # SystemExit ends only its own thread (Python's rule): not a reason to abort the job
    t = threading.Thread(target=sys.exit, args=(3,), name="quits")
    t.start()
    t.join()
    world.Barrier()
    print(f"AFTER-SYSTEMEXIT {rank}", flush=True)
    world.Barrier()
    batches = queue.Queue()

    def loader():
        if rank == 1:
            raise OSError("rank 1's loader thread cannot read its shard")
        batches.put(rank)

    threading.Thread(target=loader, name="data-loader", daemon=True).start()
    value = batches.get()         # rank 1 waits for a batch that never comes
    world.allreduce(value)        # the others wait for rank 1 in the exchange
    print("UNREACHABLE: every rank finished", flush=True)
""")


def test_uncaught_exception_in_a_thread_of_one_rank_aborts_every_rank(tmp_path):
    """threading.excepthook: without it rank 1 blocks on its queue and the others in the
    allreduce until the timeout (MpiTimeout fails the test)."""
    script = tmp_path / "thread_fails_on_rank_1.py"
    script.write_text(THREAD_SCRIPT)
    t0 = time.monotonic()
    proc = run_mpi(3, [str(script)], timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert proc.stdout.count("AFTER-SYSTEMEXIT") == 3  # SystemExit in a thread: no abort
    assert ("[bluefog rank 1/3] uncaught exception in thread 'data-loader'; aborting the whole "
            "MPI job" in proc.stdout)
    assert "rank 1's loader thread cannot read its shard" in proc.stdout
    assert "UNREACHABLE" not in proc.stdout
    assert elapsed < 60, f"took {elapsed:.0f} s"


def test_abort_job_refuses_bad_arguments_before_touching_mpi():
    from bluefog_dist import failfast

    with pytest.raises(TypeError, match="message must be a str; got int"):
        failfast.abort_job(3)
    with pytest.raises(TypeError, match="code must be an int exit status; got '1'"):
        failfast.abort_job("bye", code="1")
    with pytest.raises(TypeError, match="code must be an int exit status; got True"):
        failfast.abort_job("bye", code=True)
