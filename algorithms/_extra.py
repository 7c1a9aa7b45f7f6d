r"""EXTRA: the exact first-order algorithm of Shi, Ling, Wu and Yin (2015)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from bluefog.algorithm import Algorithm
from bluefog.validation import check_bool, check_positive_float

from ._common import as_float_tree, require_static, require_symmetric_or_opt_in, zero_count

__all__ = ["ExtraState", "extra", "MEASURED_ASYMMETRIC"]

#: What was measured on a non-symmetric ``W`` (``tests/test_algorithms_asymmetric.py``).
MEASURED_ASYMMETRIC = (
    "Measured on the 16-agent directed exponential graph (float64 least squares, L = max_i "
    "lambda_max(A_i^T A_i / m)): EXTRA converges only for 0.4/L <= lr <= 1.35/L and diverges "
    "for lr <= 0.35/L, where the symmetric exponential graph converges for every lr <= 1.3/L."
)


class ExtraState(NamedTuple):
    """State of :func:`extra` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The iterate :math:`x_i^{(k)}`.
    y : pytree, same shapes as the parameters
        The accumulated correction :math:`y_i^{(k)} = \\sum_{t<k} ((W - \\tilde W) x^{(t)})_i
        = \\tfrac12 \\sum_{t<k} ((W - I) x^{(t)})_i` (zero at ``k = 0``).
    count : int32 scalar
    """

    x: Any
    y: Any
    count: jax.Array


def extra(lr: float, *, allow_asymmetric: bool = False) -> Algorithm:
    r"""EXTRA with :math:`\tilde W = (I + W)/2`.

    .. math::

        x^{(1)} &= W x^{(0)} - \alpha \nabla F(x^{(0)}) \\
        x^{(k+2)} &= (I + W) x^{(k+1)} - \tilde W x^{(k)} - \alpha\bigl(\nabla F(x^{(k+1)}) -
        \nabla F(x^{(k)})\bigr),

    executed in the equivalent summed form (Shi et al. 2015, eq. 2.13) with one neighbor
    exchange per step:

    .. math::

        x^{(k+1)} = W x^{(k)} - \alpha \nabla F(x^{(k)}) + y^{(k)}, \qquad
        y^{(k+1)} = y^{(k)} + \tfrac12 (W x^{(k)} - x^{(k)}), \qquad y^{(0)} = 0.

    Converges linearly to the exact minimiser for strongly convex smooth :math:`f_i` and
    :math:`\alpha < 2\lambda_{\min}(\tilde W)/L`, with a static symmetric doubly stochastic
    ``W``. Time-varying topologies are refused: the correction telescopes only for a fixed
    ``W`` (use :func:`algorithms.gradient_tracking`).

    A static doubly stochastic but **non-symmetric** ``W`` is refused unless
    ``allow_asymmetric=True`` (then a ``UserWarning``). Summing the :math:`y` update over
    agents shows :math:`\mathbf 1^\top y^{(k)} = 0` for column-stochastic ``W``, so a fixed
    point is still consensual with :math:`\sum_i \nabla f_i(\bar x) = 0` (exact); but as
    :math:`\alpha \to 0` the error recursion tends to :math:`e^{k+2} = (I + W)e^{k+1} -
    \tilde W e^k`, the same characteristic polynomial :math:`\lambda^2 - 2\nu\lambda + \nu`
    (:math:`\nu` an eigenvalue of :math:`\tilde W`) as exact diffusion, with roots outside
    the unit circle for complex :math:`\nu`: small step sizes diverge. Measured on the
    16-agent directed exponential graph (float64 least squares, :math:`L = \max_i
    \lambda_{\max}(A_i^\top A_i/m)`, grid :math:`0.05/L`): converges only for
    :math:`0.4/L \le \alpha \le 1.35/L`, diverges for :math:`\alpha \le 0.35/L`
    (symmetric exponential graph: every :math:`\alpha \le 1.3/L`).

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.
    allow_asymmetric : bool
        Run on a doubly stochastic non-symmetric ``W`` (warning); default ``False`` (refused).

    References
    ----------
    W. Shi, Q. Ling, G. Wu, W. Yin, "EXTRA: an exact first-order algorithm for decentralized
    consensus optimization", SIAM J. Optim. 25(2) (2015).
    """
    lr = check_positive_float(lr, "lr", where="extra")
    allow_asymmetric = check_bool(allow_asymmetric, "allow_asymmetric", where="extra")

    def init(params, ctx) -> ExtraState:
        require_static(ctx.topology, "extra", "gradient_tracking (DIGing)")
        require_symmetric_or_opt_in(ctx.topology, "extra", allow_asymmetric,
                                    measured=MEASURED_ASYMMETRIC)
        x = as_float_tree(params)
        return ExtraState(x, jax.tree_util.tree_map(lambda v: v * 0, x), zero_count())

    def step(state: ExtraState, ctx) -> ExtraState:
        wx = ctx.comm.neighbor_allreduce(state.x, ctx.topology, state.count)
        x = jax.tree_util.tree_map(lambda a, g, y: a - lr * g + y, wx, ctx.grad(state.x), state.y)
        y = jax.tree_util.tree_map(lambda y_, a, b: y_ + 0.5 * (a - b), state.y, wx, state.x)
        return ExtraState(x, y, state.count + 1)

    return Algorithm(init, step, lambda s: s.x, "extra",
                     {"lr": lr, "allow_asymmetric": allow_asymmetric})
