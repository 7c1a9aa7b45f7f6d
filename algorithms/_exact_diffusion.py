r"""Exact diffusion and NIDS: bias-corrected diffusion with the mixing matrix
:math:`\bar W = (I + W)/2` (or, for NIDS, :math:`\tilde W = I - c\alpha (I - W)`).

Both converge *exactly* (linearly, for strongly convex smooth :math:`f_i`) with a constant
step size, where :func:`algorithms.dgd` and :func:`algorithms.diffusion` stall at an
:math:`O(\alpha)` bias. Both need a doubly stochastic ``W``, symmetric unless the caller opts
in with ``allow_asymmetric=True`` (then a warning; see :func:`exact_diffusion` for where a
non-symmetric ``W`` fails).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from bluefog.algorithm import Algorithm
from bluefog.validation import check_bool, check_positive_float

from ._common import (as_float_tree, require_static, require_symmetric_or_opt_in, tree_add,
                      tree_axpy, tree_sub, tree_where, zero_count)

__all__ = ["ExactDiffusionState", "exact_diffusion", "nids", "MEASURED_ASYMMETRIC"]

#: What was measured on a non-symmetric ``W`` (``tests/test_algorithms_asymmetric.py``):
#: 16-agent directed exponential graph, float64 least squares (m = 10, d = 5), ``L`` the
#: largest per-agent smoothness constant, step sizes on a grid of ``0.05 / L``.
MEASURED_ASYMMETRIC = (
    "Measured on the 16-agent directed exponential graph (float64 least squares, L = max_i "
    "lambda_max(A_i^T A_i / m)): exact diffusion and NIDS (default c) converge only for "
    "0.55/L <= lr <= 2.3/L and diverge for lr <= 0.5/L, where the symmetric exponential graph "
    "converges for every lr <= 2.35/L."
)


class ExactDiffusionState(NamedTuple):
    """State of :func:`exact_diffusion` and :func:`nids` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The iterate :math:`x_i^{(k)}`.
    psi : pytree, same shapes as the parameters
        The previous adapt step :math:`\\psi_i^{(k)}` (:math:`\\psi^{(0)} = x^{(0)}`).
    count : int32 scalar
    """

    x: Any
    psi: Any
    count: jax.Array


def _correct(state: ExactDiffusionState, ctx, lr: float):
    """Adapt and correct: ``psi+ = x - lr grad f(x)``, ``phi = psi+ + x - psi``."""
    psi = tree_axpy(-lr, ctx.grad(state.x), state.x)
    phi = tree_add(psi, tree_sub(state.x, state.psi))
    return psi, phi


def exact_diffusion(lr: float, *, allow_asymmetric: bool = False) -> Algorithm:
    r"""Exact diffusion (adapt, correct, combine with :math:`\bar W = (I + W)/2`).

    .. math::

        \psi_i^{(k+1)} &= x_i^{(k)} - \alpha \nabla f_i(x_i^{(k)}) \\
        \phi_i^{(k+1)} &= \psi_i^{(k+1)} + x_i^{(k)} - \psi_i^{(k)} \\
        x_i^{(k+1)} &= \sum_j \bar W_{ij}\, \phi_j^{(k+1)}, \qquad
        \bar W = \tfrac12 (I + W),

    with :math:`\psi^{(0)} = x^{(0)}`. Eliminating :math:`\psi`:
    :math:`X^{(k+1)} = \bar W (2X^{(k)} - X^{(k-1)} - \alpha(\nabla F(X^{(k)}) -
    \nabla F(X^{(k-1)})))`. Since :math:`\bar W` is doubly stochastic,
    :math:`\bar x^{(k)} = \bar\psi^{(k)}` for all ``k`` and every fixed point is consensual
    with :math:`\sum_i \nabla f_i(\bar x) = 0`: the exact minimiser. :math:`\bar W x` is
    computed as :math:`\tfrac12(x + Wx)` from the given topology (one neighbor exchange per
    step), for static and time-varying topologies alike. The convergence theory (Yuan et
    al. 2019) is for a static symmetric ``W``; for time-varying symmetric doubly stochastic
    topologies the fixed-point argument above still shows that any limit is exact, and the
    tests check convergence on the one-peer exponential graph.

    **Non-symmetric** ``W`` (e.g. Bluefog's directed ``exponential_graph``) is refused unless
    ``allow_asymmetric=True``, which warns. The fixed point is still exact (it only needs
    :math:`\bar W` doubly stochastic), but stability is lost for *small* step sizes: as
    :math:`\alpha \to 0` the error recursion tends to :math:`e^{k+1} = \bar W(2e^k -
    e^{k-1})`, whose modes solve :math:`\lambda^2 - 2\nu\lambda + \nu = 0` for each
    eigenvalue :math:`\nu` of :math:`\bar W`; real :math:`\nu \in [0, 1]` (symmetric ``W``)
    give :math:`|\lambda| \le 1`, but complex :math:`\nu` can give :math:`|\lambda| > 1`:
    1.031 on the 16-agent directed exponential graph, 1.055 on 32 agents (1 on 4 and 8
    agents). Measured on the 16-agent directed exponential graph (float64 least squares,
    :math:`L = \max_i \lambda_{\max}(A_i^\top A_i/m)`, step-size grid :math:`0.05/L`): the
    error recursion contracts, and the runs converge to round-off, only for
    :math:`0.55/L \le \alpha \le 2.3/L`; they diverge for :math:`\alpha \le 0.5/L`
    (symmetric exponential graph, same problem: every :math:`\alpha \le 2.35/L`). So
    Bluefog's example converges "for many step sizes", not for all small ones.

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0` (converges for :math:`\alpha < 2/L` on
        :math:`L`-smooth, strongly convex problems with a symmetric ``W``).
    allow_asymmetric : bool
        Run on a doubly stochastic but non-symmetric ``W`` (with a ``UserWarning`` quoting
        :math:`\max|\lambda|` at :math:`\alpha \to 0` for the given ``W``). Default
        ``False``: refused with a ``ValueError``.

    References
    ----------
    K. Yuan, B. Ying, X. Zhao, A. H. Sayed, "Exact diffusion for distributed optimization and
    learning - Part I: algorithm development", IEEE TSP 67(3) (2019).
    """
    lr = check_positive_float(lr, "lr", where="exact_diffusion")
    allow_asymmetric = check_bool(allow_asymmetric, "allow_asymmetric", where="exact_diffusion")

    def init(params, ctx) -> ExactDiffusionState:
        require_symmetric_or_opt_in(ctx.topology, "exact_diffusion", allow_asymmetric,
                                    measured=MEASURED_ASYMMETRIC)
        x = as_float_tree(params)
        return ExactDiffusionState(x, x, zero_count())

    def step(state: ExactDiffusionState, ctx) -> ExactDiffusionState:
        psi, phi = _correct(state, ctx, lr)
        wphi = ctx.comm.neighbor_allreduce(phi, ctx.topology, state.count)
        x = jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), phi, wphi)
        return ExactDiffusionState(x, psi, state.count + 1)

    return Algorithm(init, step, lambda s: s.x, "exact_diffusion",
                     {"lr": lr, "allow_asymmetric": allow_asymmetric})


def _check_psd(W, gamma: float) -> None:
    r"""Refuse :math:`c\alpha > 1/(1 - \lambda_{\min}(W))` (symmetric ``W``): then
    :math:`I - c\alpha(I - W)` is not positive semi-definite (Li, Shi & Yan 2019)."""
    lam_min = float(np.linalg.eigvalsh(W).min())
    bound = 1.0 / (1.0 - lam_min) if lam_min < 1.0 else np.inf
    if gamma > bound * (1 + 1e-12):
        raise ValueError(
            f"nids: c * lr must be <= 1 / (1 - lambda_min(W)) = {bound:.6g} so that "
            f"I - c*lr*(I - W) is positive semi-definite; got c * lr = {gamma:.6g}. Omit c "
            "(default c = 1 / (2 lr)) or lower it."
        )


def nids(lr: float, c: float | None = None, *, allow_asymmetric: bool = False) -> Algorithm:
    r"""NIDS: network-independent step size, with :math:`\tilde W = I - c\alpha(I - W)`.

    .. math::

        x^{(1)} &= x^{(0)} - \alpha \nabla F(x^{(0)}) \\
        x^{(k+1)} &= \tilde W \bigl(2x^{(k)} - x^{(k-1)} - \alpha(\nabla F(x^{(k)}) -
        \nabla F(x^{(k-1)}))\bigr), \quad k \ge 1,

    implemented per agent as :math:`\psi^{(k+1)} = x^{(k)} - \alpha\nabla f_i(x^{(k)})`,
    :math:`\phi = \psi^{(k+1)} + x^{(k)} - \psi^{(k)}`,
    :math:`x^{(k+1)} = \phi - c\alpha(\phi - W\phi)` (no mixing at ``k = 0``).
    The default :math:`c\alpha = 1/2` gives :math:`\tilde W = (I+W)/2`, the choice for which
    NIDS coincides with :func:`exact_diffusion` from the second iterate on; its step size may
    reach :math:`2/L` whatever the network. Needs a static symmetric doubly stochastic ``W``
    and :math:`0 < c\alpha \le 1/(1 - \lambda_{\min}(W))` (so that :math:`\tilde W \succeq 0`).
    A non-symmetric doubly stochastic ``W`` is refused unless ``allow_asymmetric=True``
    (warning; the bound on :math:`c\alpha` is then not checked, since :math:`\lambda_{\min}`
    is complex): the fixed point stays exact, but small step sizes diverge exactly as for
    :func:`exact_diffusion` (same recursion for the default ``c``; measured there).

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.
    c : float, optional
        Mixing constant; default ``1 / (2 * lr)``.
    allow_asymmetric : bool
        As in :func:`exact_diffusion`.

    References
    ----------
    Z. Li, W. Shi, M. Yan, "A decentralized proximal-gradient method with network
    independent step-sizes and separated convergence rates", IEEE TSP 67(17) (2019).
    """
    lr = check_positive_float(lr, "lr", where="nids")
    c = 0.5 / lr if c is None else check_positive_float(c, "c", where="nids")
    allow_asymmetric = check_bool(allow_asymmetric, "allow_asymmetric", where="nids")
    gamma = c * lr

    def init(params, ctx) -> ExactDiffusionState:
        require_static(ctx.topology, "nids", "gradient_tracking (DIGing)")
        if require_symmetric_or_opt_in(ctx.topology, "nids", allow_asymmetric,
                                       measured=MEASURED_ASYMMETRIC, gamma=gamma):
            _check_psd(ctx.topology.weights, gamma)
        x = as_float_tree(params)
        return ExactDiffusionState(x, x, zero_count())

    def step(state: ExactDiffusionState, ctx) -> ExactDiffusionState:
        psi, phi = _correct(state, ctx, lr)
        wphi = ctx.comm.neighbor_allreduce(phi, ctx.topology, state.count)
        mixed = jax.tree_util.tree_map(lambda a, b: a - gamma * (a - b), phi, wphi)
        x = tree_where(state.count == 0, phi, mixed)
        return ExactDiffusionState(x, psi, state.count + 1)

    return Algorithm(init, step, lambda s: s.x, "nids",
                     {"lr": lr, "c": c, "allow_asymmetric": allow_asymmetric})
