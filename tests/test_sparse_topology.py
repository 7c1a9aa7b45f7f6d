"""Topologies stored by their edges (``bluefog.topology.sparse``).

Oracles: the dense construction of the same family (``uniform_weights`` of the circulant
adjacency), for fingerprints, schedules and ``rho``; ``scipy.sparse`` matrix products for a
run beyond the dense limit.
"""

import jax
import numpy as np
import pytest

import algorithms
import bluefog_sim
from bluefog.topology import Topology, exponential_graph, ring_graph
from bluefog.topology.exponential import exponential_offsets
from bluefog.topology.sparse import SparseWeights
from bluefog.topology.weights import uniform_weights


def dense_exponential(n):
    A = np.zeros((n, n), bool)
    for h in exponential_offsets(n):
        A[np.arange(n), (np.arange(n) - h) % n] = True
    return Topology(uniform_weights(A), require="doubly")


@pytest.mark.parametrize("n", [1, 2, 5, 12, 64])
def test_edge_built_topology_equals_the_dense_construction(n):
    sparse, dense = exponential_graph(n), dense_exponential(n)
    assert sparse.fingerprint == dense.fingerprint and sparse == dense
    np.testing.assert_array_equal(sparse.weights, dense.weights)
    np.testing.assert_array_equal(sparse.schedule.dense(), dense.weights)
    assert sparse.rho == pytest.approx(dense.rho, abs=1e-12)
    assert [sparse.in_neighbors(i) for i in range(n)] == [dense.in_neighbors(i) for i in range(n)]
    assert [sparse.out_neighbors(i) for i in range(n)] == [dense.out_neighbors(i) for i in range(n)]


def test_sparse_input_validated_like_dense():
    W = ring_graph(6).weights
    rows, cols = np.nonzero(W)
    sw = SparseWeights.from_entries(6, rows, cols, W[rows, cols])
    assert Topology(sw).fingerprint == ring_graph(6).fingerprint
    bad = SparseWeights.from_entries(6, rows, cols, 0.9 * W[rows, cols])
    with pytest.raises(ValueError, match="must be row-stochastic .* row 0 sums to 0.9"):
        Topology(bad)
    split = SparseWeights.from_entries(4, [0, 1, 2, 3], [0, 1, 2, 3], np.ones(4))
    with pytest.raises(ValueError, match="strongly connected .* got 4 strongly connected"):
        Topology(split)


def test_run_beyond_the_dense_limit_matches_sparse_oracle():
    """32,768 agents (a 8 GiB dense matrix): DGD x+ = W x - lr (x - b) vs scipy.sparse."""
    n, steps = 2 ** 15, 4
    topo = exponential_graph(n)
    b = np.random.default_rng(0).standard_normal((n, 2))
    with jax.enable_x64(True):
        res = bluefog_sim.run(algorithms.dgd(0.1), algorithms.problems.quadratic(b), topo,
                              steps, record_every=steps, progress=False)
    A, x = topo.sparse_weights.csr(), np.zeros((n, 2))
    for _ in range(steps):
        x = A @ x - 0.1 * (x - b)
    np.testing.assert_allclose(np.asarray(res.params), x, rtol=0, atol=1e-13)
