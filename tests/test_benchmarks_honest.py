"""Honest benchmarks (issue 13, item 8): the baselines do the same work in the same dtype,
and the tables report per-repetition ratios. Fast, no MPI.

Oracles: a float64 ``einsum`` evaluation of the logistic gradient (the dense NumPy
baseline must compute the same numbers in float32 with BLAS matmuls), and hand-written
ratio cells for the markdown of synthetic measurements.
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package sits, uninstalled, at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks import _workload as W  # noqa: E402
from benchmarks import block_ranks, mpi_exchange  # noqa: E402


def test_dense_numpy_baseline_is_float32_and_exact():
    A, y = W.data(3, m=20, dim=50)
    X = np.random.default_rng(1).standard_normal((3, 50)).astype(np.float32)
    got = W.numpy_grads(X, A, y)
    assert got.dtype == np.float32  # no silent promotion to float64
    A64, y64, X64 = A.astype(np.float64), y.astype(np.float64), X.astype(np.float64)
    z = np.einsum("nmd,nd->nm", A64, X64)
    want = np.einsum("nmd,nm->nd", A64, -y64 / (1.0 + np.exp(y64 * z))) / 20 + W.LAM * X64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_exchange_table_reports_min_and_median_of_per_repetition_ratios():
    results = [{"topology": "ring(n=2)", "method": m, "bytes": 1 << 20, "seconds": s}
               for m, s in [("bluefog_loop", 2e-3), ("raw_sendrecv", 1e-3),
                            ("raw_sendrecv_mix", 2.5e-3)]]
    ratios = [{"topology": "ring(n=2)", "bytes": 1 << 20, "vs": "raw_sendrecv_mix",
               "min": 0.7, "median": 0.8},
              {"topology": "ring(n=2)", "bytes": 1 << 20, "vs": "raw_sendrecv",
               "min": 1.5, "median": 2.0}]
    meta = {"ranks": 2, "cpus": 2, "load_before": "1 1 1", "load_after": "2 2 2",
            "mpi": "MPICH", "repeats": 5}
    text = mpi_exchange.markdown(results, meta, ratios)
    assert "5 interleaved repetitions (warm-up excluded)" in text
    assert "| 1 MiB | 2000.0 | - | 1000.0 | 2500.0 | - | - | 0.70, 0.80 | 1.50, 2.00 | - |" in text


def test_block_table_lists_each_agents_per_rank_row():
    rows = [{"agents_per_rank": k, "agents": 4 * k, "min_s_per_step": 1e-3 * k,
             "median_s_per_step": 2e-3 * k, "median_s_per_agent_step": 2e-3 / 4}
            for k in (1, 16)]
    text = block_ranks.markdown(rows, 4, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0))
    assert "load 1.00 2.00 3.00 4.00 5.00 6.00" in text
    assert "| 16 | 64 | 16.000 | 32.000 | 500.00 |" in text
