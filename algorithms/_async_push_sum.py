r"""Asynchronous push-sum and stochastic gradient push, written against the window ops.

Both keep the push-sum pair :math:`(x_i, w_i)` in one window (``"push_sum"``), so value and
weight always travel in one message, as Bluefog's asynchronous push-sum example does with its
extended tensor ``x_ext``. One step of agent :math:`j` (whenever its clock says its step is
done) splits its mass with the column-stochastic :math:`A` (:math:`\sum_i A_{ij} = 1`):

.. math::

    \text{send } A_{ij}(x_j, w_j) \text{ to every out-neighbour } i
    \ (\texttt{win\_accumulate}),\qquad
    (x_j, w_j) \leftarrow A_{jj}(x_j, w_j) + \sum_{\text{arrived}} (\text{mass received})
    \ (\texttt{win\_update\_then\_collect}).

Mass in flight is neither lost nor counted twice, so :math:`\sum_i w_i + (\text{in flight})
= n` and :math:`\sum_i x_i + (\text{in flight}) = \sum_i x_i^{(0)}` at every time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.algorithm import Algorithm
from bluefog.comm import no_handle
from bluefog.validation import check_bool, check_positive_float

from ._common import as_float_tree, require_static, require_weights, zero_count

__all__ = ["AsyncPushSumState", "OverlapSGPState", "async_push_sum", "async_sgp"]

WINDOW = "push_sum"


class AsyncPushSumState(NamedTuple):
    """State of :func:`async_push_sum` and :func:`async_sgp` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The mass-weighted value :math:`x_i` (the estimate is :math:`x_i / w_i`).
    w : scalar, dtype of the first parameter leaf
        The push-sum weight :math:`w_i` (starts at 1).
    windows : dict ``{"push_sum": Window}``
        The window holding :math:`(x_i, w_i)` and the mass received from in-neighbours.
    count : int32 scalar
        This agent's own steps.
    """

    x: Any
    w: jax.Array
    windows: dict
    count: jax.Array


def _init(params, ctx, name: str) -> AsyncPushSumState:
    require_static(ctx.topology, name, "push_sum")
    require_weights(ctx.topology, name, column=True)
    x = as_float_tree(params)
    w = jnp.ones((), jax.tree_util.tree_leaves(x)[0].dtype)
    windows = ctx.comm.win_create(None, (x, w), WINDOW, ctx.topology, zero_init=True)
    return AsyncPushSumState(x, w, windows, zero_count())


def _mix(state: AsyncPushSumState, x, ctx) -> AsyncPushSumState:
    """Push shares of ``(x, w)`` along the out-edges, keep ``A_jj`` of it, collect."""
    comm = ctx.comm
    A = np.asarray(ctx.topology.weights)
    off = A - np.diag(np.diag(A))
    keep = jnp.asarray(np.diag(A), state.w.dtype)[comm.rank()]
    windows = comm.win_accumulate(state.windows, (x, state.w), WINDOW, dst_weights=off,
                                  self_weight=keep)
    (x, w), windows = comm.win_update_then_collect(windows, WINDOW)
    return AsyncPushSumState(x, w, windows, state.count + 1)


def _ratio(state: AsyncPushSumState):
    return jax.tree_util.tree_map(lambda v: v / state.w.astype(v.dtype), state.x)


def async_push_sum() -> Algorithm:
    r"""Asynchronous push-sum (ratio consensus) over one-sided windows.

    Each agent, at each of its own steps, pushes :math:`A_{ij}(x_j, w_j)` to its
    out-neighbours with ``win_accumulate``, keeps :math:`A_{jj}(x_j, w_j)` and adds whatever
    mass has arrived (``win_update_then_collect``); the estimate is :math:`z_i = x_i/w_i`.
    With the immediate clock (every agent steps, no delay) this is exactly synchronous
    push-sum, :math:`(x, w)^{+} = A(x, w)`.

    Delay assumptions: convergence of :math:`z_i` to the exact average holds when every agent
    steps infinitely often and message delays are bounded (Kempe et al. 2003; Nedic &
    Olshevsky 2015 for bounded delays, via the augmented graph in which in-flight mass sits
    in virtual nodes). Mass is conserved exactly at every time.

    Returns
    -------
    Algorithm
        State :class:`AsyncPushSumState`; ``params(state) = x / w``.

    References
    ----------
    D. Kempe, A. Dobra, J. Gehrke, "Gossip-based computation of aggregate information",
    FOCS 2003; Bluefog's ``examples/pytorch_average_consensus.py --asynchronous-mode``
    (``win_accumulate`` + ``win_update_then_collect``).
    """

    def step(state, ctx):
        return _mix(state, state.x, ctx)

    return Algorithm(lambda p, ctx: _init(p, ctx, "async_push_sum"), step, _ratio,
                     "async_push_sum", {})


def async_sgp(lr: float, overlap: bool = False) -> Algorithm:
    r"""Asynchronous stochastic gradient push (SGP, push-sum SGD) over one-sided windows.

    At each of its own steps agent :math:`j` takes a local (stochastic) gradient step at its
    de-biased estimate and then mixes by push-sum:

    .. math::

        z_j = x_j / w_j,\qquad x_j \leftarrow x_j - \alpha\, \widetilde\nabla f_j(z_j),
        \qquad (x, w) \leftarrow \text{push-sum mixing (see the module docstring)}.

    With the immediate clock this is synchronous SGP (Assran et al. 2019, Algorithm 1).

    Delay assumptions: Assran & Rabbat (2020) prove convergence of asynchronous gradient push
    for bounded message delays and bounded inter-update times (every agent updates at least
    once every :math:`T` time units), with a step size small enough for the delay bound;
    with heterogeneous update rates the limit weights each :math:`f_j` by how often agent
    :math:`j` steps unless the step size is corrected for it.

    ``overlap=True`` is the paper's overlap variant (1-OSGP, Algorithm 3 with
    :math:`\tau = 1`): the mass of step :math:`k` is sent with a non-blocking
    ``win_accumulate_nonblocking`` and added by the receivers at their *next* step, so the
    transfer runs while the next gradient is computed (see :func:`_overlap_step`).

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.
    overlap : bool
        One-step-stale overlap of communication and computation (default ``False``).

    References
    ----------
    M. Assran, N. Loizou, N. Ballas, M. Rabbat, "Stochastic gradient push for distributed
    deep learning", ICML 2019. M. Assran, M. Rabbat, "Asynchronous gradient push", IEEE TAC
    66(1) (2021).
    """
    lr = check_positive_float(lr, "lr", where="async_sgp")
    if check_bool(overlap, "overlap", where="async_sgp"):
        return Algorithm(_overlap_init, lambda s, ctx: _overlap_step(s, ctx, lr), _ratio,
                         "async_sgp", {"lr": lr, "overlap": True})

    def step(state, ctx):
        z = _ratio(state)
        g = ctx.stochastic_grad(z, state.count)
        x = jax.tree_util.tree_map(lambda v, d: v - jnp.asarray(lr, v.dtype) * d, state.x, g)
        return _mix(state, x, ctx)

    return Algorithm(lambda p, ctx: _init(p, ctx, "async_sgp"), step, _ratio, "async_sgp",
                     {"lr": lr})


class OverlapSGPState(NamedTuple):
    """State of ``async_sgp(lr, overlap=True)`` for one agent.

    Attributes
    ----------
    x, w, windows, count
        As in :class:`AsyncPushSumState`.
    handle : bluefog.comm.WinHandle
        The non-blocking send of the previous step (waited for before the next send).
    """

    x: Any
    w: jax.Array
    windows: dict
    count: jax.Array
    handle: Any


def _overlap_init(params, ctx) -> OverlapSGPState:
    s = _init(params, ctx, "async_sgp")
    return OverlapSGPState(s.x, s.w, s.windows, s.count, no_handle(WINDOW))


def _overlap_step(state: OverlapSGPState, ctx, lr: float) -> OverlapSGPState:
    r"""One step of 1-OSGP (Assran et al. 2019, Algorithm 3, :math:`\tau = 1`), agent :math:`j`:

    .. math::

        x_j^{k+\frac12} = x_j^k - \alpha \widetilde\nabla f_j(x_j^k / w_j^k),\qquad
        x_j^{k+1} = A_{jj} x_j^{k+\frac12} + \sum_i A_{ji} x_i^{k-\frac12},\qquad
        w_j^{k+1} = A_{jj} w_j^k + \sum_i A_{ji} w_i^{k-1},

    the neighbours' shares of step :math:`k - 1` being what arrived in the window since the
    last collect (exactly those under the immediate clock; whatever has arrived under real or
    virtual asynchrony). Order: gradient (overlapping the previous send), collect, wait for
    the previous send, start the non-blocking send of :math:`A_{ij}(x_j^{k+1/2}, w_j^k)`.
    Mass in flight is never lost, so
    :math:`\sum_j x_j^{k+1} + \text{(in flight)} = \sum_j x_j^{k+1/2}`.
    """
    comm = ctx.comm
    A = np.asarray(ctx.topology.weights)
    dtype = state.w.dtype
    keep = jnp.asarray(np.diag(A), dtype)[comm.rank()]
    g = ctx.stochastic_grad(_ratio(state), state.count)
    x_half = jax.tree_util.tree_map(lambda v, d: v - jnp.asarray(lr, v.dtype) * d, state.x, g)
    real = (comm.win_in_neighbors(state.windows, WINDOW) >= 0).astype(dtype)
    (mx, mw), wins = comm.win_update(state.windows, WINDOW, 0.0, real, reset=True)
    wins = comm.win_wait(wins, state.handle)
    handle, wins = comm.win_accumulate_nonblocking(wins, (x_half, state.w), WINDOW,
                                                   dst_weights=A - np.diag(np.diag(A)),
                                                   self_weight=keep)
    x = jax.tree_util.tree_map(lambda h, m: keep.astype(h.dtype) * h + m, x_half, mx)
    return OverlapSGPState(x, keep * state.w + mw, wins, state.count + 1, handle)
