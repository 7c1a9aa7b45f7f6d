"""Schedule compiler: dense() == W exactly, full permutations, round counts.

Oracles: the mixing matrix itself (the schedule must reproduce it bit for bit), the
definition of a permutation, and Konig's theorem (rounds == max degree) for the bipartite
edge-colouring path; circulant graphs must use one round per offset.
"""

import networkx as nx
import numpy as np
import pytest

from bluefog.topology import (
    compile_schedule,
    erdos_renyi_graph,
    exponential_graph,
    from_matrix,
    fully_connected_graph,
    grid_2d_graph,
    hypercube_graph,
    one_peer_exponential_graph,
    random_matching,
    random_regular_graph,
    ring_graph,
    star_graph,
    symmetric_exponential_graph,
    torus_2d_graph,
)


def check_schedule(W):
    W = np.asarray(W, dtype=np.float64)
    n = W.shape[0]
    s = compile_schedule(W)
    np.testing.assert_array_equal(s.dense(), W)
    np.testing.assert_array_equal(s.self_weights, np.diag(W))
    off = (W != 0) & ~np.eye(n, dtype=bool)
    covered = np.zeros_like(off)
    for r in s.rounds:
        assert sorted(r.sources.tolist()) == list(range(n))          # a full permutation
        np.testing.assert_array_equal(r.destinations[r.sources], np.arange(n))
        np.testing.assert_array_equal(r.weights, W[np.arange(n), r.sources] * r.active)
        assert not np.any(r.active & (r.sources == np.arange(n)))  # no real edge is a self-pair
        real = np.zeros_like(off)
        real[np.arange(n)[r.active], r.sources[r.active]] = True
        assert not np.any(real & covered)                           # each edge once
        covered |= real
        assert len(r.pairs) == n and {d for _, d in r.pairs} == set(range(n))
    np.testing.assert_array_equal(covered, off)                     # every edge
    delta = 0 if not off.any() else int(max(off.sum(0).max(), off.sum(1).max()))
    assert s.num_rounds <= max(delta, 0) or not off.any()
    assert s.bytes_sent_per_agent(1000) == 1000 * s.num_rounds
    return s


@pytest.mark.parametrize("topo", [
    exponential_graph(12), exponential_graph(64), exponential_graph(27, base=3),
    symmetric_exponential_graph(17), ring_graph(9), ring_graph(9, directed=True),
    fully_connected_graph(7),
], ids=lambda t: t.name)
def test_circulant_one_round_per_offset(topo):
    s = check_schedule(topo.weights)
    n = topo.size
    offsets = sorted({int((j - 0) % n) for j in np.flatnonzero(topo.weights[0]) if j != 0})
    assert [r.offset for r in s.rounds] == offsets
    for r in s.rounds:
        np.testing.assert_array_equal(r.sources, (np.arange(n) + r.offset) % n)
        assert r.active.all()  # circulant rounds carry no padding


@pytest.mark.parametrize("topo", [
    star_graph(9, center=4), grid_2d_graph(3, 5), torus_2d_graph(3, 4), hypercube_graph(4),
    erdos_renyi_graph(15, 0.5, seed=2), random_regular_graph(14, 5, seed=3),
], ids=lambda t: t.name)
def test_non_circulant_families_meet_konig_bound(topo):
    s = check_schedule(topo.weights)
    assert s.num_rounds == topo.max_degree  # Konig: exactly Delta colours


@pytest.mark.parametrize("seed", range(40))
def test_random_irregular_directed_graphs(seed):
    """Property: random sparse directed graphs (with a ring to keep them connected) compile
    to exactly Delta rounds that reproduce W."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 24))
    A = rng.random((n, n)) < rng.uniform(0.05, 0.5)
    A[np.arange(n), (np.arange(n) - 1) % n] = True
    np.fill_diagonal(A, False)
    W = np.where(A, rng.uniform(0.1, 1.0, (n, n)), 0.0) + np.diag(rng.uniform(0.1, 1.0, n))
    W /= W.sum(axis=1, keepdims=True)
    s = check_schedule(W)
    delta = int(max(A.sum(0).max(), A.sum(1).max()))
    circulant = len({tuple(sorted(((np.flatnonzero(A[i]) - i) % n).tolist())) for i in range(n)}) == 1
    assert s.num_rounds == (len(np.flatnonzero(A[0])) if circulant else delta)


@pytest.mark.parametrize("seed", range(10))
def test_random_undirected_graphs_from_networkx(seed):
    G = nx.gnm_random_graph(20, 40, seed=seed)
    A = nx.to_numpy_array(G) > 0
    W = A / (A.sum(axis=1, keepdims=True) + 1) + np.diag(1 / (A.sum(axis=1) + 1))
    s = check_schedule(W)
    if A.any():
        assert s.num_rounds == int(A.sum(axis=1).max())


def test_single_agent_and_diagonal_have_no_rounds():
    assert check_schedule(np.ones((1, 1))).num_rounds == 0
    assert check_schedule(np.eye(4)).num_rounds == 0


def test_dynamic_patterns_compile_to_one_peer_rounds():
    for t in one_peer_exponential_graph(12).patterns:
        s = check_schedule(t.weights)
        assert s.num_rounds == 1
    for t in random_matching(7, seed=3).patterns:
        s = check_schedule(t.weights)
        assert s.num_rounds == 1  # a matching is one round; the idle agent pads


def test_schedule_arrays_are_read_only():
    s = from_matrix(ring_graph(5).weights).schedule
    with pytest.raises(ValueError, match="read-only"):
        s.rounds[0].sources[0] = 1
    with pytest.raises(ValueError, match="read-only"):
        s.self_weights[0] = 0.0


@pytest.mark.parametrize("seed", range(25))
def test_random_circulant_supports_get_one_round_per_offset(seed):
    """Property: any support with the same offset set at every agent (weights may differ per
    agent) compiles to exactly one padding-free round per offset."""
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(2, 40))
    k = int(rng.integers(1, n))
    offsets = sorted(rng.choice(np.arange(1, n), size=k, replace=False).tolist())
    W = np.zeros((n, n))
    for i in range(n):
        for o in offsets:
            W[i, (i + o) % n] = rng.uniform(0.1, 1.0)
        W[i, i] = rng.uniform(0.1, 1.0)
    W /= W.sum(axis=1, keepdims=True)
    s = check_schedule(W)
    assert [r.offset for r in s.rounds] == offsets
    assert all(r.active.all() for r in s.rounds)
