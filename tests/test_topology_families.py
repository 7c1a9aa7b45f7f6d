"""Static topology families against independent definitions.

Oracles: Bluefog's own matrix constructions (re-implemented here from
``bluefog/common/topology_util.py`` with exact integer powers), networkx generators
(``cycle_graph``, ``star_graph``, ``grid_2d_graph``, ``hypercube_graph``,
``random_regular_graph``, ``gnp_random_graph``), closed-form circulant / hypercube spectra and
``numpy.linalg.eigvalsh``.
"""

import math

import networkx as nx
import numpy as np
import pytest

from bluefog.topology import (
    Topology,
    erdos_renyi_graph,
    exponential_graph,
    fully_connected_graph,
    grid_2d_graph,
    hypercube_graph,
    random_regular_graph,
    ring_graph,
    star_graph,
    symmetric_exponential_graph,
    torus_2d_graph,
)

SIZES = [1, 2, 3, 5, 6, 8, 12, 16, 17]


# ---------------------------------------------------------------- independent oracles
def _is_power(k: int, base: int) -> bool:
    return k in {base ** m for m in range(64)}


def bluefog_roll_matrix(first_row) -> np.ndarray:
    """Bluefog's circulant construction: topo[i] = np.roll(x, i); topo[i, j] = weight of the
    networkx edge i -> j (i sends to j). Our convention is its transpose."""
    x = np.asarray(first_row, dtype=float)
    x = x / x.sum()
    return np.stack([np.roll(x, i) for i in range(x.size)])


def bluefog_exponential(n, base):
    return bluefog_roll_matrix([1.0] + [1.0 if _is_power(i, base) else 0.0 for i in range(1, n)])


def bluefog_symmetric_exponential(n, base):
    row = [1.0]
    for i in range(1, n):
        index = i if i <= n // 2 else n - i
        row.append(1.0 if _is_power(index, base) else 0.0)
    return bluefog_roll_matrix(row)


def nx_adjacency(G, index=lambda u: u):
    n = G.number_of_nodes()
    A = np.zeros((n, n), dtype=bool)
    for u, v in G.edges():
        a, b = index(u), index(v)
        if a != b:
            A[a, b] = A[b, a] = True
    return A


def metropolis_oracle(A):
    """Metropolis-Hastings weights written loop by loop from the definition."""
    n = A.shape[0]
    deg = [int(A[i].sum()) for i in range(n)]
    W = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j and A[i, j]:
                W[i, j] = 1.0 / (1 + max(deg[i], deg[j]))
        W[i, i] = 1.0 - W[i].sum()
    return W


def second_eig_symmetric(W):
    n = W.shape[0]
    if n == 1:
        return 0.0
    ev = np.sort(np.abs(np.linalg.eigvalsh(W)))[::-1]
    return float(ev[1])


def circulant_rho(first_row_of_W):
    """Circulant matrices are normal: singular values of W - J are |DFT| of the first row,
    minus the k = 0 mode."""
    lam = np.fft.fft(first_row_of_W)
    return float(np.max(np.abs(lam[1:]))) if lam.size > 1 else 0.0


def check_common(t: Topology, *, symmetric: bool):
    W = t.weights
    assert W.dtype == np.float64 and W.shape == (t.size, t.size)
    assert t.is_row_stochastic and t.is_column_stochastic and t.is_doubly_stochastic
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(W.sum(axis=0), 1.0, atol=1e-12)
    assert (W >= 0).all() and (np.diag(W) > 0).all()
    assert t.is_symmetric == symmetric
    # schedule reproduces W exactly and never needs more rounds than the max degree
    np.testing.assert_array_equal(t.schedule.dense(), W)
    assert t.schedule.num_rounds <= max(t.max_degree, 0)
    # the graph view agrees with W
    G = t.graph
    for i in range(t.size):
        assert sorted(G.predecessors(i)) == t.in_neighbors(i)
        assert sorted(G.successors(i)) == t.out_neighbors(i)


# ---------------------------------------------------------------- circulant families
@pytest.mark.parametrize("base", [2, 3, 4])
@pytest.mark.parametrize("n", SIZES + [27, 64])
def test_exponential_matches_bluefog(n, base):
    t = exponential_graph(n, base=base)
    B = bluefog_exponential(n, base)
    np.testing.assert_allclose(t.weights, B.T, rtol=0, atol=1e-15)
    hops = [base ** m for m in range(64) if base ** m < n]
    for i in range(n):
        assert set(t.out_neighbors(i)) == {(i + h) % n for h in hops}
        assert set(t.in_neighbors(i)) == {(i - h) % n for h in hops}
    check_common(t, symmetric=bool(np.allclose(B, B.T)))
    assert t.schedule.num_rounds == len(hops)  # one round per offset
    assert sorted(r.offset for r in t.schedule.rounds) == sorted((-h) % n for h in hops)
    assert t.rho == pytest.approx(circulant_rho(t.weights[0]), abs=1e-12)


def test_exponential_243_uses_exact_powers():
    # Bluefog's isPowerOf(243, 3) is False (float log); 3^5 = 243 is a hop here.
    t = exponential_graph(300, base=3)
    assert 243 in t.out_neighbors(0) and len(t.out_neighbors(0)) == 6


@pytest.mark.parametrize("base", [2, 4])
@pytest.mark.parametrize("n", SIZES + [64])
def test_symmetric_exponential_matches_bluefog(n, base):
    t = symmetric_exponential_graph(n, base=base)
    np.testing.assert_allclose(t.weights, bluefog_symmetric_exponential(n, base).T, atol=1e-15)
    check_common(t, symmetric=True)
    offsets = {k for k in range(1, n) if _is_power(min(k, n - k), base)}
    assert t.schedule.num_rounds == len(offsets)
    assert t.rho == pytest.approx(second_eig_symmetric(t.weights), abs=1e-12)


@pytest.mark.parametrize("n", SIZES)
def test_ring_undirected(n):
    t = ring_graph(n)
    A = nx_adjacency(nx.cycle_graph(n))
    assert np.array_equal((t.weights > 0) & ~np.eye(n, dtype=bool), A)
    if n >= 3:
        np.testing.assert_allclose(t.weights, bluefog_roll_matrix([1, 1] + [0] * (n - 3) + [1]),
                                   atol=1e-15)
        lam = [(1 + 2 * math.cos(2 * math.pi * k / n)) / 3 for k in range(1, n)]
        assert t.rho == pytest.approx(max(abs(v) for v in lam), abs=1e-12)
        assert t.schedule.num_rounds == 2
    elif n == 2:
        np.testing.assert_array_equal(t.weights, np.full((2, 2), 0.5))  # Bluefog's n=2 case
        assert t.rho == pytest.approx(0.0, abs=1e-15)
    check_common(t, symmetric=True)
    assert t.rho == pytest.approx(second_eig_symmetric(t.weights), abs=1e-12)


@pytest.mark.parametrize("n", SIZES)
def test_ring_directed(n):
    t = ring_graph(n, directed=True)
    for i in range(n):
        assert t.out_neighbors(i) == ([] if n == 1 else [(i + 1) % n])
    check_common(t, symmetric=n <= 2)  # i -> i+1 only; for n = 2 that is both ways
    if n > 1:
        assert t.schedule.num_rounds == 1
        # eigenvalues (1 + e^{-2 pi i k/n})/2, modulus |cos(pi k / n)|
        assert t.rho == pytest.approx(max(abs(math.cos(math.pi * k / n)) for k in range(1, n)),
                                      abs=1e-12)


@pytest.mark.parametrize("n", SIZES)
def test_fully_connected(n):
    t = fully_connected_graph(n)
    np.testing.assert_array_equal(t.weights, np.full((n, n), 1.0 / n))
    check_common(t, symmetric=True)
    assert t.rho == pytest.approx(0.0, abs=1e-12)
    assert t.schedule.num_rounds == n - 1
    assert all(r.offset is not None for r in t.schedule.rounds)


# ---------------------------------------------------------------- Metropolis families
@pytest.mark.parametrize("n,center", [(1, 0), (2, 1), (5, 0), (6, 3), (17, 16)])
def test_star_matches_bluefog_and_networkx(n, center):
    t = star_graph(n, center=center)
    # Bluefog StarGraph: topo[i, i] = 1 - 1/n, topo[c, i] = topo[i, c] = 1/n
    B = np.diag(np.full(n, 1 - 1 / n))
    B[center, :] = B[:, center] = 1 / n
    np.testing.assert_allclose(t.weights, B, atol=1e-15)
    relabel = {0: center, center: 0}
    A = nx_adjacency(nx.star_graph(n - 1), index=lambda u: relabel.get(u, u))
    np.testing.assert_allclose(t.weights, metropolis_oracle(A), atol=1e-15)
    check_common(t, symmetric=True)
    assert t.schedule.num_rounds == n - 1
    assert t.rho == pytest.approx(second_eig_symmetric(t.weights), abs=1e-12)
    assert t.layout == "shell"


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 5), (2, 2), (3, 4), (4, 5)])
def test_grid_2d(rows, cols):
    t = grid_2d_graph(rows, cols)
    A = nx_adjacency(nx.grid_2d_graph(rows, cols), index=lambda u: u[0] * cols + u[1])
    np.testing.assert_allclose(t.weights, metropolis_oracle(A), atol=1e-15)
    check_common(t, symmetric=True)
    assert t.rho == pytest.approx(second_eig_symmetric(t.weights), abs=1e-12)
    assert t.layout == "grid" and t._grid_shape == (rows, cols)


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 4), (2, 3), (3, 3), (3, 5), (4, 4)])
def test_torus_2d(rows, cols):
    t = torus_2d_graph(rows, cols)
    G = nx.grid_2d_graph(rows, cols, periodic=True)
    A = nx_adjacency(G, index=lambda u: u[0] * cols + u[1])
    np.testing.assert_allclose(t.weights, metropolis_oracle(A), atol=1e-15)
    check_common(t, symmetric=True)
    assert t.rho == pytest.approx(second_eig_symmetric(t.weights), abs=1e-12)
    if rows >= 3 and cols >= 3:
        lam = [(1 + 2 * math.cos(2 * math.pi * p / rows) + 2 * math.cos(2 * math.pi * q / cols)) / 5
               for p in range(rows) for q in range(cols) if (p, q) != (0, 0)]
        assert t.rho == pytest.approx(max(abs(v) for v in lam), abs=1e-12)
        assert t.schedule.num_rounds == 4  # regular bipartite colouring: exactly the degree


@pytest.mark.parametrize("dim", [0, 1, 2, 3, 4, 5])
def test_hypercube(dim):
    t = hypercube_graph(dim)
    n = 2 ** dim
    assert t.size == n
    # networkx's hypercube_graph(0) has no node; 2**0 = 1 agent here.
    A = (nx_adjacency(nx.hypercube_graph(dim), index=lambda u: sum(int(b) << k for k, b in enumerate(np.atleast_1d(u))))
         if dim else np.zeros((1, 1), dtype=bool))
    np.testing.assert_allclose(t.weights, metropolis_oracle(A), atol=1e-15)
    check_common(t, symmetric=True)
    assert t.schedule.num_rounds == dim
    assert t.rho == pytest.approx((dim - 1) / (dim + 1) if dim else 0.0, abs=1e-12)
    assert t.rho == pytest.approx(second_eig_symmetric(t.weights), abs=1e-12)


@pytest.mark.parametrize("n,degree,seed", [(1, 0, 0), (6, 3, 0), (10, 4, 1), (17, 4, 2),
                                           (16, 3, 5), (12, 11, 0)])
def test_random_regular(n, degree, seed):
    t = random_regular_graph(n, degree, seed=seed)
    off = (t.weights > 0) & ~np.eye(n, dtype=bool)
    assert (off.sum(axis=1) == degree).all()
    if n > 1:
        A = nx_adjacency(nx.random_regular_graph(degree, n, seed=seed))
        np.testing.assert_array_equal(off, A)
        np.testing.assert_allclose(t.weights, (np.eye(n) + A) / (degree + 1), atol=1e-15)
        assert t.schedule.num_rounds == degree
    check_common(t, symmetric=True)
    assert t.rho == pytest.approx(second_eig_symmetric(t.weights), abs=1e-12)
    assert random_regular_graph(n, degree, seed=seed) == t  # deterministic in the seed


@pytest.mark.parametrize("n,p,seed", [(1, 0.0, 0), (2, 1.0, 0), (10, 0.7, 1), (17, 0.5, 3),
                                      (12, 1.0, 0)])
def test_erdos_renyi(n, p, seed):
    t = erdos_renyi_graph(n, p, seed=seed)
    A = nx_adjacency(nx.gnp_random_graph(n, p, seed=seed))
    np.testing.assert_allclose(t.weights, metropolis_oracle(A), atol=1e-15)
    check_common(t, symmetric=True)
    assert t.rho == pytest.approx(second_eig_symmetric(t.weights), abs=1e-12)
    if p == 1.0 and n > 1:
        assert t.max_degree == n - 1


def test_single_agent_families_are_identity():
    for t in [exponential_graph(1), symmetric_exponential_graph(1), ring_graph(1),
              ring_graph(1, directed=True), star_graph(1), grid_2d_graph(1, 1),
              torus_2d_graph(1, 1), hypercube_graph(0), fully_connected_graph(1),
              random_regular_graph(1, 0, seed=0), erdos_renyi_graph(1, 0.5, seed=0)]:
        np.testing.assert_array_equal(t.weights, [[1.0]])
        assert t.schedule.num_rounds == 0 and t.rho == 0.0 and t.spectral_gap == 1.0


def test_layouts_suit_the_family():
    assert exponential_graph(8).layout == "circular"
    assert ring_graph(8).layout == "circular"
    assert torus_2d_graph(3, 3).layout == "grid"
    assert random_regular_graph(8, 3, seed=0).layout == "spring"
    assert erdos_renyi_graph(8, 0.9, seed=0).layout == "spring"


def test_rho_orders_families_as_expected():
    # ring (diameter n/2) mixes slowest; exponential faster; full is exact.
    assert ring_graph(64).rho > torus_2d_graph(8, 8).rho > exponential_graph(64).rho > 0
    # the 4 x 4 torus is the 4-cube (C4 x C4 = K2^4): same spectrum
    assert torus_2d_graph(4, 4).rho == pytest.approx(hypercube_graph(4).rho) == pytest.approx(0.6)


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("call,exc,match", [
    (lambda: exponential_graph(0), ValueError, r"n must be an integer >= 1; got 0"),
    (lambda: exponential_graph(-3), ValueError, r"n must be an integer >= 1; got -3"),
    (lambda: exponential_graph(4.0), TypeError, r"n must be an integer >= 1; got 4.0 of type float"),
    (lambda: exponential_graph(True), TypeError, r"n must be an integer"),
    (lambda: exponential_graph(8, base=1), ValueError, r"base must be an integer >= 2; got 1"),
    (lambda: symmetric_exponential_graph(8, base=0), ValueError, r"base must be an integer >= 2; got 0"),
    (lambda: ring_graph(0), ValueError, r"n must be an integer >= 1; got 0"),
    (lambda: ring_graph(4, directed="yes"), TypeError, r"directed must be a bool"),
    (lambda: fully_connected_graph(0), ValueError, r"n must be an integer >= 1"),
    (lambda: star_graph(5, center=5), ValueError, r"center must be an agent index in \[0, n\) = \[0, 5\); got center=5"),
    (lambda: star_graph(5, center=-1), ValueError, r"center must be an agent index"),
    (lambda: star_graph(5, center=1.0), TypeError, r"center must be an int in \[0, n\)"),
    (lambda: grid_2d_graph(0, 3), ValueError, r"rows must be an integer >= 1; got 0"),
    (lambda: grid_2d_graph(3, 0), ValueError, r"cols must be an integer >= 1; got 0"),
    (lambda: torus_2d_graph(2, -1), ValueError, r"cols must be an integer >= 1; got -1"),
    (lambda: hypercube_graph(-1), ValueError, r"dim must be an integer >= 0; got -1"),
    (lambda: hypercube_graph(15), ValueError,
     r"2\*\*dim \(dim=15\) must be at most MAX_DENSE_AGENTS = 16384 agents; got 32768"),
    (lambda: random_regular_graph(5, 3, seed=0), ValueError,
     r"n \* degree must be even .* got n=5, degree=3, n \* degree = 15"),
    (lambda: random_regular_graph(4, 4, seed=0), ValueError, r"degree must be < n .* got degree=4, n=4"),
    (lambda: random_regular_graph(8, 1, seed=0), ValueError,
     r"sampled a graph with 4 connected components.*degree >= 3.*another seed"),
    (lambda: random_regular_graph(8, 0, seed=0), ValueError, r"8 connected components.*Use degree >= 3"),
    (lambda: random_regular_graph(3, 0, seed=0), ValueError, r"3 connected components.*Use degree >= 2 "),
    (lambda: random_regular_graph(8, 3, seed=None), TypeError, r"seed must be an int; got None"),
    (lambda: random_regular_graph(8, 3, seed=-1), ValueError, r"seed must be a non-negative int; got -1"),
    (lambda: erdos_renyi_graph(8, 1.5, seed=0), ValueError, r"p must be in \[0, 1\]; got 1.5"),
    (lambda: erdos_renyi_graph(8, -0.1, seed=0), ValueError, r"p must be in \[0, 1\]; got -0.1"),
    (lambda: erdos_renyi_graph(8, float("nan"), seed=0), ValueError, r"p must be in \[0, 1\]; got nan"),
    (lambda: erdos_renyi_graph(8, "0.5", seed=0), TypeError, r"p must be a probability"),
    (lambda: erdos_renyi_graph(20, 0.05, seed=0), ValueError,
     r"sampled a disconnected graph .*Raise p .*ln\(n\)/n = 0.15.*another seed"),
    (lambda: erdos_renyi_graph(8, 0.5, seed="a"), TypeError, r"seed must be a non-negative int"),
])
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_docstring_examples():
    import doctest

    import bluefog.topology.exponential as exponential
    import bluefog.topology.grid as grid
    import bluefog.topology.hypercube as hypercube
    import bluefog.topology.inner_outer as inner_outer
    import bluefog.topology.one_peer as one_peer
    import bluefog.topology.ring as ring
    import bluefog.topology.star as star

    for module in (exponential, grid, hypercube, ring, star, one_peer, inner_outer):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
