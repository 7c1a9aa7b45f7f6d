r"""Asynchronous push-DIGing: gradient tracking over push-sum, written against the windows.

Bluefog's ``examples/pytorch_optimization.py --method push_diging`` packs
:math:`(u_i, y_i, v_i)` into one window so the three travel in one message; each agent, at
each of its own steps,

.. math::

    u_i \leftarrow u_i - \alpha\, v_i\, y_i \ (\text{default; } u_i - \alpha\, y_i
    \text{ with } \texttt{weighted\_step=False}), \qquad
    (u, y, v) \leftarrow \text{push-sum mixing (win\_accumulate + win\_update\_then\_collect)},

    z_i = u_i / v_i, \qquad y_i \leftarrow y_i + \nabla f_i(z_i) - \nabla f_i(z_i^{\text{prev}}).

Because accumulated mass is never lost, :math:`\sum_i y_i + (\text{in flight}) =
\sum_i \nabla f_i(z_i^{\text{prev}})` at every time, whatever the delays: the tracker follows
the average gradient, so a fixed point (nothing in flight, consensus) is the exact minimiser,
unlike :func:`algorithms.async_sgp` whose constant-step limit is :math:`O(\alpha)` away.

Why the weighted step: in ratio space the original step is
:math:`z_i \leftarrow z_i - \alpha\, y_i / v_i`, and the tracker's correction
:math:`\nabla f_i(z_i) - \nabla f_i(z_i^{\text{prev}})` is added to the mass-weighted
:math:`y_i` unweighted, so it moves :math:`z_i` by :math:`\alpha\,\Delta g / v_i`. When an
agent pauses for many steps its in-neighbours keep pushing mass into it and none comes back,
so their weights :math:`v_i` collapse (measured in the simulator: :math:`v_{\min} = 6\cdot
10^{-4}` during pauses of 20 mean step times) and that step explodes: the run diverges
(lr 0.1 and 0.05, the divergence seen under real MPI asynchrony, where an oversubscribed
machine pauses ranks). With the weighted step :math:`z_i \leftarrow z_i - \alpha\, y_i`
the correction is not amplified. A fixed point is still the exact minimiser: consensus
after the step needs every :math:`y_i` equal, the total mass :math:`\sum_i u_i` is
stationary only if :math:`\sum_i v_i y_i = 0`, so :math:`y = 0` and
:math:`\sum_i \nabla f_i(z^\star) = \sum_i y_i = 0`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.algorithm import Algorithm
from bluefog.validation import check_bool, check_positive_float

from ._common import as_float_tree, require_static, require_weights, zero_count

__all__ = ["AsyncPushDIGingState", "async_push_diging"]

WINDOW = "push_diging"


class AsyncPushDIGingState(NamedTuple):
    """State of :func:`async_push_diging` for one agent.

    Attributes
    ----------
    u : pytree, same shapes as the parameters
        Mass-weighted iterate :math:`u_i` (estimate :math:`z_i = u_i / v_i`).
    y : pytree, same shapes
        Gradient tracker :math:`y_i` (mass-weighted).
    v : scalar
        Push-sum weight :math:`v_i` (starts at 1).
    g : pytree, same shapes
        :math:`\\nabla f_i(z_i)` at the last step.
    windows : dict ``{"push_diging": Window}``
        The window holding :math:`(u_i, y_i, v_i)`.
    count : int32 scalar
        This agent's own steps.
    """

    u: Any
    y: Any
    v: jax.Array
    g: Any
    windows: dict
    count: jax.Array


def async_push_diging(lr: float, weighted_step: bool = True) -> Algorithm:
    r"""Asynchronous push-DIGing (see the module docstring for the update).

    With the immediate clock (every agent steps, no delay) and ``weighted_step=False`` this is
    synchronous push-DIGing (Nedic, Olshevsky & Shi 2017) on a column-stochastic ``W``; the
    default weighted step is push-DIGing with the per-agent step :math:`\alpha v_i`, which
    stays stable when agents pause for long (see the module docstring).

    Delay assumptions: Tian, Sun & Scutari (ASY-SONATA, 2020) prove linear convergence of
    asynchronous gradient tracking over push-sum to the exact minimiser of a strongly
    convex, smooth objective when every agent updates at least once every :math:`T` time
    units, message delays are bounded by :math:`D`, and :math:`\alpha` is small enough for
    :math:`T` and :math:`D`; with unbounded delays no guarantee is known.

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.
    weighted_step : bool
        ``u -= lr * v * y`` (default) or Bluefog's / the paper's ``u -= lr * y``.

    References
    ----------
    A. Nedic, A. Olshevsky, W. Shi, "Achieving geometric convergence for distributed
    optimization over time-varying graphs", SIAM J. Optim. 27(4) (2017). Y. Tian, Y. Sun,
    G. Scutari, "Achieving linear convergence in distributed asynchronous multiagent
    optimization", IEEE TAC 65(12) (2020). Bluefog ``examples/pytorch_optimization.py``.
    """
    lr = check_positive_float(lr, "lr", where="async_push_diging")
    weighted = check_bool(weighted_step, "weighted_step", where="async_push_diging")

    def init(params, ctx) -> AsyncPushDIGingState:
        require_static(ctx.topology, "async_push_diging", "push_diging")
        require_weights(ctx.topology, "async_push_diging", column=True)
        u = as_float_tree(params)
        g = ctx.grad(u)
        v = jnp.ones((), jax.tree_util.tree_leaves(u)[0].dtype)
        wins = ctx.comm.win_create(None, (u, g, v), WINDOW, ctx.topology, zero_init=True)
        return AsyncPushDIGingState(u, g, v, g, wins, zero_count())

    def step(state: AsyncPushDIGingState, ctx) -> AsyncPushDIGingState:
        comm = ctx.comm
        A = np.asarray(ctx.topology.weights)
        keep = jnp.asarray(np.diag(A), state.v.dtype)[comm.rank()]
        alpha = lr * state.v if weighted else jnp.asarray(lr, state.v.dtype)
        u = jax.tree_util.tree_map(lambda a, b: a - alpha.astype(a.dtype) * b, state.u, state.y)
        wins = comm.win_accumulate(state.windows, (u, state.y, state.v), WINDOW,
                                   dst_weights=A - np.diag(np.diag(A)), self_weight=keep)
        (u, y, v), wins = comm.win_update_then_collect(wins, WINDOW)
        g = ctx.grad(jax.tree_util.tree_map(lambda a: a / v.astype(a.dtype), u))
        y = jax.tree_util.tree_map(lambda a, b, c: a + b - c, y, g, state.g)
        return AsyncPushDIGingState(u, y, v, g, wins, state.count + 1)

    def params(state):
        return jax.tree_util.tree_map(lambda a: a / state.v.astype(a.dtype), state.u)

    return Algorithm(init, step, params, "async_push_diging",
                     {"lr": lr} if weighted else {"lr": lr, "weighted_step": False})
