r"""Run metrics, computed from one agent's view with communicator collectives.

With :math:`\bar x = \frac1n\sum_i x_i` and :math:`f = \frac1n \sum_i f_i`:

* ``consensus_distance``  :math:`\sqrt{\tfrac1n \sum_i \|x_i - \bar x\|^2}`
* ``loss``                :math:`f(\bar x)`
* ``grad_norm``           :math:`\|\nabla f(\bar x)\| = \|\tfrac1n\sum_i \nabla f_i(\bar x)\|`
* ``distance_to_optimum`` :math:`\sqrt{\tfrac1n \sum_i \|x_i - x^\star\|^2}` (if known)
* ``relative_error``      ``distance_to_optimum`` / :math:`\|x^\star\|` (if known; the plain
  distance when :math:`x^\star = 0`)

Every agent obtains the same values, so the simulator and each MPI rank record identical
histories.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = ["agent_metrics"]


def agent_metrics(params, ctx) -> dict:
    """The metrics above for the stacked estimate whose row for this agent is ``params``."""
    comm = ctx.comm
    x, _ = ravel_pytree(params)
    xbar_tree = comm.allreduce(params)
    xbar, _ = ravel_pytree(xbar_tree)
    local = [jnp.sum((x - xbar) ** 2), ctx.loss(xbar_tree).astype(x.dtype)]
    optimum = ctx.problem.optimum
    if optimum is not None:
        xstar, _ = ravel_pytree(optimum)
        xstar = xstar.astype(x.dtype)
        local.append(jnp.sum((x - xstar) ** 2))
    reduced = comm.allreduce(jnp.stack(local))
    grad_bar, _ = ravel_pytree(comm.allreduce(ctx.grad(xbar_tree)))
    out = {
        "consensus_distance": jnp.sqrt(reduced[0]),
        "loss": reduced[1],
        "grad_norm": jnp.linalg.norm(grad_bar),
    }
    if optimum is not None:
        dist = jnp.sqrt(reduced[2])
        scale = jnp.linalg.norm(xstar)
        out["distance_to_optimum"] = dist
        out["relative_error"] = jnp.where(scale > 0, dist / jnp.where(scale > 0, scale, 1), dist)
    return out
