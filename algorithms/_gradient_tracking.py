r"""Gradient tracking: DIGing (doubly stochastic) and Push-DIGing (column stochastic).

Each agent keeps, besides its iterate, a tracker :math:`y_i` of the *average* gradient
:math:`\frac1n\sum_j \nabla f_j`, updated by dynamic average consensus. Both work on
time-varying topologies (Nedic, Olshevsky & Shi 2017).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bluefog.algorithm import Algorithm
from bluefog.validation import check_choice, check_positive_float

from ._common import as_float_tree, require_weights, zero_count

__all__ = ["GradientTrackingState", "gradient_tracking", "PushDIGingState", "push_diging"]


class GradientTrackingState(NamedTuple):
    """State of :func:`gradient_tracking` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The iterate :math:`x_i^{(k)}`.
    y : pytree, same shapes as the parameters
        The gradient tracker :math:`y_i^{(k)}` (:math:`y^{(0)} = \\nabla f_i(x^{(0)})`).
    grad : pytree, same shapes as the parameters
        The last local gradient :math:`\\nabla f_i(x_i^{(k)})`.
    count : int32 scalar
    """

    x: Any
    y: Any
    grad: Any
    count: jax.Array


def gradient_tracking(lr: float, style: str = "awc") -> Algorithm:
    r"""DIGing: gradient tracking with a doubly stochastic (possibly time-varying) ``W``.

    ``style="awc"`` (default) is DIGing (Nedic, Olshevsky & Shi 2017; one exchange per step):

    .. math::

        x^{(k+1)} &= W(k)\, x^{(k)} - \alpha\, y^{(k)} \\
        y^{(k+1)} &= W(k)\, y^{(k)} + \nabla F(x^{(k+1)}) - \nabla F(x^{(k)}), \qquad
        y^{(0)} = \nabla F(x^{(0)}).

    ``style="atc"`` is the adapt-then-combine variant (Xu, Zhu, Soh & Xie 2015; two
    exchanges per step, a markedly larger stable step size):

    .. math::

        x^{(k+1)} = W(k)\,(x^{(k)} - \alpha y^{(k)}), \qquad
        y^{(k+1)} = W(k)\,(y^{(k)} + \nabla F(x^{(k+1)}) - \nabla F(x^{(k)})).

    Column stochasticity keeps :math:`\bar y^{(k)} = \frac1n\sum_i \nabla f_i(x_i^{(k)})`;
    every fixed point is consensual with :math:`\sum_i \nabla f_i(\bar x) = 0`, the exact
    minimiser. In the AWC form ``x`` and ``y`` travel together in one exchange per round.
    Converges linearly for strongly convex smooth :math:`f_i` and small enough
    :math:`\alpha` (for AWC the bound scales like :math:`(1-\rho)^2/L`; e.g. on an 8-ring
    least-squares problem AWC diverges at :math:`\alpha = 0.05` where ATC converges at
    :math:`0.1`), also over time-varying graphs that are jointly connected.

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.
    style : {"awc", "atc"}

    References
    ----------
    A. Nedic, A. Olshevsky, W. Shi, "Achieving geometric convergence for distributed
    optimization over time-varying graphs", SIAM J. Optim. 27(4) (2017). G. Qu and N. Li,
    "Harnessing smoothness to accelerate distributed optimization", IEEE TCNS 5(3) (2018).
    J. Xu, S. Zhu, Y. C. Soh, L. Xie, "Augmented distributed gradient methods for multi-agent
    optimization under uncoordinated constant stepsizes", IEEE CDC 2015 (ATC form).
    """
    lr = check_positive_float(lr, "lr", where="gradient_tracking")
    style = check_choice(style, "style", ("awc", "atc"), where="gradient_tracking")

    def init(params, ctx) -> GradientTrackingState:
        require_weights(ctx.topology, "gradient_tracking", row=True, column=True)
        x = as_float_tree(params)
        g = ctx.grad(x)
        return GradientTrackingState(x, g, g, zero_count())

    def step(state: GradientTrackingState, ctx) -> GradientTrackingState:
        comm, topo, t = ctx.comm, ctx.topology, state.count
        if style == "awc":
            wx, wy = comm.neighbor_allreduce((state.x, state.y), topo, t)
            x = jax.tree_util.tree_map(lambda a, y: a - lr * y, wx, state.y)
            g = ctx.grad(x)
            y = jax.tree_util.tree_map(lambda a, gn, go: a + gn - go, wy, g, state.grad)
        else:
            x = comm.neighbor_allreduce(
                jax.tree_util.tree_map(lambda a, y: a - lr * y, state.x, state.y), topo, t)
            g = ctx.grad(x)
            y = comm.neighbor_allreduce(
                jax.tree_util.tree_map(lambda y_, gn, go: y_ + gn - go, state.y, g, state.grad), topo, t)
        return GradientTrackingState(x, y, g, state.count + 1)

    name = "gradient_tracking" if style == "awc" else "gradient_tracking_atc"
    return Algorithm(init, step, lambda s: s.x, name, {"lr": lr, "style": style})


class PushDIGingState(NamedTuple):
    """State of :func:`push_diging` for one agent.

    Attributes
    ----------
    u : pytree, same shapes as the parameters
        The mass-weighted iterate :math:`u_i^{(k)}` (:math:`u^{(0)} = x^{(0)}`).
    v : scalar
        The push-sum weight :math:`v_i^{(k)}` (:math:`v^{(0)} = 1`).
    y : pytree, same shapes as the parameters
        The gradient tracker :math:`y_i^{(k)}`.
    grad : pytree, same shapes as the parameters
        The last local gradient :math:`\\nabla f_i(x_i^{(k)})`, :math:`x = u / v`.
    count : int32 scalar
    """

    u: Any
    v: jax.Array
    y: Any
    grad: Any
    count: jax.Array


def push_diging(lr: float) -> Algorithm:
    r"""Push-DIGing: gradient tracking over directed graphs (column-stochastic ``C``).

    .. math::

        u^{(k+1)} &= C(k)\,(u^{(k)} - \alpha y^{(k)}) \\
        v^{(k+1)} &= C(k)\, v^{(k)} \\
        x^{(k+1)} &= u^{(k+1)} / v^{(k+1)} \\
        y^{(k+1)} &= C(k)\, y^{(k)} + \nabla F(x^{(k+1)}) - \nabla F(x^{(k)}),

    with :math:`u^{(0)} = x^{(0)}`, :math:`v^{(0)} = \mathbf 1`,
    :math:`y^{(0)} = \nabla F(x^{(0)})`. The push-sum weights :math:`v` undo the bias of a
    column-stochastic ``C`` (no row stochasticity needed), so the method reaches the exact
    minimiser on strongly connected directed (and time-varying) graphs. One exchange per
    round carries :math:`(u - \alpha y, v, y)`.

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.

    References
    ----------
    A. Nedic, A. Olshevsky, W. Shi, "Achieving geometric convergence for distributed
    optimization over time-varying graphs", SIAM J. Optim. 27(4) (2017), Section 4.
    """
    lr = check_positive_float(lr, "lr", where="push_diging")

    def init(params, ctx) -> PushDIGingState:
        require_weights(ctx.topology, "push_diging", column=True)
        x = as_float_tree(params)
        dtype = jax.tree_util.tree_leaves(x)[0].dtype
        g = ctx.grad(x)
        return PushDIGingState(x, jnp.ones((), dtype), g, g, zero_count())

    def step(state: PushDIGingState, ctx) -> PushDIGingState:
        send = jax.tree_util.tree_map(lambda u, y: u - lr * y, state.u, state.y)
        u, v, wy = ctx.comm.neighbor_allreduce((send, state.v, state.y), ctx.topology, state.count)
        x = jax.tree_util.tree_map(lambda a: a / v.astype(a.dtype), u)
        g = ctx.grad(x)
        y = jax.tree_util.tree_map(lambda a, gn, go: a + gn - go, wy, g, state.grad)
        return PushDIGingState(u, v, y, g, state.count + 1)

    def params(state: PushDIGingState):
        return jax.tree_util.tree_map(lambda a: a / state.v.astype(a.dtype), state.u)

    return Algorithm(init, step, params, "push_diging", {"lr": lr})
