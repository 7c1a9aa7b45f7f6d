r"""Stochastic methods: decentralized (local) SGD with momentum, and the centralized
all-reduce baseline."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
from jax import lax

from bluefog.algorithm import Algorithm
from bluefog.topology.validation import check_positive_int

from ._common import as_float_tree, check_lr, check_unit_interval, require_weights, zero_count

__all__ = ["SGDState", "dsgd", "gradient_allreduce"]


class SGDState(NamedTuple):
    """State of :func:`dsgd` and :func:`gradient_allreduce` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The iterate :math:`x_i^{(k)}`.
    momentum : pytree, same shapes as the parameters
        The heavy-ball buffer :math:`m_i^{(k)}` (zeros at ``k = 0``; stays zero when
        ``momentum=0``).
    count : int32 scalar
        Number of gradient steps taken.
    """

    x: Any
    momentum: Any
    count: jax.Array


def _init(params) -> SGDState:
    x = as_float_tree(params)
    return SGDState(x, jax.tree_util.tree_map(lambda v: v * 0, x), zero_count())


def _heavy_ball(state: SGDState, g, lr: float, beta: float):
    m = jax.tree_util.tree_map(lambda m_, g_: beta * m_ + g_, state.momentum, g)
    x = jax.tree_util.tree_map(lambda x_, m_: x_ - lr * m_, state.x, m)
    return x, m


def dsgd(lr: float, momentum: float = 0.0, steps_per_communication: int = 1) -> Algorithm:
    r"""Decentralized SGD (adapt-then-combine) with heavy-ball momentum and local steps.

    With :math:`g_i^{(k)}` a stochastic gradient of :math:`f_i` at :math:`x_i^{(k)}`
    (:meth:`bluefog.AgentContext.stochastic_grad`, drawn with ``fold_in(key, k)``):

    .. math::

        m_i^{(k+1)} &= \beta m_i^{(k)} + g_i^{(k)}, \qquad
        x_i^{(k+\frac12)} = x_i^{(k)} - \alpha\, m_i^{(k+1)} \\
        x_i^{(k+1)} &= \begin{cases} \sum_j W_{ij}(r)\, x_j^{(k+\frac12)} &
        \text{if } (k+1) \bmod J = 0,\ r = \lfloor k / J \rfloor \\
        x_i^{(k+\frac12)} & \text{otherwise (a local step)} \end{cases}

    ``J = 1`` is D-PSGD (Lian et al. 2017) in its ATC form; ``J > 1`` is local SGD with
    gossip averaging every ``J`` steps, covered by the unified analysis of Koloskova et al.
    (2020) (mixing matrix ``I`` on local steps). A time-varying topology advances once per
    communication round ``r``. The momentum buffer stays local. The choice between a local
    step and a communication step is a ``lax.cond`` on the (rank-independent) step counter,
    declared uniform with ``comm.uniform`` so that in both backends only every ``J``-th step
    exchanges messages (under ``vmap`` a batched predicate would run both branches).

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.
    momentum : float in [0, 1)
        Heavy-ball coefficient :math:`\beta`.
    steps_per_communication : int >= 1
        :math:`J`, local steps per communication round.

    References
    ----------
    X. Lian, C. Zhang, H. Zhang, C.-J. Hsieh, W. Zhang, J. Liu, "Can decentralized algorithms
    outperform centralized algorithms?", NeurIPS 2017. A. Koloskova, N. Loizou, S. Boreiri,
    M. Jaggi, S. U. Stich, "A unified theory of decentralized SGD with changing topology and
    local updates", ICML 2020.
    """
    lr = check_lr(lr, algorithm="dsgd")
    beta = check_unit_interval(momentum, "momentum", "dsgd")
    J = check_positive_int(steps_per_communication, "steps_per_communication")

    def init(params, ctx) -> SGDState:
        require_weights(ctx.topology, "dsgd", row=True)
        return _init(params)

    def step(state: SGDState, ctx) -> SGDState:
        g = ctx.stochastic_grad(state.x, state.count)
        half, m = _heavy_ball(state, g, lr, beta)
        if J == 1:
            x = ctx.comm.neighbor_allreduce(half, ctx.topology, state.count)
        else:
            x = lax.cond(ctx.comm.uniform((state.count + 1) % J == 0),
                         lambda h: ctx.comm.neighbor_allreduce(h, ctx.topology, state.count // J),
                         lambda h: h, half)
        return SGDState(x, m, state.count + 1)

    config = {"lr": lr, "momentum": beta, "steps_per_communication": J}
    return Algorithm(init, step, lambda s: s.x, "dsgd", config)


def gradient_allreduce(lr: float, momentum: float = 0.0, stochastic: bool = True) -> Algorithm:
    r"""Centralized (Horovod-style) data-parallel SGD: average the gradients of all agents.

    .. math::

        \bar g^{(k)} = \frac1n \sum_j g_j^{(k)}, \qquad
        m^{(k+1)} = \beta m^{(k)} + \bar g^{(k)}, \qquad x^{(k+1)} = x^{(k)} - \alpha m^{(k+1)},

    one ``allreduce`` per step. Starting from the same point, all agents stay identical; with
    exact gradients (``stochastic=False``) this is gradient descent on
    :math:`f = \frac1n\sum_i f_i`, the reference that decentralized methods are compared with.

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.
    momentum : float in [0, 1)
    stochastic : bool
        Use :meth:`bluefog.AgentContext.stochastic_grad` (default) or the exact gradient.

    References
    ----------
    A. Sergeev and M. Del Balso, "Horovod: fast and easy distributed deep learning in
    TensorFlow", arXiv:1802.05799 (2018). P. Goyal et al., "Accurate, large minibatch SGD",
    arXiv:1706.02677 (2017).
    """
    lr = check_lr(lr, algorithm="gradient_allreduce")
    beta = check_unit_interval(momentum, "momentum", "gradient_allreduce")
    if not isinstance(stochastic, bool):
        raise TypeError(f"gradient_allreduce: stochastic must be a bool; got {stochastic!r}.")

    def init(params, ctx) -> SGDState:
        return _init(params)

    def step(state: SGDState, ctx) -> SGDState:
        g = ctx.stochastic_grad(state.x, state.count) if stochastic else ctx.grad(state.x)
        x, m = _heavy_ball(state, ctx.comm.allreduce(g), lr, beta)
        return SGDState(x, m, state.count + 1)

    config = {"lr": lr, "momentum": beta, "stochastic": stochastic}
    return Algorithm(init, step, lambda s: s.x, "gradient_allreduce", config)
