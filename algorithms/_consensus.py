r"""Average consensus and push-sum: agreeing on the average of the initial values.

Both are gradient-free: the "problem" only provides the initial values (``x0``) and, for the
metrics, the average as ``optimum`` (e.g. :func:`algorithms.problems.quadratic` with
``x0 = b``, whose minimiser is the mean of ``b``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bluefog.algorithm import Algorithm

from ._common import as_float_tree, require_weights, zero_count

__all__ = ["ConsensusState", "consensus", "PushSumState", "push_sum"]


class ConsensusState(NamedTuple):
    """State of :func:`consensus` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The current value :math:`x_i^{(k)}`.
    count : int32 scalar
        Number of steps taken :math:`k`.
    """

    x: Any
    count: jax.Array


def consensus() -> Algorithm:
    r"""Average consensus by repeated neighbor averaging.

    .. math:: x_i^{(k+1)} = \sum_j W_{ij}(k)\, x_j^{(k)}, \qquad X^{(k+1)} = W(k) X^{(k)}.

    For a static, doubly stochastic, primitive ``W`` every agent converges to the exact
    average :math:`\bar x^{(0)}` at the linear rate :math:`\rho = \|W - \tfrac1n\mathbf 1
    \mathbf 1^\top\|_2`; for a row-stochastic but not column-stochastic ``W`` the limit is a
    Perron-weighted average :math:`\pi^\top X^{(0)}` (:math:`\pi^\top W = \pi^\top`), not the
    average (use :func:`push_sum` on directed graphs). Time-varying topologies are supported
    (the step counter selects ``W(k)``).

    Returns
    -------
    Algorithm
        State :class:`ConsensusState`; ``params(state) = state.x``.

    References
    ----------
    L. Xiao and S. Boyd, "Fast linear iterations for distributed averaging", Systems &
    Control Letters 53 (2004). A. Nedic, A. Olshevsky, M. Rabbat, "Network topology and
    communication-computation tradeoffs in decentralized optimization", Proc. IEEE 106(5)
    (2018).
    """

    def init(params, ctx) -> ConsensusState:
        require_weights(ctx.topology, "consensus", row=True)
        return ConsensusState(as_float_tree(params), zero_count())

    def step(state: ConsensusState, ctx) -> ConsensusState:
        x = ctx.comm.neighbor_allreduce(state.x, ctx.topology, state.count)
        return ConsensusState(x, state.count + 1)

    return Algorithm(init, step, lambda s: s.x, "consensus", {})


class PushSumState(NamedTuple):
    """State of :func:`push_sum` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The mass-weighted value :math:`x_i^{(k)}` (not the estimate).
    w : scalar, dtype of the first parameter leaf
        The push-sum weight :math:`w_i^{(k)}` (starts at 1).
    count : int32 scalar
    """

    x: Any
    w: jax.Array
    count: jax.Array


def push_sum() -> Algorithm:
    r"""Push-sum (ratio consensus) for directed graphs with column-stochastic weights.

    With a column-stochastic :math:`A(k)` (:math:`\mathbf 1^\top A = \mathbf 1^\top`: each
    sender splits its mass among itself and its out-neighbors):

    .. math::

        x^{(k+1)} = A(k)\, x^{(k)}, \qquad w^{(k+1)} = A(k)\, w^{(k)}, \qquad
        w^{(0)} = \mathbf 1, \qquad z_i^{(k)} = x_i^{(k)} / w_i^{(k)}.

    Column stochasticity preserves :math:`\sum_i x_i` and :math:`\sum_i w_i = n`, and for a
    strongly connected graph :math:`x^{(k)}, w^{(k)}` both align with the Perron vector, so the
    ratio :math:`z_i \to \frac1n\sum_j x_j^{(0)}`, the exact average, on graphs where plain
    iteration with a row-stochastic matrix converges to a biased weighted average. ``x`` and
    ``w`` travel in one exchange per round. Time-varying column-stochastic topologies are
    supported.

    Returns
    -------
    Algorithm
        State :class:`PushSumState`; ``params(state) = x / w``.

    References
    ----------
    D. Kempe, A. Dobra, J. Gehrke, "Gossip-based computation of aggregate information",
    FOCS 2003. A. Nedic and A. Olshevsky, "Distributed optimization over time-varying
    directed graphs", IEEE TAC 60(3) (2015).
    """

    def init(params, ctx) -> PushSumState:
        require_weights(ctx.topology, "push_sum", column=True)
        x = as_float_tree(params)
        dtype = jax.tree_util.tree_leaves(x)[0].dtype
        return PushSumState(x, jnp.ones((), dtype), zero_count())

    def step(state: PushSumState, ctx) -> PushSumState:
        x, w = ctx.comm.neighbor_allreduce((state.x, state.w), ctx.topology, state.count)
        return PushSumState(x, w, state.count + 1)

    def params(state: PushSumState):
        return jax.tree_util.tree_map(lambda v: v / state.w.astype(v.dtype), state.x)

    return Algorithm(init, step, params, "push_sum", {})
