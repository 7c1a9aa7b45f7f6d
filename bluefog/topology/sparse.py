r"""The sparse (edge list) form of a mixing matrix: the primary form of a :class:`Topology`.

A mixing matrix :math:`W` is stored by its non-zero entries, in canonical order (row-major,
columns increasing within a row, no explicit zeros):

.. math:: W = \sum_{e} v_e\, \mathbf e_{r_e} \mathbf e_{c_e}^\top ,

so memory is :math:`O(n + |E|)` instead of the :math:`8 n^2` bytes of the dense matrix
(2 GiB at 16,384 agents, 32 GiB at 65,536). The canonical order makes the form unique:
equal matrices have byte-identical edge lists, whether they were given dense or sparse,
which is what the topology's fingerprint hashes.

Validation here is the sparse twin of :func:`bluefog.topology.validate_weights`
(finite, non-negative, row/column sums to ``1e-10``, strong connectivity with
``scipy.sparse.csgraph``), with the same messages.

Reference: the storage is the coordinate (COO) format of sparse linear algebra
(Y. Saad, *Iterative Methods for Sparse Linear Systems*, 2nd ed., SIAM 2003, Sec. 3.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SparseWeights", "MAX_SPARSE_AGENTS", "circulant_weights"]

#: Largest number of agents of a topology stored by its edges (int32 agent indices in the
#: compiled programs).
MAX_SPARSE_AGENTS = 2**20

_ATOL = 1e-10


@dataclass(frozen=True, eq=False)
class SparseWeights:
    """A mixing matrix by its non-zero entries, canonical row-major order (read-only arrays).

    Attributes
    ----------
    size : int
    rows, cols : numpy.ndarray of int64, shape (E,)
    values : numpy.ndarray of float64, shape (E,)
    """

    size: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    @classmethod
    def from_dense(cls, W: np.ndarray) -> "SparseWeights":
        """The canonical edge list of a dense ``(n, n)`` float64 matrix."""
        rows, cols = np.nonzero(W)
        return cls._frozen(W.shape[0], rows, cols, W[rows, cols])

    @classmethod
    def from_entries(cls, n: int, rows, cols, values) -> "SparseWeights":
        """Canonical form of ``W[rows[e], cols[e]] = values[e]`` (duplicates are summed)."""
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        values = np.asarray(values, np.float64)
        key = rows * n + cols
        uniq, inverse = np.unique(key, return_inverse=True)
        summed = np.bincount(inverse, weights=values, minlength=uniq.size)
        keep = summed != 0
        return cls._frozen(n, uniq[keep] // n, uniq[keep] % n, summed[keep])

    @classmethod
    def _frozen(cls, n, rows, cols, values) -> "SparseWeights":
        arrays = [np.ascontiguousarray(a, dt) for a, dt in
                  ((rows, np.int64), (cols, np.int64), (values, np.float64))]
        for a in arrays:
            a.setflags(write=False)
        return cls(int(n), *arrays)

    @property
    def num_edges(self) -> int:
        """Non-zero entries, diagonal included."""
        return int(self.values.size)

    def dense(self) -> np.ndarray:
        """The dense ``(n, n)`` float64 matrix (``8 n^2`` bytes)."""
        W = np.zeros((self.size, self.size))
        W[self.rows, self.cols] = self.values
        return W

    def row_sums(self) -> np.ndarray:
        r""":math:`W \mathbf 1`, i.e. :math:`\sum_j W_{ij}` for every row ``i``."""
        return np.bincount(self.rows, weights=self.values, minlength=self.size)

    def col_sums(self) -> np.ndarray:
        r""":math:`\mathbf 1^\top W`, i.e. :math:`\sum_i W_{ij}` for every column ``j``."""
        return np.bincount(self.cols, weights=self.values, minlength=self.size)

    def diagonal(self) -> np.ndarray:
        """The self weights :math:`W_{ii}` (0 where absent)."""
        d = np.zeros(self.size)
        on = self.rows == self.cols
        d[self.rows[on]] = self.values[on]
        return d

    def off_diagonal(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, values)`` of the entries with ``row != col`` (canonical order)."""
        off = self.rows != self.cols
        return self.rows[off], self.cols[off], self.values[off]

    def csr(self):
        """``scipy.sparse.csr_matrix`` of the matrix (a new object)."""
        from scipy import sparse

        return sparse.csr_matrix((self.values, (self.rows, self.cols)),
                                 shape=(self.size, self.size))

    def transpose_equal(self, atol: float) -> bool:
        """Whether :math:`W = W^\\top` to ``atol``."""
        diff = abs(self.csr() - self.csr().T)
        return bool(diff.nnz == 0 or diff.max() <= atol)

    def validate(self, require: str, name: str, check_connected: bool) -> None:
        """The checks of :func:`bluefog.topology.validate_weights` on the edge list."""
        if not np.all(np.isfinite(self.values)):
            e = int(np.flatnonzero(~np.isfinite(self.values))[0])
            raise ValueError(f"{name} must be finite; got {self.values[e]} at index "
                             f"({self.rows[e]}, {self.cols[e]}). Replace NaN/inf entries.")
        if np.any(self.values < 0):
            e = int(np.flatnonzero(self.values < 0)[0])
            raise ValueError(f"{name} must be non-negative; got {self.values[e]:.6g} at index "
                             f"({self.rows[e]}, {self.cols[e]}). Mixing weights are "
                             "convex-combination coefficients.")
        for kind, sums in (("row", self.row_sums), ("column", self.col_sums)):
            if require in (kind, "doubly"):
                s = sums()
                bad = np.flatnonzero(np.abs(s - 1.0) > _ATOL)
                if bad.size:
                    raise ValueError(f"{name} must be {kind}-stochastic (each {kind} sums to 1); "
                                     f"{kind} {int(bad[0])} sums to {s[bad[0]]:.12g}. Normalise "
                                     f"the {kind}s.")
        if check_connected and self.size > 1:
            from scipy.sparse.csgraph import connected_components

            count, _ = connected_components(self.csr(), directed=True, connection="strong")
            if count > 1:
                raise ValueError(f"{name} must give a strongly connected graph (an edge j -> i "
                                 f"where W[i, j] > 0); got {count} strongly connected components. "
                                 "Add edges, or pass check_connected=False for one pattern of a "
                                 "time-varying topology.")


def circulant_weights(n: int, receive_offsets, weight: float) -> SparseWeights:
    r"""The uniform circulant matrix :math:`W_{ii} = W_{i, (i+k) \bmod n} = w` for every
    offset ``k`` of ``receive_offsets`` (``0 mod n`` dropped), built edge by edge."""
    ks = sorted(set(int(k) % n for k in receive_offsets) - {0})
    idx = np.arange(n, dtype=np.int64)
    rows = np.repeat(idx, len(ks) + 1)
    cols = ((idx[:, None] + np.asarray([0] + ks, np.int64)[None, :]) % n).ravel()
    order = np.lexsort((cols, rows))
    return SparseWeights._frozen(n, rows[order], cols[order], np.full(rows.size, float(weight)))
