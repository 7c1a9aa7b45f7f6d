r"""Interop: topologies from networkx graphs and from explicit matrices.

networkx convention: an edge ``u -> v`` means ``u`` sends to ``v`` (as in Bluefog, whose
topologies *are* ``networkx.DiGraph`` objects with ``W[u, v]`` on edge ``u -> v``). In
bluefog-jax's matrix convention that edge is ``W[v, u]``: what ``v`` puts on ``u``'s value.
An undirected ``networkx.Graph`` edge means both directions.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from ._topology import Topology
from .validation import STOCHASTICITY, check_num_agents
from .weights import metropolis_weights, uniform_weights

__all__ = ["from_networkx", "from_matrix"]


def _node_index(G) -> int:
    nodes = list(G.nodes())
    n = len(nodes)
    if n == 0:
        raise ValueError(
            "G must have at least one node; got an empty graph. Add nodes 0..n-1 "
            "(e.g. networkx.path_graph(4))."
        )
    bad = [u for u in nodes if isinstance(u, bool) or not isinstance(u, (int, np.integer))]
    if bad:
        raise ValueError(
            f"G's nodes must be the integers 0..n-1 (the agent ranks); got non-integer node "
            f"label {bad[0]!r}. Relabel with networkx.convert_node_labels_to_integers(G) "
            "(keeps node order) first."
        )
    if sorted(int(u) for u in nodes) != list(range(n)):
        missing = sorted(set(range(n)) - {int(u) for u in nodes})
        raise ValueError(
            f"G's nodes must be exactly 0..{n - 1} (contiguous agent ranks); got labels "
            f"{sorted(int(u) for u in nodes)[:8]}{'...' if n > 8 else ''} (missing "
            f"{missing[:8]}). Relabel with networkx.convert_node_labels_to_integers(G, "
            "ordering='sorted')."
        )
    return n


def from_networkx(G, weights: str = "metropolis", *, require: str = "row",
                  name: str | None = None, layout: str = "spring") -> Topology:
    r"""Build a :class:`Topology` from a networkx graph on nodes ``0..n-1``.

    An edge ``u -> v`` (``DiGraph``) or ``{u, v}`` (``Graph``, both directions) lets ``v``
    receive from ``u``. The weights:

    * ``"metropolis"``: :math:`W_{vu} = 1/(1 + \max(d_u, d_v))`, :math:`W_{vv} = 1 -
      \sum_u W_{vu}` (undirected graphs, or a ``DiGraph`` whose edges all come in both
      directions); see :func:`~bluefog.topology.weights.metropolis_weights`.
    * ``"uniform"``: :math:`W_{vu} = 1/(d^{\mathrm{in}}_v + 1)` on self and in-neighbors
      (Bluefog's rule; any graph); see :func:`~bluefog.topology.weights.uniform_weights`.
    * any other string: the name of a numeric edge attribute holding the weights,
      :math:`W_{vu} = G[u][v][\text{attr}]`. The self weight :math:`W_{vv}` is the attribute
      of a self-loop ``v -> v`` if present, else the node attribute ``self_weight`` (as in
      :attr:`Topology.graph`, so ``from_networkx(t.graph, "weight")`` reproduces ``t``), else
      the remainder that makes row ``v`` sum to 1 (``require`` ``"row"``/``"doubly"``) or
      column ``v`` sum to 1 (``"column"``), else 0 (``"none"``).

    Self-loops are ignored by the ``"metropolis"`` and ``"uniform"`` rules.

    Parameters
    ----------
    G : networkx.Graph or networkx.DiGraph
        Nodes must be the integers ``0..n-1`` (any insertion order).
    weights : str
        ``"metropolis"``, ``"uniform"`` or an edge attribute name.
    require : {"row", "column", "doubly", "none"}
        Stochasticity demanded of the resulting ``W``.
    name : str, optional
    layout : {"spring", "circular", "grid", "shell"}
        Layout used by :func:`~bluefog.topology.draw`.

    Returns
    -------
    Topology

    References
    ----------
    Bluefog ``bluefog/common/topology_util.py`` (topologies as weighted ``networkx.DiGraph``);
    A. Hagberg, D. Schult, P. Swart, "Exploring network structure, dynamics, and function
    using NetworkX", SciPy 2008.
    """
    if not isinstance(G, (nx.Graph, nx.DiGraph)):
        raise TypeError(
            f"G must be a networkx.Graph or networkx.DiGraph; got {type(G).__name__}. "
            "For a weight matrix use from_matrix(W)."
        )
    if G.is_multigraph():
        raise TypeError(
            f"G must be a simple graph; got a {type(G).__name__}. Collapse parallel edges "
            "first, e.g. networkx.DiGraph(G) (keeps one edge per pair)."
        )
    if not isinstance(weights, str):
        raise TypeError(
            f"weights must be 'metropolis', 'uniform' or an edge attribute name (str); got "
            f"{weights!r}."
        )
    if require not in STOCHASTICITY:
        raise ValueError(f"require must be one of {STOCHASTICITY}; got {require!r}.")
    n = check_num_agents(_node_index(G), "G.number_of_nodes()")
    directed = G.is_directed()
    A = np.zeros((n, n), dtype=bool)
    for u, v in G.edges():
        if u != v:
            A[int(v), int(u)] = True
            if not directed:
                A[int(u), int(v)] = True
    label = name if name is not None else f"from_networkx(n={n}, weights={weights!r})"
    if weights == "metropolis":
        if not np.array_equal(A, A.T):
            i, j = (int(x) for x in np.argwhere(A & ~A.T)[0])
            raise ValueError(
                f"weights='metropolis' needs an undirected graph; G has the edge {j} -> {i} "
                f"but not {i} -> {j}. Use weights='uniform' for directed graphs, or "
                "G.to_undirected()."
            )
        return Topology(metropolis_weights(A), name=label, require=require, layout=layout)
    if weights == "uniform":
        return Topology(uniform_weights(A), name=label, require=require, layout=layout)

    W = _attribute_weights(G, weights, n, directed, require)
    return Topology(W, name=label, require=require, layout=layout)


def _attribute_weights(G, attr: str, n: int, directed: bool, require: str) -> np.ndarray:
    """``W[v, u] = G[u][v][attr]``; self weights from self-loops, the node attribute
    ``self_weight``, or the remainder that ``require`` asks for (see :func:`from_networkx`)."""
    W = np.zeros((n, n))
    has_self = np.zeros(n, dtype=bool)
    for u, v, data in G.edges(data=True):
        if attr not in data:
            raise ValueError(
                f"weights={attr!r} names an edge attribute, but edge ({u}, {v}) has none "
                f"(its attributes: {sorted(data)}). Set it on every edge, e.g. "
                f"networkx.set_edge_attributes(G, 0.5, {attr!r}), or use weights='metropolis' "
                "or 'uniform'."
            )
        value = data[attr]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(
                f"edge attribute {attr!r} must be a real number; got {value!r} on edge ({u}, {v})."
            )
        u, v = int(u), int(v)
        if u == v:
            W[v, v] = float(value)
            has_self[v] = True
            continue
        W[v, u] = float(value)
        if not directed:
            W[u, v] = float(value)
    for v in range(n):
        if has_self[v]:
            continue
        node_self = G.nodes[v].get("self_weight")
        if node_self is not None:
            W[v, v] = float(node_self)
        elif require in ("row", "doubly"):
            W[v, v] = 1.0 - W[v].sum()
        elif require == "column":
            W[v, v] = 1.0 - W[:, v].sum()
    neg = np.flatnonzero(np.diag(W) < -1e-12)
    if neg.size:
        v = int(neg[0])
        raise ValueError(
            f"edge attribute {attr!r}: agent {v}'s incoming weights sum to more than 1, so "
            f"its self weight would be {W[v, v]:.6g} < 0. Scale the weights so that each "
            "agent's incoming weights sum to at most 1, or add a self-loop with its weight."
        )
    W[np.diag_indices(n)] = np.maximum(np.diag(W), 0.0)
    return W


def from_matrix(W, require: str = "row", *, name: str = "from_matrix",
                layout: str = "circular") -> Topology:
    r"""A :class:`Topology` from an explicit mixing matrix, :math:`x^+ = W x`.

    ``W[i, j]`` is the weight agent ``i`` puts on agent ``j``'s value. Validated by
    :func:`~bluefog.topology.validate_weights` (square, finite, non-negative, the
    stochasticity named by ``require``, strongly connected).

    Parameters
    ----------
    W : array_like, shape (n, n)
    require : {"row", "column", "doubly", "none"}
    name : str
    layout : {"circular", "grid", "spring", "shell"}
        Layout used by :func:`~bluefog.topology.draw`.

    Returns
    -------
    Topology

    References
    ----------
    L. Xiao and S. Boyd, "Fast linear iterations for distributed averaging", Systems &
    Control Letters 53 (2004).
    """
    return Topology(W, name=name, require=require, layout=layout)
