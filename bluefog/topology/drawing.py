r"""Drawing topologies with matplotlib (Agg-safe: no pyplot, no global figure state).

Each node is an agent; an edge ``j -> i`` is drawn where ``W[i, j] > 0`` with a line width
proportional to ``W[i, j]``. Graphs whose sparsity pattern is symmetric are drawn with plain
lines (width: the mean of the two directions), others with arrows. The layout follows the
family (``Topology.layout``): a circle for circulant families, grid positions for meshes,
a spring layout for random graphs, and shells (hub in the middle) for stars.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from ._topology import Topology
from .dynamic import DynamicTopology
from .validation import check_positive_int

__all__ = ["draw", "draw_topology", "draw_dynamic_topology", "topology_positions"]


def draw(topology, ax=None, **kwargs):
    r"""Draw a static or time-varying topology; returns the matplotlib ``Figure``.

    A :class:`~bluefog.topology.Topology` is drawn by :func:`draw_topology` (edge
    :math:`j \to i` with width proportional to :math:`W_{ij}`); a
    :class:`~bluefog.topology.DynamicTopology` by :func:`draw_dynamic_topology` (one panel per
    pattern of a period). Functions, not methods, as in ``networkx.draw(G)``: the graph
    classes do not depend on matplotlib.

    Parameters
    ----------
    topology : Topology or DynamicTopology
    ax : matplotlib.axes.Axes, optional
        Static topologies only: draw into this axes.
    **kwargs
        Passed to :func:`draw_topology` or :func:`draw_dynamic_topology`.

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    A. Hagberg, D. Schult, P. Swart, "Exploring network structure, dynamics, and function
    using NetworkX", SciPy 2008 (``networkx.draw``).

    Examples
    --------
    >>> from bluefog.topology import draw, exponential_graph, one_peer_exponential_graph
    >>> draw(exponential_graph(16)).savefig("exp16.png")            # doctest: +SKIP
    >>> draw(one_peer_exponential_graph(8)).savefig("one_peer8.png")  # doctest: +SKIP
    """
    if isinstance(topology, DynamicTopology):
        if ax is not None:
            raise ValueError(
                "ax is only accepted for a static Topology; a DynamicTopology is drawn as one "
                "panel per pattern in a new Figure. Drop ax, or draw one pattern: "
                "draw(dynamic.at(t), ax=ax)."
            )
        return draw_dynamic_topology(topology, **kwargs)
    if isinstance(topology, Topology):
        return draw_topology(topology, ax=ax, **kwargs)
    raise TypeError(
        f"topology must be a bluefog.topology.Topology or DynamicTopology; got "
        f"{type(topology).__name__}. Build one first, e.g. draw(exponential_graph(8))."
    )


def topology_positions(topology, seed: int = 0) -> dict:
    r"""Node positions ``{agent: (x, y)}`` for ``topology.layout``.

    ``"circular"``: agent ``i`` at angle :math:`2\pi i / n` on the unit circle;
    ``"grid"``: agent ``r * cols + c`` at :math:`(c, -r)`; ``"spring"``: Fruchterman-Reingold
    force-directed layout with ``seed`` (T. Fruchterman, E. Reingold, "Graph drawing by
    force-directed placement", Software: Practice and Experience 21(11), 1991);
    ``"shell"``: the highest-degree agents (a star's hub) in the centre, the others on a
    circle around them.
    """
    n = topology.size
    nodes = list(range(n))
    layout = topology.layout
    if n == 1:
        return {0: np.zeros(2)}
    if layout == "grid" and getattr(topology, "grid_shape", None):
        rows, cols = topology.grid_shape
        return {i: np.array([i % cols, -(i // cols)], dtype=float) for i in nodes}
    if layout == "spring":
        G = nx.Graph()
        G.add_nodes_from(nodes)
        G.add_edges_from(topology.graph.edges())
        return nx.spring_layout(G, seed=seed)
    if layout == "shell":
        off = (topology.weights > 0) & ~np.eye(n, dtype=bool)
        degree = (off | off.T).sum(axis=1)
        hubs = [i for i in nodes if degree[i] == degree.max()]
        rest = [i for i in nodes if degree[i] != degree.max()]
        if rest and len(hubs) < n:
            shells = [hubs, rest]
            G = nx.empty_graph(nodes)
            pos = nx.shell_layout(G, nlist=shells)
            if len(hubs) == 1:
                pos[hubs[0]] = np.zeros(2)
            return pos
    G = nx.empty_graph(nodes)
    return nx.circular_layout(G)


def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot(1, 1, 1)


def draw_topology(topology, ax=None, *, with_labels: bool = True, node_size: float | None = None,
                  max_edge_width: float = 4.0, node_color: str = "#4C72B0",
                  edge_color: str = "#555555", title: str | None = None, seed: int = 0,
                  figsize=(5.0, 5.0)):
    r"""Draw a :class:`~bluefog.topology.Topology`; returns the matplotlib ``Figure``.

    Edge :math:`j \to i` gets width ``max_edge_width * W[i, j] / max_{k != l} W[k, l]``.

    Parameters
    ----------
    topology : Topology
    ax : matplotlib.axes.Axes, optional
        Draw into this axes (its figure is returned); default: a new ``Figure`` (created
        without pyplot, so it works with any backend, including Agg on headless machines).
    with_labels : bool
        Print agent indices on the nodes.
    node_size : float, optional
        Default: shrinks with ``n``.
    max_edge_width : float
    node_color, edge_color : str
    title : str, optional
        Default: ``topology.name`` and :math:`\rho`.
    seed : int
        Seed of the spring layout (random families).
    figsize : tuple
        Size of a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    A. Hagberg, D. Schult, P. Swart, "Exploring network structure, dynamics, and function
    using NetworkX", SciPy 2008 (``draw_networkx_*``).
    """
    if not isinstance(topology, Topology):
        raise TypeError(
            f"topology must be a bluefog.topology.Topology; got {type(topology).__name__}. "
            "For a DynamicTopology use draw(dynamic) or draw_dynamic_topology (one panel per "
            "pattern)."
        )
    if not (isinstance(max_edge_width, (int, float)) and max_edge_width > 0):
        raise ValueError(f"max_edge_width must be a positive number; got {max_edge_width!r}.")
    fig, ax = _new_axes(ax, figsize)
    n = topology.size
    W = topology.weights
    pos = topology_positions(topology, seed=seed)
    if node_size is None:
        node_size = float(np.clip(6000.0 / max(n, 1), 40.0, 600.0))
    off = (W > 0) & ~np.eye(n, dtype=bool)
    symmetric = bool(np.array_equal(off, off.T))
    wmax = float(W[off].max()) if off.any() else 1.0
    if symmetric:
        G = nx.Graph()
        G.add_nodes_from(range(n))
        pairs = [(int(j), int(i)) for i, j in zip(*np.nonzero(np.triu(off)))]
        widths = [max_edge_width * 0.5 * (W[i, j] + W[j, i]) / wmax for j, i in pairs]
        G.add_edges_from(pairs)
        nx.draw_networkx_edges(G, pos, edgelist=pairs, width=widths, edge_color=edge_color,
                               ax=ax)
    else:
        G = nx.DiGraph()
        G.add_nodes_from(range(n))
        edges = [(int(j), int(i)) for i, j in zip(*np.nonzero(off))]  # j sends to i
        widths = [max_edge_width * W[i, j] / wmax for j, i in edges]
        G.add_edges_from(edges)
        nx.draw_networkx_edges(G, pos, edgelist=edges, width=widths, edge_color=edge_color,
                               arrows=True, arrowstyle="-|>", arrowsize=10,
                               node_size=node_size, connectionstyle="arc3,rad=0.08", ax=ax)
    nx.draw_networkx_nodes(G, pos, node_size=node_size, node_color=node_color, ax=ax)
    if with_labels:
        nx.draw_networkx_labels(G, pos, font_size=max(5, min(10, int(200 / max(n, 1)) + 5)),
                                font_color="white", ax=ax)
    ax.set_title(title if title is not None else f"{topology.name}\nrho={topology.rho:.3f}",
                 fontsize=9)
    ax.set_axis_off()
    ax.set_aspect("equal")
    return fig


def draw_dynamic_topology(dynamic, *, max_patterns: int = 8, panel_size: float = 3.0, **kwargs):
    """Draw the patterns of one period of a
    :class:`~bluefog.topology.DynamicTopology` side by side; returns the ``Figure``.

    A periodic topology shows patterns ``0..period-1`` (the pattern used at step ``t`` is
    panel ``t mod period``); a non-periodic one shows the first ``max_patterns`` of its pool.
    Keyword arguments are passed to :func:`draw_topology`.

    Returns
    -------
    matplotlib.figure.Figure
        ``min(len(patterns), max_patterns)`` panels, at most 4 per row.

    References
    ----------
    B. Ying et al., "Exponential graph is provably efficient for decentralized deep
    training", NeurIPS 2021, Fig. 2 (one-peer exponential graph drawn per step).
    """
    from matplotlib.figure import Figure

    if not isinstance(dynamic, DynamicTopology):
        raise TypeError(f"dynamic must be a DynamicTopology; got {type(dynamic).__name__}.")
    max_patterns = check_positive_int(max_patterns, "max_patterns")
    patterns = dynamic.patterns[:max_patterns]
    k = len(patterns)
    cols = min(k, 4)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(panel_size * cols, panel_size * rows + 0.4))
    for idx, pattern in enumerate(patterns):
        ax = fig.add_subplot(rows, cols, idx + 1)
        label = (f"t mod {dynamic.period} = {idx}" if dynamic.period is not None
                 else f"pool[{idx}]")
        draw_topology(pattern, ax=ax, title=f"{label}\n{pattern.name}", **kwargs)
    shown = "" if len(dynamic.patterns) == k else f" (first {k} of {len(dynamic.patterns)})"
    fig.suptitle(f"{dynamic.name}{shown}, rho per step={dynamic.rho:.3f}", fontsize=10)
    return fig
