r"""Decentralized gradient descent and diffusion: the simple, *inexact* first-order methods.

With a constant step size both converge to a fixed point that is :math:`O(\alpha)` away from
the minimiser when the local objectives differ (the price of heterogeneity; see the fixed-point
equations in each docstring). The exact methods (:mod:`algorithms.exact_diffusion`,
:mod:`algorithms.extra`, :mod:`algorithms.gradient_tracking`) remove this bias.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from bluefog.algorithm import Algorithm
from bluefog.validation import check_choice, check_positive_float

from ._common import as_float_tree, require_weights, tree_axpy, zero_count

__all__ = ["DGDState", "dgd", "diffusion"]


class DGDState(NamedTuple):
    """State of :func:`dgd` and :func:`diffusion` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The iterate :math:`x_i^{(k)}`.
    count : int32 scalar
    """

    x: Any
    count: jax.Array


def dgd(lr: float) -> Algorithm:
    r"""Decentralized gradient descent (DGD).

    .. math:: x_i^{(k+1)} = \sum_j W_{ij}(k)\, x_j^{(k)} - \alpha \nabla f_i(x_i^{(k)}).

    Communication and the gradient evaluation use the same iterate, so they can overlap (this
    is Bluefog's "adapt-with-combine", AWC, update). For a static doubly stochastic ``W`` and
    constant :math:`\alpha` the iterates converge (for :math:`\alpha` small enough) to the
    fixed point :math:`X^\infty` of :math:`(I - W) X + \alpha \nabla F(X) = 0`; for
    :math:`f_i(x) = \tfrac12\|x - b_i\|^2` this is the linear system
    :math:`(I - W + \alpha I)\, X^\infty = \alpha B`, whose distance to the optimum
    :math:`\mathbf 1\bar b^\top` is :math:`O(\alpha / (1 - \rho))` (Yuan, Ling & Yin 2016).

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.

    References
    ----------
    A. Nedic and A. Ozdaglar, "Distributed subgradient methods for multi-agent optimization",
    IEEE TAC 54(1) (2009). K. Yuan, Q. Ling, W. Yin, "On the convergence of decentralized
    gradient descent", SIAM J. Optim. 26(3) (2016).
    """
    lr = check_positive_float(lr, "lr", where="dgd")

    def init(params, ctx) -> DGDState:
        require_weights(ctx.topology, "dgd", row=True)
        return DGDState(as_float_tree(params), zero_count())

    def step(state: DGDState, ctx) -> DGDState:
        mixed = ctx.comm.neighbor_allreduce(state.x, ctx.topology, state.count)
        x = tree_axpy(-lr, ctx.grad(state.x), mixed)
        return DGDState(x, state.count + 1)

    return Algorithm(init, step, lambda s: s.x, "dgd", {"lr": lr})


def diffusion(lr: float, style: str = "atc") -> Algorithm:
    r"""Diffusion strategies: adapt-then-combine (ATC) or adapt-with-combine (AWC).

    .. math::

        \text{ATC:}\quad \psi_i^{(k)} = x_i^{(k)} - \alpha \nabla f_i(x_i^{(k)}), \qquad
        x_i^{(k+1)} = \sum_j W_{ij}(k)\, \psi_j^{(k)}

        \text{AWC:}\quad x_i^{(k+1)} = \sum_j W_{ij}(k)\, x_j^{(k)}
        - \alpha \nabla f_i(x_i^{(k)})

    AWC is Bluefog's name for the update whose combination step overlaps the gradient
    computation; its update is exactly :func:`dgd`'s. ATC mixes the adapted iterates, which
    makes its fixed point solve :math:`(I - W)X + \alpha W \nabla F(X) = 0`; for
    :math:`f_i = \tfrac12\|x - b_i\|^2`: :math:`(I - (1 - \alpha) W)\, X^\infty =
    \alpha W B`. Both biases are :math:`O(\alpha)`; ATC is stable for a wider step-size range
    (Sayed 2014).

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.
    style : {"atc", "awc"}

    References
    ----------
    A. H. Sayed, "Adaptation, learning, and optimization over networks", Foundations and
    Trends in Machine Learning 7(4-5) (2014); J. Chen and A. H. Sayed, "Diffusion adaptation
    strategies for distributed optimization and learning over networks", IEEE TSP 60(8)
    (2012). Ying et al., "BlueFog", arXiv:2111.04287 (ATC/AWC naming).
    """
    lr = check_positive_float(lr, "lr", where="diffusion")
    style = check_choice(style, "style", ("atc", "awc"), where="diffusion")
    name = f"diffusion_{style}"

    def init(params, ctx) -> DGDState:
        require_weights(ctx.topology, "diffusion", row=True)
        return DGDState(as_float_tree(params), zero_count())

    def step(state: DGDState, ctx) -> DGDState:
        g = ctx.grad(state.x)
        if style == "atc":
            psi = tree_axpy(-lr, g, state.x)
            x = ctx.comm.neighbor_allreduce(psi, ctx.topology, state.count)
        else:
            x = tree_axpy(-lr, g, ctx.comm.neighbor_allreduce(state.x, ctx.topology, state.count))
        return DGDState(x, state.count + 1)

    return Algorithm(init, step, lambda s: s.x, name, {"lr": lr, "style": style})
