r"""BEER: compressed gradient tracking that converges exactly with biased compressors.

CHOCO-SGD (:mod:`algorithms._choco`) removes the compression error from the *mixing*, but
like DGD it still stops in an :math:`O(\eta)` neighborhood of the optimum when the local
objectives differ. BEER (Zhao, Li, Richtarik & Chi, 2022) combines gradient tracking with
CHOCO-style public copies of *both* the iterate and the tracker. With :math:`X, V` the
stacked iterates and trackers, :math:`H, G` their public copies and :math:`\mathcal C` any
contractive compressor (top-k, int8 blocks, scaled sign), one step is (their Algorithm 1):

.. math::
    X^{t+1} &= X^t + \gamma\,(W - I) H^t - \eta\, V^t, \\
    H^{t+1} &= H^t + \mathcal C(X^{t+1} - H^t), \\
    V^{t+1} &= V^t + \gamma\,(W - I) G^t + \nabla F(X^{t+1}) - \nabla F(X^t), \\
    G^{t+1} &= G^t + \mathcal C(V^{t+1} - G^t).

For a doubly stochastic :math:`W`, :math:`\mathbf 1^\top (W - I) = 0`, so the average of
the trackers equals the average gradient at every step; at a fixed point the compressed
differences vanish, :math:`(W - I) H = 0` forces consensus and :math:`V = 0` forces
:math:`\sum_i \nabla f_i(\bar x) = 0`: the exact minimiser, for biased compressors too,
at a linear rate on strongly convex problems (their Theorem 2) and :math:`O(1/T)` in
:math:`\|\nabla f\|^2` on nonconvex ones.

Each agent keeps :math:`s^h_i = \sum_j W_{ij} h_j` and :math:`s^g_i = \sum_j W_{ij} g_j`
incrementally, so a step costs **one** compressed neighbor exchange carrying both
differences (one message per schedule round): only the payloads cross the wire.
The public copies start at zero.

Reference: H. Zhao, B. Li, Z. Li, P. Richtarik, Y. Chi, "BEER: Fast O(1/T) rate for
decentralized nonconvex optimization with communication compression", NeurIPS 2022
(arXiv:2201.13320).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from bluefog.algorithm import Algorithm
from bluefog.compression import Compressor, roundtrip
from bluefog.validation import check_positive_float, check_real

from ._common import as_float_tree, require_weights, tree_add, tree_axpy, tree_sub, zero_count

__all__ = ["BeerState", "beer"]


class BeerState(NamedTuple):
    """State of :func:`beer` for one agent (every pytree shaped like the parameters).

    Attributes
    ----------
    x : pytree
        The iterate :math:`x_i`.
    v : pytree
        The gradient tracker :math:`v_i` (:math:`v_i^0 = \\nabla f_i(x_i^0)`).
    h, g : pytree
        The public copies :math:`h_i` of ``x`` and :math:`g_i` of ``v`` (identical on every
        neighbor of ``i``; zero at the start).
    sh, sg : pytree
        :math:`\\sum_j W_{ij} h_j` and :math:`\\sum_j W_{ij} g_j`.
    grad : pytree
        The last local gradient :math:`\\nabla f_i(x_i)`.
    count : int32 scalar
    """

    x: Any
    v: Any
    h: Any
    g: Any
    sh: Any
    sg: Any
    grad: Any
    count: jax.Array


def _step_key(ctx, count):
    return jax.random.fold_in(jax.random.fold_in(ctx.key, 0x42454552), count)  # "BEER"


def beer(lr: float, compressor: Compressor, gamma: float) -> Algorithm:
    r"""BEER (Zhao et al. 2022, Algorithm 1): gradient tracking with compressed messages.

    See the module docstring for the recursion. Per agent and step:
    :math:`x^+ = x + \gamma(s^h - h) - \eta v`,
    :math:`v^+ = v + \gamma(s^g - g) + \nabla f_i(x^+) - \nabla f_i(x)`, then one compressed
    exchange of :math:`(x^+ - h,\ v^+ - g)` updates :math:`h, g, s^h, s^g`.

    Parameters
    ----------
    lr : float
        Step size :math:`\eta > 0` (the paper's theory: :math:`O(\gamma(1-\rho)/L)`; a
        constant step, no decay, reaches the exact optimum).
    compressor : Compressor
        Any contractive compressor, biased ones included (``top_k(0.1)``,
        ``blockwise(8)``, ``scaled_sign()``).
    gamma : float in (0, 1]
        Consensus step :math:`\gamma` (smaller for sparser compressors, as in CHOCO).

    Returns
    -------
    Algorithm
        State :class:`BeerState`; ``params(state) = state.x``. Needs a doubly stochastic
        ``W`` (the tracker keeps the average gradient only then); time-varying topologies
        are accepted (one pattern per step).

    Notes
    -----
    The gradient is ``ctx.stochastic_grad`` (the exact one for problems without a minibatch
    loss); with stochastic gradients BEER, like gradient tracking, converges to a
    neighborhood whose size scales with the gradient noise.
    """
    lr = check_positive_float(lr, "lr", where="beer")
    if not isinstance(compressor, Compressor):
        raise TypeError(f"beer: compressor must be a bluefog.compression.Compressor (e.g. "
                        f"bluefog.compression.top_k(0.1)); got {type(compressor).__name__}.")
    gamma = check_real(gamma, "gamma", low=0.0, high=1.0, low_open=True, where="beer",
                       example="beer(0.05, top_k(0.1), gamma=0.2)")

    def init(params, ctx) -> BeerState:
        require_weights(ctx.topology, "beer", row=True, column=True)
        x = as_float_tree(params)
        grad = ctx.stochastic_grad(x, zero_count())
        zeros = jax.tree_util.tree_map(lambda a: a * 0, x)
        return BeerState(x, grad, zeros, zeros, zeros, zeros, grad, zero_count())

    def step(state: BeerState, ctx) -> BeerState:
        t = state.count
        x = tree_axpy(-lr, state.v, tree_axpy(gamma, tree_sub(state.sh, state.h), state.x))
        grad = ctx.stochastic_grad(x, t + 1)
        v = tree_add(tree_axpy(gamma, tree_sub(state.sg, state.g), state.v),
                     tree_sub(grad, state.grad))
        q = (tree_sub(x, state.h), tree_sub(v, state.g))
        key = _step_key(ctx, t)
        qh, qg = roundtrip(compressor, q, key)  # what every neighbor reconstructs
        mh, mg = ctx.comm.neighbor_allreduce(q, ctx.topology, t, compressor=compressor, key=key)
        return BeerState(x, v, tree_add(state.h, qh), tree_add(state.g, qg),
                         tree_add(state.sh, mh), tree_add(state.sg, mg), grad, t + 1)

    return Algorithm(init, step, lambda s: s.x, "beer",
                     {"lr": lr, "compressor": compressor.name, "gamma": gamma})
