r"""Robust push-sum: the exact average despite lost messages, by exchanging running sums.

Plain push-sum (:func:`algorithms.push_sum`) moves *mass*: a lost message destroys the mass
it carried and the ratio converges to a wrong value. Hadjicostis, Dominguez-Garcia and
Charalambous let every agent send the **running sum** of everything it ever sent; a receiver
that misses a message loses nothing, because the next message that arrives on the same link
contains the missed mass too.

With a column-stochastic :math:`A` (weight :math:`A_{ij}` on the link :math:`j \to i`),
agent :math:`j` keeps :math:`\sigma_j(k+1) = \sigma_j(k) + (x_j(k), w_j(k))` and sends it;
receiver :math:`i` keeps, per in-link, :math:`\rho_{ij}`, the last *delivered*
:math:`A_{ij}\sigma_j` (0 before the first delivery):

.. math::
    \rho_{ij}(k+1) = \begin{cases} A_{ij}\,\sigma_j(k+1) & \text{delivered at step } k \\
                                  \rho_{ij}(k) & \text{lost} \end{cases}, \qquad
    (x_i, w_i)(k+1) = A_{ii}\,(x_i, w_i)(k) + \sum_{j \in N^-_i} \bigl(\rho_{ij}(k+1) -
    \rho_{ij}(k)\bigr),

and the estimate is :math:`z_i = x_i / w_i`. Without losses this is exactly push-sum. The
mass "in flight" on a link is :math:`A_{ij}\sigma_j - \rho_{ij} \ge 0` (componentwise for
the weights), so :math:`\sum_i x_i + \sum_{(j \to i)} (A_{ij}\sigma_j - \rho_{ij}) =
\sum_i x_i(0)` at every step: mass is only delayed, never lost.

Assumptions (the paper's): a static, strongly connected graph with column-stochastic
weights; every link delivers infinitely often (e.g. i.i.d. loss with probability
:math:`p < 1`, or outages and crashes that end). A link that never delivers again (a
permanent crash) keeps its mass forever and the survivors' ratio is then biased. The memory
:math:`\rho` lives in the state (one slot per schedule round), so ``init``/``step`` stay
pure; the losses are those of the communicator's fault model (``neighbor_allgather`` reports
a lost message as weight 0).

References
----------
C. N. Hadjicostis, A. D. Dominguez-Garcia, T. Charalambous, "Robust distributed average
consensus via exchange of running sums", IEEE Trans. Automatic Control 61(6), 1492-1507
(2016). D. Kempe, A. Dobra, J. Gehrke, "Gossip-based computation of aggregate information",
FOCS 2003.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.algorithm import Algorithm

from ._common import as_float_tree, require_static, require_weights, zero_count

__all__ = ["RobustPushSumState", "robust_push_sum"]


class RobustPushSumState(NamedTuple):
    """State of :func:`robust_push_sum` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        Mass :math:`x_i`.
    w : scalar
        Push-sum weight :math:`w_i` (starts at 1).
    sigma : tuple ``(x_sum, w_sum)``
        Running sums :math:`\\sigma_i` of everything this agent has sent.
    rho : tuple ``(x_slots, w_slots)``
        Per schedule round ``r``, the last delivered :math:`A_{i\\sigma_r(i)}\\sigma_{\\sigma_r(i)}`;
        leaves of shape ``(R, *leaf.shape)`` and ``(R,)``.
    count : int32 scalar
    """

    x: Any
    w: jax.Array
    sigma: Any
    rho: Any
    count: jax.Array


def _expand(mask, like):
    return jnp.reshape(mask, mask.shape + (1,) * (like.ndim - 1))


def robust_push_sum() -> Algorithm:
    r"""Robust push-sum (ratio consensus) with running sums; exact average under loss.

    See the module docstring for the recursion, the invariant and the assumptions. Needs a
    static topology with column-stochastic weights.

    Returns
    -------
    Algorithm
        State :class:`RobustPushSumState`; ``params(state) = x / w``.

    References
    ----------
    Hadjicostis, Dominguez-Garcia, Charalambous, IEEE TAC 61(6) (2016).
    """

    def init(params, ctx) -> RobustPushSumState:
        require_weights(ctx.topology, "robust_push_sum", column=True)
        require_static(ctx.topology, "robust_push_sum", "push_sum (without loss robustness)")
        x = as_float_tree(params)
        dtype = jax.tree_util.tree_leaves(x)[0].dtype
        w = jnp.ones((), dtype)
        R = max(1, ctx.topology.schedule.num_rounds)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, (x, w))
        slots = jax.tree_util.tree_map(lambda v: jnp.zeros((R,) + v.shape, v.dtype), (x, w))
        return RobustPushSumState(x, w, zeros, slots, zero_count())

    def step(state: RobustPushSumState, ctx) -> RobustPushSumState:
        sigma = jax.tree_util.tree_map(jnp.add, state.sigma, (state.x, state.w))
        nv = ctx.comm.neighbor_allgather(sigma, ctx.topology, state.count)
        arrived = nv.weights != 0
        rho = jax.tree_util.tree_map(
            lambda got, old: jnp.where(_expand(arrived, got),
                                       _expand(nv.weights, got).astype(got.dtype) * got, old),
            nv.values, state.rho)
        a_ii = jnp.asarray(np.diag(ctx.topology.weights))[ctx.comm.rank()]
        x, w = jax.tree_util.tree_map(
            lambda own, new, old: a_ii.astype(own.dtype) * own + jnp.sum(new - old, axis=0),
            (state.x, state.w), rho, state.rho)
        return RobustPushSumState(x, w, sigma, rho, state.count + 1)

    def params(state: RobustPushSumState):
        return jax.tree_util.tree_map(lambda v: v / state.w.astype(v.dtype), state.x)

    return Algorithm(init, step, params, "robust_push_sum", {})
