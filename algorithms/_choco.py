r"""Methods for compressed communication: CHOCO-Gossip, CHOCO-SGD, and naive compressed DGD.

Sending :math:`\mathcal C(x)` instead of :math:`x` breaks plain gossip: for a biased
compressor (top-k) :math:`\sum_j W_{ij}\mathcal C(x_j)` loses mass every step, and even an
unbiased one injects noise that never decays. CHOCO (Koloskova, Stich & Jaggi, ICML 2019)
compresses *differences* against a public copy :math:`\hat x_j` that every neighbor of
:math:`j` tracks identically:

.. math::
    q_i = \mathcal C(x_i - \hat x_i),\qquad \hat x_i \leftarrow \hat x_i + q_i,\qquad
    s_i \leftarrow s_i + \sum_j W_{ij} q_j,\qquad
    x_i \leftarrow x_i + \gamma\,(s_i - \hat x_i),

where :math:`s_i = \sum_j W_{ij}\hat x_j` is maintained incrementally (one compressed
neighbor exchange per step). For a doubly stochastic :math:`W` the average of the
:math:`x_i` is preserved exactly at every step, and :math:`x_i - \hat x_i \to 0`, so the
compression error vanishes: CHOCO-Gossip converges linearly to the exact average for any
contractive compressor and a small enough consensus step :math:`\gamma`.

The keys: agent ``i`` compresses at step ``t`` with a key folded from ``ctx.key`` and ``t``,
so a run is deterministic and the simulator and MPI agree. The exchange goes through
``comm.neighbor_allreduce(..., compressor=C, key=k)``: only the payloads cross the wire.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from bluefog.algorithm import Algorithm
from bluefog.compression import Compressor, roundtrip
from bluefog.validation import check_bool, check_positive_float, check_real

from ._common import as_float_tree, require_weights, tree_add, tree_axpy, tree_sub, zero_count

__all__ = ["ChocoState", "choco_exchange", "choco_gossip", "choco_sgd", "CompressedDGDState", "compressed_dgd",
           "compressed_gossip"]


class ChocoState(NamedTuple):
    """State of :func:`choco_gossip` / :func:`choco_sgd` for one agent.

    Attributes
    ----------
    x : pytree
        The iterate :math:`x_i`.
    x_hat : pytree
        The public copy :math:`\\hat x_i` (identical on every neighbor of ``i``).
    s : pytree
        :math:`s_i = \\sum_j W_{ij}\\hat x_j`.
    count : int32 scalar
    """

    x: Any
    x_hat: Any
    s: Any
    count: jax.Array


def _check_compressor(compressor, where: str) -> Compressor:
    if not isinstance(compressor, Compressor):
        raise TypeError(
            f"{where}: compressor must be a bluefog.compression.Compressor (e.g. "
            f"bluefog.compression.top_k(0.1)); got {type(compressor).__name__}.")
    return compressor


def _step_key(ctx, count):
    return jax.random.fold_in(jax.random.fold_in(ctx.key, 0x43484F43), count)  # "CHOC"


def choco_exchange(target, x_hat, s, compressor, ctx, gamma, count, t):
    r"""One CHOCO communication for this agent: compress :math:`q = \text{target} - \hat x`,
    update the public copies and take the consensus step.

    Returns ``(x, x_hat, s)`` with :math:`\hat x^+ = \hat x + \hat q`,
    :math:`s^+ = s + \sum_j W_{ij}(t)\hat q_j` and
    :math:`x = \text{target} + \gamma (s^+ - \hat x^+)`; ``count`` seeds the compression key,
    ``t`` selects the pattern of a time-varying topology.
    """
    q = tree_sub(target, x_hat)
    key = _step_key(ctx, count)
    q_hat = roundtrip(compressor, q, key)  # what every neighbor reconstructs from the payload
    x_hat = tree_add(x_hat, q_hat)
    mixed = ctx.comm.neighbor_allreduce(q, ctx.topology, t, compressor=compressor, key=key)
    s = tree_add(s, mixed)
    return tree_axpy(gamma, tree_sub(s, x_hat), target), x_hat, s


def _choco_communicate(state: ChocoState, target, compressor, ctx, gamma):
    x, x_hat, s = choco_exchange(target, state.x_hat, state.s, compressor, ctx, gamma,
                                 state.count, state.count)
    return ChocoState(x, x_hat, s, state.count + 1)


def _choco_init(where: str):
    """``init`` of the CHOCO methods: a doubly stochastic ``W`` (checked before the first
    step), public copy and neighbor sum start at zero."""

    def init(params, ctx) -> ChocoState:
        require_weights(ctx.topology, where, row=True, column=True)
        x = as_float_tree(params)
        zeros = jax.tree_util.tree_map(lambda a: a * 0, x)
        return ChocoState(x, zeros, zeros, zero_count())

    return init


def choco_gossip(compressor: Compressor, gamma: float) -> Algorithm:
    r"""CHOCO-Gossip: average consensus with compressed messages (Algorithm 1 of Koloskova,
    Stich & Jaggi, ICML 2019); see the module docstring for the recursion.

    Parameters
    ----------
    compressor : Compressor
        E.g. ``top_k(0.1)``, ``qsgd(16)``, ``chain(top_k(0.05), blockwise(8))``.
    gamma : float in (0, 1]
        Consensus step :math:`\gamma`; the paper's theory takes
        :math:`\gamma = O(\delta\,(1-\rho))`; in practice a few tenths for
        :math:`\delta = 0.1` (see the tests for measured values).

    Returns
    -------
    Algorithm
        State :class:`ChocoState`; ``params(state) = state.x``. Needs a doubly stochastic
        ``W`` to reach the exact average.
    """
    compressor = _check_compressor(compressor, "choco_gossip")
    gamma = check_real(gamma, "gamma", low=0.0, high=1.0, low_open=True, where="choco_gossip",
                       example="choco_gossip(top_k(0.1), gamma=0.4)")

    init = _choco_init("choco_gossip")

    def step(state: ChocoState, ctx) -> ChocoState:
        return _choco_communicate(state, state.x, compressor, ctx, gamma)

    return Algorithm(init, step, lambda s: s.x, "choco_gossip",
                     {"compressor": compressor.name, "gamma": gamma})


def choco_sgd(lr: float, compressor: Compressor, gamma: float, *,
              overlap: bool = False) -> Algorithm:
    r"""CHOCO-SGD (Algorithm 2 of Koloskova, Stich & Jaggi, ICML 2019).

    .. math::
        x_i^{t+1/2} = x_i^t - \eta\, g_i(x_i^t),\quad q_i = \mathcal C(x_i^{t+1/2} - \hat x_i),
        \quad \hat x_i \mathrel{+}= q_i,\quad s_i \mathrel{+}= \textstyle\sum_j W_{ij} q_j,
        \quad x_i^{t+1} = x_i^{t+1/2} + \gamma (s_i - \hat x_i),

    with :math:`g_i` the (stochastic, if the problem has one) gradient at step ``t``. With a
    constant step it converges, like DGD, to an :math:`O(\eta)` neighborhood of the optimum,
    at the same rate as uncompressed DGD once :math:`\gamma` suits the compressor.

    Parameters
    ----------
    lr : float
        Step size :math:`\eta > 0`.
    compressor : Compressor
    gamma : float in (0, 1]
        Consensus step.
    overlap : bool
        Exchange the *current* iterate while the gradient is computed (adapt-while-combine
        order): :math:`q_i = \mathcal C(x_i^t - \hat x_i)`, then
        :math:`x_i^{t+1} = x_i^t + \gamma (s_i - \hat x_i) - \eta\, g_i(x_i^t)`. The
        exchange no longer depends on the gradient, so a backend is free to run them
        concurrently (the form of D-PSGD, Lian et al. NeurIPS 2017, with CHOCO's
        compressed gossip); the average still moves by :math:`-\eta\,\bar g` exactly.
        In the simulator it is exact arithmetic; no concurrency gain under MPI is
        claimed (none was measured).
    """
    lr = check_positive_float(lr, "lr", where="choco_sgd")
    overlap = check_bool(overlap, "overlap", where="choco_sgd")
    compressor = _check_compressor(compressor, "choco_sgd")
    gamma = check_real(gamma, "gamma", low=0.0, high=1.0, low_open=True, where="choco_sgd",
                       example="choco_sgd(0.05, top_k(0.1), gamma=0.4)")

    init = _choco_init("choco_sgd")

    def step(state: ChocoState, ctx) -> ChocoState:
        grad = ctx.stochastic_grad(state.x, state.count)
        if overlap:  # the exchange of x^t does not wait for the gradient
            new = _choco_communicate(state, state.x, compressor, ctx, gamma)
            return new._replace(x=tree_axpy(-lr, grad, new.x))
        return _choco_communicate(state, tree_axpy(-lr, grad, state.x), compressor, ctx, gamma)

    return Algorithm(init, step, lambda s: s.x, "choco_sgd",
                     {"lr": lr, "compressor": compressor.name, "gamma": gamma,
                      "overlap": overlap})


class CompressedDGDState(NamedTuple):
    """State of :func:`compressed_dgd`: the iterate ``x`` and the step counter."""

    x: Any
    count: jax.Array


def _compressed_init(where: str):
    """``init`` of the naive baselines: a row-stochastic ``W``, the iterate, the counter."""

    def init(params, ctx) -> CompressedDGDState:
        require_weights(ctx.topology, where, row=True)
        return CompressedDGDState(as_float_tree(params), zero_count())

    return init


def _compressed_mix(state: CompressedDGDState, compressor: Compressor, ctx):
    r""":math:`\sum_j W_{ij}\,\mathcal D(\mathcal C(x_j))` with this step's key."""
    return ctx.comm.neighbor_allreduce(state.x, ctx.topology, state.count,
                                       compressor=compressor, key=_step_key(ctx, state.count))


def compressed_dgd(lr: float, compressor: Compressor) -> Algorithm:
    r"""Naive compressed DGD, the baseline that shows why CHOCO is needed.

    .. math:: x_i^{t+1} = \sum_j W_{ij}\,\mathcal C(x_j^t) - \eta\, g_i(x_i^t)

    Every transmitted iterate (the agent's own term included) is compressed. A biased
    compressor loses mass at every step (top-k keeps ``k/d`` of it) and an unbiased one adds
    noise that does not decay, so the iterates stall far from the optimum or diverge.
    """
    lr = check_positive_float(lr, "lr", where="compressed_dgd")
    compressor = _check_compressor(compressor, "compressed_dgd")

    init = _compressed_init("compressed_dgd")

    def step(state: CompressedDGDState, ctx) -> CompressedDGDState:
        mixed = _compressed_mix(state, compressor, ctx)
        x = tree_axpy(-lr, ctx.stochastic_grad(state.x, state.count), mixed)
        return CompressedDGDState(x, state.count + 1)

    return Algorithm(init, step, lambda s: s.x, "compressed_dgd",
                     {"lr": lr, "compressor": compressor.name})


def compressed_gossip(compressor: Compressor) -> Algorithm:
    r"""Naive compressed gossip, the baseline of :func:`choco_gossip`:
    :math:`x_i^{t+1} = \sum_j W_{ij}\,\mathcal C(x_j^t)`.

    The compression error is injected afresh at every step and never decays: with int8
    rounding the agents stall at a disagreement of the order of the quantisation step; with
    top-k the average itself drifts away.
    """
    compressor = _check_compressor(compressor, "compressed_gossip")

    init = _compressed_init("compressed_gossip")

    def step(state: CompressedDGDState, ctx) -> CompressedDGDState:
        return CompressedDGDState(_compressed_mix(state, compressor, ctx), state.count + 1)

    return Algorithm(init, step, lambda s: s.x, "compressed_gossip",
                     {"compressor": compressor.name})
