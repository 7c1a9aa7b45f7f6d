r"""AD-PSGD (asynchronous decentralized parallel SGD), written against the window ops.

Lian et al. (2018): whenever agent :math:`i` finishes a gradient, it averages its model with
one random neighbour :math:`j` and applies the gradient computed on the model it read:

.. math::

    g = \widetilde\nabla f_i(x_i),\qquad
    x_i,\ x_j \leftarrow \tfrac12 (x_i + x_j),\qquad x_i \leftarrow x_i - \alpha g.

The paper makes the pairwise average atomic (a lock on both models). With one-sided windows
the two halves of the average are applied by each side: agent :math:`i` reads the newest copy
of :math:`x_j` that has *arrived* (window ``"model"``, refreshed by ``win_put`` after every
step of :math:`j`), sets :math:`d = \tfrac12(\hat x_j - x_i)`, adds :math:`d` to its own model
and sends :math:`-d` to :math:`j` alone (``win_accumulate`` on window ``"delta"`` with a
one-hot per-round weight), which :math:`j` adds at its next step. The sum
:math:`\sum_i x_i` (plus deltas in flight) changes only by the gradient steps, as in the
paper; when :math:`\hat x_j` is stale the pair is not exactly averaged.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bluefog.algorithm import Algorithm
from bluefog.validation import check_positive_float

from ._common import as_float_tree, require_static, require_weights, tree_axpy, zero_count

__all__ = ["ADPSGDState", "ad_psgd"]


class ADPSGDState(NamedTuple):
    """State of :func:`ad_psgd` for one agent.

    Attributes
    ----------
    x : pytree, same shapes as the parameters
        The local model :math:`x_i`.
    windows : dict ``{"model": Window, "delta": Window}``
        Neighbours' published models; averaging corrections sent to this agent.
    count : int32 scalar
        This agent's own steps (also the key of its neighbour choice, ``fold_in(key, count)``).
    """

    x: Any
    windows: dict
    count: jax.Array


def ad_psgd(lr: float) -> Algorithm:
    r"""AD-PSGD over one-sided windows (see the module docstring for the update).

    Needs a static topology with symmetric edges (each neighbour :math:`j` is both read from
    and written to); the weights of ``W`` are not used, only its edges. The neighbour of each
    step is uniform over the real in-edges, drawn with ``fold_in(fold_in(key, count), 1)``.

    Delay assumptions: Lian et al. prove an :math:`O(1/\sqrt{K})` rate for non-convex
    objectives when the staleness of the gradient (updates by others between reading
    :math:`x_i` and writing it) is bounded by :math:`T`, the step size is small enough for
    :math:`T`, and the neighbour choices form a doubly stochastic expected mixing matrix.

    Parameters
    ----------
    lr : float
        Step size :math:`\alpha > 0`.

    References
    ----------
    X. Lian, W. Zhang, C. Zhang, J. Liu, "Asynchronous decentralized parallel stochastic
    gradient descent", ICML 2018.
    """
    lr = check_positive_float(lr, "lr", where="ad_psgd")

    def init(params, ctx) -> ADPSGDState:
        require_static(ctx.topology, "ad_psgd", "async_sgp")
        require_weights(ctx.topology, "ad_psgd", row=True, column=True, symmetric=True)
        x = as_float_tree(params)
        wins = ctx.comm.win_create(None, x, "model", ctx.topology)
        wins = ctx.comm.win_create(wins, x, "delta", ctx.topology, zero_init=True)
        return ADPSGDState(x, wins, zero_count())

    def step(state: ADPSGDState, ctx) -> ADPSGDState:
        comm = ctx.comm
        delta, wins = comm.win_update(state.windows, "delta", 0.0,
                                      _real_slots(comm, state.windows, "delta", _dtype(state.x)),
                                      reset=True)
        x = tree_axpy(1.0, delta, state.x)             # the halves neighbours sent us
        g = ctx.stochastic_grad(x, state.count)
        sources = comm.win_in_neighbors(wins, "model")
        key = jax.random.fold_in(jax.random.fold_in(ctx.key, state.count), 1)
        slot = jax.random.categorical(key, jnp.where(sources >= 0, 0.0, -jnp.inf))
        j = sources[slot]
        pick = (jnp.arange(sources.shape[0]) == slot).astype(_dtype(x))
        x_j, wins = comm.win_update(wins, "model", 0.0, pick)  # newest arrived x_j
        d = jax.tree_util.tree_map(lambda a, b: 0.5 * (a - b), x_j, x)
        to_j = (comm.win_out_neighbors(wins, "delta") == j).astype(_dtype(x))
        wins = comm.win_accumulate(wins, jax.tree_util.tree_map(jnp.negative, d), "delta",
                                   dst_weights=to_j, self_weight=0.0)
        x = tree_axpy(-lr, g, tree_axpy(1.0, d, x))
        wins = comm.win_put(wins, x, "model")
        return ADPSGDState(x, wins, state.count + 1)

    return Algorithm(init, step, lambda s: s.x, "ad_psgd", {"lr": lr})


def _dtype(x):
    return jax.tree_util.tree_leaves(x)[0].dtype


def _real_slots(comm, windows, name, dtype):
    # only through the Communicator: the window state is backend-specific (a simulator
    # Window pytree, or just a name under MPI)
    return (comm.win_in_neighbors(windows, name) >= 0).astype(dtype)
