"""Shared helpers of the algorithm library: pytree arithmetic and topology requirements.

Everything here is a thin ``jax.tree_util`` map (arithmetic) or runs in plain NumPy on the
mixing matrices (requirements); no algorithm logic lives here. Hyper-parameters are validated
by :mod:`bluefog.validation`, once, in each public factory.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.topology import DynamicTopology, Topology

PyTree = Any

# ---- pytree arithmetic -------------------------------------------------------------------


def tree_add(a: PyTree, b: PyTree) -> PyTree:
    """``a + b`` leaf by leaf."""
    return jax.tree_util.tree_map(jnp.add, a, b)


def tree_sub(a: PyTree, b: PyTree) -> PyTree:
    """``a - b`` leaf by leaf."""
    return jax.tree_util.tree_map(jnp.subtract, a, b)


def tree_axpy(alpha, x: PyTree, y: PyTree) -> PyTree:
    """``alpha * x + y`` leaf by leaf (``alpha`` a Python or JAX scalar, cast to each leaf's
    dtype so float32 stays float32)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(alpha, a.dtype) * a + b, x, y)


def tree_where(pred, a: PyTree, b: PyTree) -> PyTree:
    """``a`` where ``pred`` (a scalar bool), else ``b``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)


def as_float_tree(x: PyTree) -> PyTree:
    """``x`` with every leaf a JAX array (integer leaves are refused by the communicator, so
    they are refused here first with a clear message)."""
    leaves = jax.tree_util.tree_leaves(x)
    for leaf in leaves:
        if not jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact):
            raise TypeError(
                "params must be floating-point arrays (decentralized methods mix them by convex "
                f"combinations); got a leaf of dtype {jnp.asarray(leaf).dtype}. Cast with "
                "x.astype(jnp.float32)."
            )
    return jax.tree_util.tree_map(jnp.asarray, x)


def zero_count():
    """The initial step counter (int32 scalar)."""
    return jnp.zeros((), jnp.int32)


# ---- topology requirements ---------------------------------------------------------------


def _patterns(topology, algorithm: str):
    if not isinstance(topology, (Topology, DynamicTopology)):
        raise TypeError(
            f"{algorithm}: the topology must be a bluefog.topology.Topology or DynamicTopology; "
            f"got {type(topology).__name__}."
        )
    return topology.patterns


def require_static(topology, algorithm: str, alternative: str) -> None:
    """Refuse a time-varying topology for a method whose theory needs a fixed ``W``."""
    if len(_patterns(topology, algorithm)) > 1:
        raise ValueError(
            f"{algorithm} needs a static topology: its correction term telescopes only for a "
            f"fixed mixing matrix W, and it is known to fail on time-varying graphs; got the "
            f"time-varying {topology.name!r}. Use a static Topology, or {alternative} which "
            "supports time-varying topologies."
        )


def require_weights(topology, algorithm: str, *, row: bool = False, column: bool = False,
                    symmetric: bool = False, also: str = "") -> None:
    """Check stochasticity / symmetry of every pattern of ``topology`` (plain NumPy); the
    ``ValueError`` names the pattern, what it has, what is needed and the fix (``also`` is
    appended to the fix)."""
    for p in _patterns(topology, algorithm):
        what = []
        if row and not p.is_row_stochastic:
            s = p.sparse_weights.row_sums()
            what.append(f"row sums in [{s.min():.6g}, {s.max():.6g}] (need W 1 = 1)")
        if column and not p.is_column_stochastic:
            s = p.sparse_weights.col_sums()
            what.append(f"column sums in [{s.min():.6g}, {s.max():.6g}] (need 1^T W = 1^T)")
        if symmetric and not p.is_symmetric:
            W = p.weights  # the dense matrix only to report the asymmetry
            what.append(f"asymmetry max|W - W^T| = {np.abs(W - W.T).max():.3g} (need W = W^T)")
        if what:
            kind = "doubly" if (row and column) else ("row" if row else "column")
            need = ("symmetric " if symmetric else "") + kind
            fix = {
                (True, False): "Build it with Topology(W, require='row').",
                (False, True): "Use column-stochastic weights, e.g. W[i, j] = 1 / (out_degree(j) + 1) "
                               "for each edge j -> i and on the diagonal, and Topology(W, require='column').",
                (True, True): "Use a symmetric doubly stochastic topology, e.g. "
                              "bluefog.topology.symmetric_exponential_graph(n), ring_graph(n), or "
                              "Metropolis-Hastings weights from_networkx(G, weights='metropolis'); "
                              "on directed graphs use gradient_tracking or push_diging.",
            }[(row, column)]
            if row and column and not symmetric:
                fix = ("Use a doubly stochastic topology (e.g. bluefog.topology.exponential_graph(n) "
                       "or one_peer_exponential_graph(n)), or push_diging, which needs only "
                       "column-stochastic weights.")
            raise ValueError(
                f"{algorithm} needs {need}-stochastic mixing weights; pattern {p.name!r} has "
                f"{'; '.join(what)}. {fix}{also}"
            )


#: Largest ``n`` for which the warning of :func:`require_symmetric_or_opt_in` computes the
#: eigenvalues of ``W`` (an ``O(n^3)`` dense eigen-decomposition).
MAX_EIG_N = 2048


def small_step_radius(W: np.ndarray, gamma: float = 0.5) -> float:
    r"""Spectral radius of the step-size-zero limit of exact diffusion / EXTRA / NIDS.

    With :math:`\tilde W = I - \gamma (I - W)` (:math:`\gamma = 1/2`: :math:`(I + W)/2`) the
    error recursion of all three methods tends, as :math:`\alpha \to 0`, to
    :math:`e^{k+1} = \tilde W (2 e^k - e^{k-1})`, whose modes are the roots of
    :math:`\lambda^2 - 2\nu\lambda + \nu = 0` for each eigenvalue :math:`\nu` of
    :math:`\tilde W`. For a symmetric ``W`` (real :math:`\nu \in [0, 1]`) every root has
    :math:`|\lambda|^2 = \nu \le 1`; complex :math:`\nu` (a non-symmetric ``W``) can give
    :math:`|\lambda| > 1`, and then small step sizes diverge (Yuan et al. 2019 assume a
    symmetric ``W`` for this reason). Returns :math:`\max |\lambda|`.
    """
    nu = 1.0 - gamma * (1.0 - np.linalg.eigvals(np.asarray(W, dtype=np.float64)))
    disc = np.sqrt(nu * nu - nu + 0j)
    return float(np.max(np.maximum(np.abs(nu + disc), np.abs(nu - disc))))


def require_symmetric_or_opt_in(topology, algorithm: str, allow_asymmetric: bool, *,
                                measured: str, gamma: float = 0.5) -> bool:
    """Require doubly stochastic weights, and symmetric ones unless ``allow_asymmetric``;
    warn (``UserWarning``) for each non-symmetric pattern that was opted in. Returns ``True``
    if every pattern is symmetric."""
    require_weights(topology, algorithm, row=True, column=True, symmetric=not allow_asymmetric,
                    also=f" Or, knowingly, {algorithm}(..., allow_asymmetric=True): the fixed "
                         "point stays exact but small step sizes diverge on non-symmetric W "
                         f"(see help({algorithm})).")
    asym = [p for p in topology.patterns if not p.is_symmetric]
    if asym:
        rho = (f"{max(small_step_radius(p.weights, gamma) for p in asym):.4g}"
               if topology.size <= MAX_EIG_N else f"not computed for n > {MAX_EIG_N}")
        names = repr(asym[0].name) + (f" and {len(asym) - 1} more" if len(asym) > 1 else "")
        warnings.warn(
            f"{algorithm}: running on the non-symmetric pattern {names} "
            f"(allow_asymmetric=True). Every fixed point is still the exact minimiser (W is "
            "doubly stochastic), but convergence is not guaranteed: the step-size-zero limit of "
            f"the iteration has spectral radius {rho} on this W (> 1 means small step sizes "
            f"diverge). {measured} For guaranteed convergence use a symmetric topology, e.g. "
            "bluefog.topology.symmetric_exponential_graph(n).",
            UserWarning, stacklevel=3)
    return not asym
