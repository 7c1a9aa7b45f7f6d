"""The hybrid MPI backend (``bluefog_dist.run(..., agents_per_rank=k)``): one
``mpiexec -n 4`` launch of ``tests/mpi/block_checks.py`` with 64 agents (16 per rank).

Oracles: dense NumPy for every op (``W @ X``, exact mean, ``X``, ``X[root]``) and the
simulator's trajectory for DGD and exact diffusion on ``exponential_graph(64)`` (float64,
1e-10); a bad ``agents_per_rank`` or a failing ``on_segment`` on one rank must raise on
every rank within the timeout.
"""

import re

import pytest

from mpi_support import assert_mpi_ok, run_mpi

pytestmark = pytest.mark.mpi

EXPECTED = {"neighbor_allreduce_exponential", "neighbor_allreduce_erdos_renyi",
            "neighbor_allreduce_one_peer_t0", "neighbor_allreduce_one_peer_t3",
            "neighbor_allreduce_one_peer_t7", "allreduce", "allgather", "broadcast", "refusal", "callback_failure",
            "run_dgd_n64_k16", "run_exact_diffusion_n64_k16"}


def test_block_backend_matches_dense_oracles_and_the_simulator():
    proc = run_mpi(4, ["tests/mpi/block_checks.py", "64", "20"], timeout=600)
    assert_mpi_ok(proc)
    ok = dict(re.findall(r"BLOCK OK (\w+) ([0-9.e+-]+)", proc.stdout))
    assert set(ok) == EXPECTED, proc.stdout[-3000:]
    assert all(float(v) <= 1e-10 for v in ok.values()), ok


@pytest.mark.slow
def test_1024_agents_on_4_ranks_equal_the_simulator():
    """The issue's scale check: 1024 agents, 256 per rank, DGD and exact diffusion on
    exponential_graph(1024) equal the single-process simulator to 1e-10 in float64."""
    proc = run_mpi(4, ["tests/mpi/block_checks.py", "1024", "20", "--no-ops"], timeout=900)
    assert_mpi_ok(proc)
    ok = dict(re.findall(r"BLOCK OK (\w+) ([0-9.e+-]+)", proc.stdout))
    assert set(ok) == {"run_dgd_n1024_k256", "run_exact_diffusion_n1024_k256"}, proc.stdout[-3000:]
    assert all(float(v) <= 1e-10 for v in ok.values()), ok
