"""The :class:`Topology` object: a validated mixing matrix and what follows from it."""

from __future__ import annotations

import hashlib
from functools import cached_property

import networkx as nx
import numpy as np

from .schedule import Schedule, compile_schedule
from .sparse import MAX_SPARSE_AGENTS, SparseWeights
from .validation import MAX_DENSE_AGENTS, STOCHASTICITY, validate_weights

__all__ = ["Topology"]


class Topology:
    r"""A static communication topology given by its mixing matrix.

    Convention: :math:`x^{+} = W x`, so ``W[i, j]`` is the weight agent ``i`` puts on agent
    ``j``'s value; an edge ``j -> i`` exists where ``W[i, j] > 0`` and ``i != j``.

    Parameters
    ----------
    weights : array_like of shape (n, n), or SparseWeights
        The mixing matrix; validated by :func:`bluefog.topology.validate_weights` (dense,
        ``n <= MAX_DENSE_AGENTS``) or by its edge list
        (:class:`bluefog.topology.sparse.SparseWeights`, ``n <= MAX_SPARSE_AGENTS``).
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
    The primary form is the edge list (:attr:`sparse_weights`, ``O(n + edges)`` memory);
    the schedule (rounds of full permutations, see :mod:`bluefog.topology.schedule`), the
    fingerprint and the degree and stochasticity checks are computed from it. The dense
    matrix :attr:`weights` is built on first request (or kept if it was given), so a topology
    of 65,536 agents costs megabytes, not the 32 GiB of its dense matrix. Topologies are
    immutable and hashable by value.
    """

    def __init__(self, weights, *, name: str = "custom", require: str = "row",
                 layout: str = "circular", grid_shape: tuple[int, int] | None = None,
                 check_connected: bool = True):
        if layout not in ("circular", "grid", "spring", "shell"):
            raise ValueError(
                f"layout must be one of 'circular', 'grid', 'spring', 'shell'; got {layout!r}."
            )
        if isinstance(weights, SparseWeights):
            if require not in STOCHASTICITY:
                raise ValueError(f"require must be one of {STOCHASTICITY}; got {require!r}.")
            if weights.size > MAX_SPARSE_AGENTS:
                raise ValueError(f"weights.size must be at most MAX_SPARSE_AGENTS = "
                                 f"{MAX_SPARSE_AGENTS}; got {weights.size}. Use fewer agents.")
            weights.validate(require, "weights", check_connected)
            self._W, self._sparse = None, weights
        else:
            self._W = validate_weights(weights, require=require, name="weights",
                                       check_connected=check_connected)
            self._sparse = SparseWeights.from_dense(self._W)
        self._name = str(name)
        self._layout = layout
        self._grid_shape = grid_shape

    # -- basic properties ---------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of agents ``n``."""
        return self._sparse.size

    @property
    def sparse_weights(self) -> SparseWeights:
        """The mixing matrix by its non-zero entries (the primary form, canonical order)."""
        return self._sparse

    @property
    def weights(self) -> np.ndarray:
        """The read-only ``(n, n)`` float64 mixing matrix ``W``, built on first request.

        Raises
        ------
        ValueError
            If ``n > MAX_DENSE_AGENTS`` (the matrix would need :math:`8 n^2` bytes).
        """
        if self._W is None:
            n = self.size
            if n > MAX_DENSE_AGENTS:
                raise ValueError(
                    f"topology.weights: the dense n x n matrix of this {n}-agent topology would "
                    f"need {8 * n * n / 2**30:.3g} GiB; it is built only for n <= "
                    f"MAX_DENSE_AGENTS = {MAX_DENSE_AGENTS}. Use topology.sparse_weights (the "
                    "edge list) or topology.schedule, which every backend runs from.")
            W = self._sparse.dense()
            W.setflags(write=False)
            self._W = W
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
        diag = self._sparse.diagonal()
        for i in range(self.size):
            G.add_node(i, self_weight=float(diag[i]))
        rows, cols, vals = self._sparse.off_diagonal()
        for i, j, w in zip(rows.tolist(), cols.tolist(), vals.tolist()):
            G.add_edge(j, i, weight=w)
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
        rows, cols, _ = self._sparse.off_diagonal()
        return [int(j) for j in cols[rows == i]]

    def out_neighbors(self, agent: int) -> list[int]:
        """Agents ``i != agent`` with ``W[i, agent] > 0`` (whom ``agent`` sends to)."""
        j = self._check_agent(agent)
        rows, cols, _ = self._sparse.off_diagonal()
        return sorted(int(i) for i in rows[cols == j])

    @property
    def max_degree(self) -> int:
        """``max(max in-degree, max out-degree)``: the bipartite edge-colouring bound."""
        rows, cols, _ = self._sparse.off_diagonal()
        if rows.size == 0:
            return 0
        n = self.size
        return int(max(np.bincount(rows, minlength=n).max(), np.bincount(cols, minlength=n).max()))

    # -- stochasticity and spectra ------------------------------------------------------
    @property
    def is_row_stochastic(self) -> bool:
        """Whether :math:`W \\mathbf 1 = \\mathbf 1` (to 1e-10)."""
        return bool(np.allclose(self._sparse.row_sums(), 1.0, rtol=0, atol=1e-10))

    @property
    def is_column_stochastic(self) -> bool:
        """Whether :math:`\\mathbf 1^\\top W = \\mathbf 1^\\top` (to 1e-10)."""
        return bool(np.allclose(self._sparse.col_sums(), 1.0, rtol=0, atol=1e-10))

    @property
    def is_doubly_stochastic(self) -> bool:
        return self.is_row_stochastic and self.is_column_stochastic

    @property
    def is_symmetric(self) -> bool:
        return self._sparse.transpose_equal(atol=1e-12)

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
        if n <= MAX_DENSE_AGENTS:
            return float(np.linalg.norm(self.weights - np.full((n, n), 1.0 / n), ord=2))
        return _sparse_rho(self._sparse)

    @property
    def spectral_gap(self) -> float:
        r"""``1 - rho``: larger means faster mixing."""
        return 1.0 - self.rho

    # -- schedule -----------------------------------------------------------------------
    @cached_property
    def schedule(self) -> Schedule:
        """The compiled :class:`~bluefog.topology.schedule.Schedule` (cached)."""
        return compile_schedule(self._sparse)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the size and the canonical edge list of ``W`` (rows, columns as int64,
        values as float64 bytes): equal for equal ``W``, whether it was given dense or sparse.

        Used by the MPI backend to check at start-up that every rank holds the same topology,
        and by the engine's program cache.
        """
        h = hashlib.sha256()
        h.update(str(self.size).encode())
        for a in (self._sparse.rows, self._sparse.cols, self._sparse.values):
            h.update(a.tobytes())
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


def _sparse_rho(sw: SparseWeights) -> float:
    r""":math:`\|W - J\|_2` without the dense matrix: the largest singular value of the
    operator :math:`x \mapsto Wx - \bar x \mathbf 1` (ARPACK through ``scipy``'s ``svds``)."""
    from scipy.sparse.linalg import LinearOperator, svds

    A, n = sw.csr(), sw.size
    op = LinearOperator((n, n), dtype=np.float64,
                        matvec=lambda x: A @ np.ravel(x) - np.mean(x),
                        rmatvec=lambda y: A.T @ np.ravel(y) - np.mean(y))
    return float(svds(op, k=1, return_singular_vectors=False, random_state=0)[0])
