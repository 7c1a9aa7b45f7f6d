"""Absurd sizes and non-real weights are refused with the limit and why (issue 16, items 6-7).

Oracle: the arithmetic of the limit (8 n^2 bytes of float64, 2 GiB at n = 16384) and the
pinned messages; each refusal must come before the dense matrix is allocated (checked by
timing a call that would otherwise need terabytes).
"""

import time

import networkx as nx
import numpy as np
import pytest

import bluefog.topology as T
from bluefog.topology.hierarchical import lift_machine_topology, machine_average_topology
from bluefog.topology.validation import MAX_DENSE_AGENTS, check_num_agents

LIMIT = r"must be at most MAX_DENSE_AGENTS = 16384 agents; got "


def test_limit_keeps_the_dense_matrix_at_2_gib():
    assert MAX_DENSE_AGENTS == 16384 and 8 * MAX_DENSE_AGENTS ** 2 == 2 * 2 ** 30
    assert check_num_agents(MAX_DENSE_AGENTS) == MAX_DENSE_AGENTS


def test_exponential_graph_of_ten_million_agents_is_refused_before_allocating():
    # built by its edges: the limit is MAX_SPARSE_AGENTS = 2**20 (24 bytes per edge)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=(
            r"^n must be at most MAX_SPARSE_AGENTS = 1048576 agents \(24 bytes per edge: an "
            r"exponential graph of 2\*\*20 agents takes about 0\.5 GiB\); got 10000000\. Use "
            r"fewer agents\.$")):
        T.exponential_graph(10 ** 7)
    assert time.perf_counter() - start < 1.0


def test_sparse_topology_refuses_only_its_dense_matrix():
    """65,536 agents: 32 GiB dense (8 n^2 bytes), refused with the way out; the edge list
    (n (tau + 1) entries, tau = 16 hops) and the degree are there."""
    topo = T.exponential_graph(2 ** 16)
    assert topo.sparse_weights.num_edges == 2 ** 16 * 17 and topo.max_degree == 16
    with pytest.raises(ValueError, match=(
            r"^topology.weights: the dense n x n matrix of this 65536-agent topology would need "
            r"32 GiB; it is built only for n <= MAX_DENSE_AGENTS = 16384\. Use "
            r"topology.sparse_weights")):
        topo.weights


@pytest.mark.parametrize("call,match", [
    (lambda: T.ring_graph(16385), r"^n " + LIMIT + "16385"),
    (lambda: T.symmetric_exponential_graph(10 ** 9), r"^n " + LIMIT + "1000000000"),
    (lambda: T.fully_connected_graph(10 ** 5), r"^n " + LIMIT + "100000"),
    (lambda: T.star_graph(10 ** 6), r"^n " + LIMIT),
    (lambda: T.random_regular_graph(10 ** 6, 4, seed=0), r"^n " + LIMIT),
    (lambda: T.erdos_renyi_graph(10 ** 6, 0.1, seed=0), r"^n " + LIMIT),
    (lambda: T.grid_2d_graph(200, 200), r"^rows \* cols " + LIMIT + "40000"),
    (lambda: T.torus_2d_graph(129, 128), r"^rows \* cols " + LIMIT + "16512"),
    (lambda: T.hypercube_graph(15), r"^2\*\*dim \(dim=15\) " + LIMIT + "32768"),
    (lambda: T.hypercube_graph(10 ** 9), r"^2\*\*dim \(dim=1000000000\) " + LIMIT + r"2\*\*64 or more"),
    (lambda: T.one_peer_exponential_graph(10 ** 7), r"^n " + LIMIT),
    (lambda: T.random_matching(10 ** 7), r"^n " + LIMIT),
    (lambda: T.inner_outer_ring_graph(3 * 10 ** 6, 3), r"^size " + LIMIT),
    (lambda: T.inner_outer_exponential_graph(4 * 10 ** 6, 4), r"^size " + LIMIT),
    (lambda: machine_average_topology(10 ** 6, 2), r"^size " + LIMIT),
    (lambda: lift_machine_topology(T.ring_graph(8), 4096), r"^machine_topology.size \* local_size " + LIMIT + "32768"),
    (lambda: T.from_networkx(nx.empty_graph(20000)), r"^G.number_of_nodes\(\) " + LIMIT + "20000"),
])
def test_every_dense_constructor_refuses_too_many_agents(call, match):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        call()
    assert time.perf_counter() - start < 5.0


def test_from_matrix_refuses_a_matrix_above_the_limit():
    W = np.broadcast_to(np.float32(1.0 / 16400), (16400, 16400))  # a view: no 2 GiB here
    with pytest.raises(ValueError, match=r"^weights.shape\[0\] " + LIMIT + "16400"):
        T.from_matrix(W)


@pytest.mark.parametrize("W", [np.full((3, 3), 1 / 3, dtype=np.complex128),
                               np.full((2, 2), 0.5 + 0.1j), [[0.5 + 0j, 0.5], [0.5, 0.5]]],
                         ids=["complex-zero-imag", "complex", "list-of-complex"])
def test_from_matrix_refuses_complex_weights(W):
    dtype = np.asarray(W).dtype
    with pytest.raises(TypeError, match=(
            rf"^weights must be real; got complex dtype {dtype}\. Mixing weights are real "
            r"convex-combination coefficients: pass weights\.real if the imaginary parts are "
            r"zero\.$")):
        T.from_matrix(W)
    with pytest.raises(TypeError, match=r"^weights must be real; got complex dtype"):
        T.Topology(W)
    with pytest.raises(TypeError, match=r"^adjacency must be real \(0/1 or boolean\); got complex dtype"):
        T.uniform_weights(W)


def test_sizes_at_the_limit_boundary_are_accepted_by_the_check():
    # Only the check: building a 16384-agent topology takes 2 GiB and minutes.
    for name in ("n", "rows * cols"):
        assert check_num_agents(16384, name) == 16384
        with pytest.raises(ValueError, match=rf"^{name.replace('*', '[*]')} " + LIMIT + "16385"):
            check_num_agents(16385, name)
    with pytest.raises(TypeError, match=r"n must be an integer >= 1; got 2.5 of type float"):
        check_num_agents(2.5)
