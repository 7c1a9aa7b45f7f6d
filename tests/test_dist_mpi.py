"""Run the mpi4jax-style tests of ``tests/mpi`` under ``mpiexec`` from the normal pytest run.

``mpiexec -n 4`` runs every file; ``-n 3`` (odd size: Konig padding, idle agents in random
matchings) and ``-n 1`` (no peers at all) run the op tests and a subset of the runner tests,
to keep CI fast (each launch pays JAX import and compilation on every rank). A hang fails
the test through the timeout instead of blocking CI.
"""

import re

import pytest

from mpi_support import assert_mpi_ok, run_mpi

pytestmark = pytest.mark.mpi

PYTEST = ["-m", "pytest", "tests/mpi", "-p", "no:cacheprovider", "-x", "-rN", "--color=no"]

SUBSET = "not trajectory_equals or test_dgd"


@pytest.mark.parametrize("n,select", [(4, None), (3, SUBSET), (1, SUBSET)])
def test_mpi_suite(n, select):
    args = PYTEST + ([] if select is None else ["-k", select])
    proc = run_mpi(n, args, timeout=900)
    assert_mpi_ok(proc)
    # every rank ran pytest, printed its rank in the header and passed
    headers = re.findall(r"MPI rank (\d+) of size (\d+)", proc.stdout)
    assert sorted(int(r) for r, _ in headers) == list(range(n)), proc.stdout[-3000:]
    assert {int(s) for _, s in headers} == {n}
    passed = re.findall(r"(\d+) passed", proc.stdout)
    assert len(passed) == n and all(int(p) > 10 for p in passed), proc.stdout[-3000:]
    assert " failed" not in proc.stdout
