"""The :class:`Topology` object: a validated mixing matrix and what follows from it."""

from __future__ import annotations

import hashlib
from functools import cached_property

import networkx as nx
import numpy as np

from .schedule import Schedule, compile_schedule
from .validation import validate_weights

__all__ = ["Topology"]


class Topology:
    r"""A static communication topology given by its mixing matrix.

    Convention: :math:`x^{+} = W x`, so ``W[i, j]`` is the weight agent ``i`` puts on agent
    ``j``'s value; an edge ``j -> i`` exists where ``W[i, j] > 0`` and ``i != j``.

    Parameters
    ----------
    weights : array_like, shape (n, n)
        The mixing matrix; validated by :func:`bluefog.topology.validate_weights`.
    name : str
        Family name, e.g. ``"exponential(n=64, base=2)"``; shown in ``repr`` and plots.
    require : {"row", "column", "doubly", "none"}
        Stochasticity demanded of ``weights`` (``"row"`` for consensus-style mixing,
        ``"column"`` for push-sum).
    layout : {"circular", "grid", "spring", "shell"}
        Node layout used by :func:`bluefog.topology.draw`.
    grid_shape : tuple of int, optional
        ``(rows, cols)`` for ``layout="grid"``.
    check_connected : bool
        Demand a strongly connected graph (default). Time-varying families switch it off for
        their single patterns, which are connected only over time.

    Notes
    -----
    The schedule (rounds of full permutations, see :mod:`bluefog.topology.schedule`) is
    compiled lazily once and cached. Topologies are immutable and hashable by value.
    """

    def __init__(self, weights, *, name: str = "custom", require: str = "row",
                 layout: str = "circular", grid_shape: tuple[int, int] | None = None,
                 check_connected: bool = True):
        if layout not in ("circular", "grid", "spring", "shell"):
            raise ValueError(
                f"layout must be one of 'circular', 'grid', 'spring', 'shell'; got {layout!r}."
            )
        self._W = validate_weights(weights, require=require, name="weights",
                                   check_connected=check_connected)
        self._name = str(name)
        self._layout = layout
        self._grid_shape = grid_shape

    # -- basic properties ---------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of agents ``n``."""
        return int(self._W.shape[0])

    @property
    def weights(self) -> np.ndarray:
        """The read-only ``(n, n)`` float64 mixing matrix ``W``."""
        return self._W

    @property
    def name(self) -> str:
        return self._name

    @property
    def layout(self) -> str:
        """Node layout used by :func:`bluefog.topology.draw`."""
        return self._layout

    @property
    def grid_shape(self) -> tuple[int, int] | None:
        """``(rows, cols)`` for grid-like families (``layout == "grid"``), else ``None``."""
        return self._grid_shape

    @cached_property
    def graph(self) -> nx.DiGraph:
        """``networkx.DiGraph`` with an edge ``j -> i`` (attribute ``weight=W[i, j]``) per
        non-zero off-diagonal entry, and node attribute ``self_weight=W[i, i]``."""
        G = nx.DiGraph(name=self._name)
        for i in range(self.size):
            G.add_node(i, self_weight=float(self._W[i, i]))
        rows, cols = np.nonzero(self._W)
        for i, j in zip(rows.tolist(), cols.tolist()):
            if i != j:
                G.add_edge(j, i, weight=float(self._W[i, j]))
        return G

    def _check_agent(self, agent) -> int:
        if isinstance(agent, bool) or not isinstance(agent, (int, np.integer)):
            raise TypeError(f"agent must be an int in [0, {self.size}); got {agent!r}.")
        if not 0 <= agent < self.size:
            raise ValueError(f"agent must be in [0, {self.size}); got {agent}.")
        return int(agent)

    def in_neighbors(self, agent: int) -> list[int]:
        """Agents ``j != agent`` with ``W[agent, j] > 0`` (whom ``agent`` receives from)."""
        i = self._check_agent(agent)
        return [int(j) for j in np.flatnonzero(self._W[i]) if j != i]

    def out_neighbors(self, agent: int) -> list[int]:
        """Agents ``i != agent`` with ``W[i, agent] > 0`` (whom ``agent`` sends to)."""
        j = self._check_agent(agent)
        return [int(i) for i in np.flatnonzero(self._W[:, j]) if i != j]

    @property
    def max_degree(self) -> int:
        """``max(max in-degree, max out-degree)``: the bipartite edge-colouring bound."""
        off = (self._W != 0) & ~np.eye(self.size, dtype=bool)
        if not off.any():
            return 0
        return int(max(off.sum(axis=1).max(), off.sum(axis=0).max()))

    # -- stochasticity and spectra ------------------------------------------------------
    @property
    def is_row_stochastic(self) -> bool:
        """Whether :math:`W \\mathbf 1 = \\mathbf 1` (to 1e-10)."""
        return bool(np.allclose(self._W.sum(axis=1), 1.0, rtol=0, atol=1e-10))

    @property
    def is_column_stochastic(self) -> bool:
        """Whether :math:`\\mathbf 1^\\top W = \\mathbf 1^\\top` (to 1e-10)."""
        return bool(np.allclose(self._W.sum(axis=0), 1.0, rtol=0, atol=1e-10))

    @property
    def is_doubly_stochastic(self) -> bool:
        return self.is_row_stochastic and self.is_column_stochastic

    @property
    def is_symmetric(self) -> bool:
        return bool(np.allclose(self._W, self._W.T, rtol=0, atol=1e-12))

    @cached_property
    def rho(self) -> float:
        r"""Per-round consensus contraction :math:`\rho = \|W - \tfrac1n \mathbf 1\mathbf 1^\top\|_2`.

        For a doubly stochastic ``W`` this is its second largest singular value, and
        :math:`\|W x - \bar x \mathbf 1\| \le \rho \|x - \bar x \mathbf 1\|`.
        Reference: Xiao & Boyd (2004); Nedic, Olshevsky & Rabbat, Proc. IEEE 106(5) (2018).
        """
        n = self.size
        if n == 1:
            return 0.0
        return float(np.linalg.norm(self._W - np.full((n, n), 1.0 / n), ord=2))

    @property
    def spectral_gap(self) -> float:
        r"""``1 - rho``: larger means faster mixing."""
        return 1.0 - self.rho

    # -- schedule -----------------------------------------------------------------------
    @cached_property
    def schedule(self) -> Schedule:
        """The compiled :class:`~bluefog.topology.schedule.Schedule` (cached)."""
        return compile_schedule(self._W)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the size and the exact float64 bytes of ``W``.

        Used by the MPI backend to check at start-up that every rank holds the same topology.
        """
        h = hashlib.sha256()
        h.update(str(self.size).encode())
        h.update(np.ascontiguousarray(self._W).tobytes())
        return h.hexdigest()

    # -- protocol helpers ---------------------------------------------------------------
    @property
    def period(self) -> int:
        """A static topology is a dynamic one of period 1."""
        return 1

    @property
    def patterns(self) -> tuple["Topology", ...]:
        return (self,)

    def at(self, t) -> "Topology":
        """The topology used at step ``t``: always ``self`` for a static topology."""
        return self

    def index(self, t) -> int:
        return 0

    def __repr__(self) -> str:
        return f"Topology({self._name}, size={self.size}, rho={self.rho:.4f})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Topology) and self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)
