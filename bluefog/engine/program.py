r"""The compiled program of one dispatch, written for one agent.

A dispatch runs ``records`` chunks of ``chunk_steps`` algorithm steps inside one
``lax.scan``; after each chunk it evaluates the metrics and a finiteness check with
communicator collectives, so every agent (every MPI rank) holds the same record:

.. math::
    b_i = \mathbb 1[\exists\ \text{non-finite entry in agent } i\text{'s state}],\qquad
    m_i = \mathbb 1[\exists\ \text{non-finite metric on agent } i],

gathered with one ``allgather`` into :math:`(b_j, m_j)_{j=1}^n`. The record is *bad* when
any entry is 1; the reported agent is the smallest :math:`j` with :math:`b_j = 1`. With
``stop_on_nonfinite`` the remaining chunks of the dispatch are skipped (``lax.cond`` on a
predicate declared uniform with :meth:`~bluefog.comm.Communicator.uniform`, so every agent
and every rank takes the same branch and no collective is left unmatched).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["record", "make_segment"]


def _any_nonfinite(tree) -> jax.Array:
    flags = [jnp.any(~jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)
             if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)]
    return jnp.any(jnp.stack(flags)) if flags else jnp.zeros((), bool)


def record(algorithm, metrics_fn: Callable, state, ctx):
    """``(metrics, bad, agent)`` of ``state`` for this agent (identical on every agent)."""
    metrics = metrics_fn(algorithm.params(state), ctx)
    local = jnp.stack([_any_nonfinite(state), _any_nonfinite(metrics)]).astype(jnp.float32)
    flags = ctx.comm.allgather(local)  # (n, 2)
    bad = jnp.any(flags > 0)
    state_bad = flags[:, 0] > 0
    agent = jnp.where(jnp.any(state_bad), jnp.argmax(state_bad), -1).astype(jnp.int32)
    return metrics, bad, agent


def make_segment(algorithm, metrics_fn: Callable, chunk_steps: int, records: int,
                 stop_on_nonfinite: bool) -> Callable:
    """Per-agent function ``(state, ctx) -> (state, (metrics, bad, agent))``, each output
    stacked along a leading axis of length ``records``."""

    def advance(state, ctx):
        return lax.fori_loop(0, chunk_steps, lambda _, s: algorithm.step(s, ctx), state)

    def chunk(carry, ctx):
        state, stopped = carry
        if stop_on_nonfinite:
            state = lax.cond(ctx.comm.uniform(stopped), lambda s: s,
                             lambda s: advance(s, ctx), state)
        else:
            state = advance(state, ctx)
        out = record(algorithm, metrics_fn, state, ctx)
        return (state, stopped | out[1]), out

    def segment(state, ctx):
        (state, _), outs = lax.scan(lambda c, _: chunk(c, ctx), (state, jnp.zeros((), bool)),
                                    None, length=records)
        return state, outs

    return segment
