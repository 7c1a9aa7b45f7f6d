"""Weight rules, networkx / matrix interop, and drawing.

Oracles: weight formulas written loop by loop; networkx's own adjacency
(``nx.to_numpy_array``); round trips through ``Topology.graph``.
"""

import io

import matplotlib

matplotlib.use("Agg")

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bluefog.topology import (  # noqa: E402
    draw,
    draw_dynamic_topology,
    draw_topology,
    erdos_renyi_graph,
    exponential_graph,
    from_matrix,
    from_networkx,
    grid_2d_graph,
    metropolis_weights,
    one_peer_exponential_graph,
    random_matching,
    ring_graph,
    star_graph,
    torus_2d_graph,
    uniform_weights,
)


# ---------------------------------------------------------------- weight rules
def test_uniform_weights_definition():
    rng = np.random.default_rng(0)
    A = rng.random((9, 9)) < 0.3
    W = uniform_weights(A)
    for i in range(9):
        nbrs = [j for j in range(9) if j != i and A[i, j]]
        for j in range(9):
            want = 1 / (len(nbrs) + 1) if (j == i or j in nbrs) else 0.0
            assert W[i, j] == pytest.approx(want, abs=1e-15)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)


def test_metropolis_weights_definition_on_irregular_graph():
    G = nx.barbell_graph(4, 2)  # irregular degrees 3, 4, 2
    A = nx.to_numpy_array(G) > 0
    W = metropolis_weights(A)
    d = A.sum(axis=1)
    for i, j in G.edges():
        assert W[i, j] == W[j, i] == pytest.approx(1 / (1 + max(d[i], d[j])))
    np.testing.assert_allclose(W.sum(axis=0), 1.0, atol=1e-15)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-15)
    assert (np.diag(W) > 0).all()


@pytest.mark.parametrize("call,exc,match", [
    (lambda: metropolis_weights(np.array([[0, 1], [0, 0]])), ValueError,
     r"metropolis_weights needs an undirected graph .* agents 0 and 1 .* Use uniform_weights"),
    (lambda: uniform_weights(np.ones((2, 3))), ValueError, r"adjacency must be a square \(n, n\) array"),
    (lambda: uniform_weights("ring"), TypeError, r"adjacency must be a square 2-D boolean/0-1 array; got str"),
    (lambda: uniform_weights(np.array([[0, np.nan], [1, 0]])), ValueError, r"adjacency must be finite"),
    (lambda: uniform_weights(np.zeros((0, 0))), ValueError, r"with n >= 1; got shape \(0, 0\)"),
    (lambda: metropolis_weights(np.array([[0, -1], [-1, 0]])), ValueError,
     r"adjacency must hold 0/1 \(or False/True\) entries; got -1 at index \(0, 1\)"),
])
def test_weight_rule_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------- from_networkx
def test_from_networkx_metropolis_and_uniform_on_undirected_graph():
    G = nx.petersen_graph()
    A = nx.to_numpy_array(G, nodelist=range(10)) > 0
    t = from_networkx(G)
    np.testing.assert_allclose(t.weights, (np.eye(10) + A) / 4, atol=1e-15)  # 3-regular
    assert t.is_doubly_stochastic and t.is_symmetric
    u = from_networkx(nx.path_graph(4), weights="uniform")
    np.testing.assert_allclose(u.weights, [[1/2, 1/2, 0, 0], [1/3, 1/3, 1/3, 0],
                                           [0, 1/3, 1/3, 1/3], [0, 0, 1/2, 1/2]])
    assert u.is_row_stochastic and not u.is_column_stochastic


def test_from_networkx_directed_uniform_follows_sender_to_receiver():
    G = nx.DiGraph([(0, 1), (1, 2), (2, 0), (0, 2)])  # u -> v: u sends to v
    t = from_networkx(G, weights="uniform")
    assert t.in_neighbors(2) == [0, 1] and t.out_neighbors(0) == [1, 2]
    np.testing.assert_allclose(t.weights[2], [1/3, 1/3, 1/3])
    np.testing.assert_allclose(t.weights[1], [1/2, 1/2, 0])


def test_from_networkx_symmetric_digraph_accepts_metropolis():
    G = nx.DiGraph(nx.cycle_graph(5))  # both directions of every edge
    np.testing.assert_allclose(from_networkx(G).weights, ring_graph(5).weights, atol=1e-15)


def test_from_networkx_unordered_node_insertion():
    G = nx.Graph()
    G.add_nodes_from([3, 1, 0, 2])
    G.add_edges_from([(3, 0), (0, 1), (1, 2), (2, 3)])
    np.testing.assert_allclose(from_networkx(G).weights, ring_graph(4).weights, atol=1e-15)


@pytest.mark.parametrize("topo", [exponential_graph(12), star_graph(7, 3), erdos_renyi_graph(9, 0.7, seed=1),
                                  grid_2d_graph(2, 3)], ids=lambda t: t.name)
def test_from_networkx_round_trip_through_topology_graph(topo):
    back = from_networkx(topo.graph, weights="weight", require="doubly")
    np.testing.assert_array_equal(back.weights, topo.weights)


def test_from_networkx_edge_attribute_self_weight_rules():
    G = nx.DiGraph()
    G.add_edge(0, 1, w=0.25)
    G.add_edge(1, 0, w=0.5)
    row = from_networkx(G, weights="w")          # self weight = row remainder
    np.testing.assert_allclose(row.weights, [[0.5, 0.5], [0.25, 0.75]])
    col = from_networkx(G, weights="w", require="column")  # self weight = column remainder
    np.testing.assert_allclose(col.weights, [[0.75, 0.5], [0.25, 0.5]])
    G.add_edge(0, 0, w=0.5)
    G.add_edge(1, 1, w=0.75)                      # explicit self-loops win
    np.testing.assert_allclose(from_networkx(G, weights="w").weights, [[0.5, 0.5], [0.25, 0.75]])


def test_from_networkx_single_node():
    G = nx.Graph()
    G.add_node(0)
    np.testing.assert_array_equal(from_networkx(G).weights, [[1.0]])


def _graph_with_labels(labels):
    G = nx.Graph()
    G.add_nodes_from(labels)
    return G


@pytest.mark.parametrize("call,exc,match", [
    (lambda: from_networkx(nx.Graph()), ValueError, r"G must have at least one node; got an empty graph"),
    (lambda: from_networkx(nx.path_graph(["a", "b", "c"])), ValueError,
     r"non-integer node label 'a'. Relabel with networkx.convert_node_labels_to_integers\(G\)"),
    (lambda: from_networkx(nx.grid_2d_graph(2, 2)), ValueError, r"non-integer node label \(0, 0\)"),
    (lambda: from_networkx(_graph_with_labels([0, 1, 3])), ValueError,
     r"nodes must be exactly 0..2 \(contiguous agent ranks\); got labels \[0, 1, 3\] \(missing \[2\]\)"),
    (lambda: from_networkx(_graph_with_labels([1, 2, 3])), ValueError, r"missing \[0\]"),
    (lambda: from_networkx(nx.path_graph(3), weights="w"), ValueError,
     r"weights='w' names an edge attribute, but edge \(0, 1\) has none"),
    (lambda: from_networkx(nx.DiGraph([(0, 1), (1, 0), (1, 2), (2, 0)])), ValueError,
     r"weights='metropolis' needs an undirected graph; G has the edge 2 -> 0 but not 0 -> 2"),
    (lambda: from_networkx(nx.MultiGraph([(0, 1), (0, 1)])), TypeError, r"G must be a simple graph; got a MultiGraph"),
    (lambda: from_networkx(np.eye(3)), TypeError, r"G must be a networkx.Graph or networkx.DiGraph; got ndarray. For a weight matrix use from_matrix"),
    (lambda: from_networkx(nx.path_graph(3), weights=None), TypeError, r"weights must be 'metropolis', 'uniform' or an edge attribute name"),
    (lambda: from_networkx(nx.path_graph(3), require="bogus"), ValueError, r"require must be one of"),
    (lambda: from_networkx(nx.Graph([(0, 1), (2, 3)])), ValueError, r"not strongly connected"),
    (lambda: from_networkx(nx.Graph([(0, 1, {"w": 0.7}), (1, 2, {"w": 0.7})]), weights="w"), ValueError,
     r"agent 1's incoming weights sum to more than 1, so its self weight would be -0.4 < 0"),
    (lambda: from_networkx(nx.Graph([(0, 1, {"w": "x"})]), weights="w"), TypeError,
     r"edge attribute 'w' must be a real number; got 'x' on edge \(0, 1\)"),
])
def test_from_networkx_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_from_matrix():
    W = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    t = from_matrix(W)
    np.testing.assert_array_equal(t.weights, W)
    assert t.in_neighbors(0) == [1] and t.out_neighbors(0) == [2]
    # push-sum style column-stochastic matrix
    C = np.array([[0.5, 0.0, 1.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.0]])
    assert from_matrix(C, require="column").is_column_stochastic
    with pytest.raises(ValueError, match=r"row 0 sums to 1.5"):
        from_matrix(C)
    with pytest.raises(ValueError, match=r"layout must be one of"):
        from_matrix(W, layout="radial")


# ---------------------------------------------------------------- drawing
@pytest.mark.parametrize("topo", [exponential_graph(8), ring_graph(6), star_graph(7, center=2),
                                  grid_2d_graph(2, 3), torus_2d_graph(3, 3),
                                  erdos_renyi_graph(8, 0.7, seed=0), ring_graph(1)],
                         ids=lambda t: t.name)
def test_draw_topology_returns_figure(topo):
    fig = draw(topo)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    off = (topo.weights > 0) & ~np.eye(topo.size, dtype=bool)
    symmetric = np.array_equal(off, off.T)
    if symmetric:
        # one LineCollection with one segment per undirected edge, widths ~ weights
        lines = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
        n_edges = int(np.triu(off).sum())
        if n_edges:
            assert len(lines) == 1 and len(lines[0].get_segments()) == n_edges
            widths = np.asarray(lines[0].get_linewidths())
            assert widths.max() == pytest.approx(4.0)
    else:
        arrows = [p for p in ax.patches if p.__class__.__name__ == "FancyArrowPatch"]
        assert len(arrows) == int(off.sum())
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # really renders (Agg), not just builds artists
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_positions_follow_the_family():
    from bluefog.topology.drawing import topology_positions

    pos = topology_positions(grid_2d_graph(2, 3))
    assert tuple(pos[4]) == (1.0, -1.0)
    spos = topology_positions(star_graph(6, center=3))
    assert np.allclose(spos[3], 0.0)
    cpos = topology_positions(exponential_graph(8))
    assert np.allclose([np.hypot(*p) for p in cpos.values()], 1.0)


def test_draw_into_given_axes_and_errors():
    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    assert draw(exponential_graph(5), ax=ax) is fig
    assert ax.get_title().startswith("exponential(n=5, base=2)")
    with pytest.raises(TypeError, match=r"topology must be a bluefog.topology.Topology; got DynamicTopology"):
        draw_topology(one_peer_exponential_graph(4))
    with pytest.raises(ValueError, match=r"max_edge_width must be a positive number; got 0"):
        draw_topology(ring_graph(4), max_edge_width=0)


def test_draw_dynamic_topology_one_panel_per_pattern():
    d = one_peer_exponential_graph(8)
    fig = draw(d)
    assert isinstance(fig, Figure) and len(fig.axes) == d.period == 3
    assert "rho per step=0.000" in fig._suptitle.get_text()  # n = 8: exact after one period
    assert fig.axes[1].get_title().startswith("t mod 3 = 1")
    g = random_matching(6, seed=1, pool_size=12)
    fig = draw_dynamic_topology(g, max_patterns=5)
    assert len(fig.axes) == 5 and "first 5 of 12" in fig._suptitle.get_text()
    with pytest.raises(TypeError, match=r"dynamic must be a DynamicTopology; got Topology"):
        draw_dynamic_topology(ring_graph(4))
    with pytest.raises(ValueError, match=r"max_patterns must be an integer >= 1; got 0"):
        draw(d, max_patterns=0)
    with pytest.raises(TypeError, match=r"max_patterns must be an integer >= 1; got '2'"):
        draw(d, max_patterns="2")


def test_draw_dispatch_errors():
    with pytest.raises(TypeError, match=r"topology must be a bluefog.topology.Topology or DynamicTopology; got ndarray"):
        draw(np.eye(3))
    with pytest.raises(ValueError, match=r"ax is only accepted for a static Topology"):
        draw(one_peer_exponential_graph(4), ax=Figure().add_subplot(1, 1, 1))
    with pytest.raises(TypeError, match=r"For a DynamicTopology use draw\(dynamic\) or draw_dynamic_topology"):
        draw_topology(one_peer_exponential_graph(4))
