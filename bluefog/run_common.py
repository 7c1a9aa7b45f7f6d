"""What the two runners (``bluefog_sim.run`` and ``bluefog_dist.run``) share.

Input validation, the per-agent PRNG key and the default recording interval are defined once
here, so that the simulator and the MPI backend cannot drift apart: agent ``i`` of a
simulation and MPI rank ``i`` see the same key, the same defaults and the same errors.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .algorithm import Algorithm, Problem
from .metrics import agent_metrics
from .topology import DynamicTopology, Topology
from .topology.validation import check_positive_int

__all__ = ["check_run_inputs", "agent_key", "default_record_every", "resolve_metrics",
           "check_stacked_x0"]


def check_run_inputs(algorithm, problem, topology, seed) -> None:
    """Validate the positional inputs of a runner (types, sizes, seed).

    Raises
    ------
    TypeError, ValueError
        Naming the argument, what was expected, what was received and the fix.
    """
    if not isinstance(algorithm, Algorithm):
        raise TypeError(
            f"algorithm must be a bluefog Algorithm (e.g. algorithms.dgd(lr=0.1)); got "
            f"{type(algorithm).__name__}."
        )
    if not isinstance(problem, Problem):
        raise TypeError(
            f"problem must be a bluefog Problem (e.g. algorithms.problems.quadratic(b)); got "
            f"{type(problem).__name__}."
        )
    if not isinstance(topology, (Topology, DynamicTopology)):
        raise TypeError(
            f"topology must be a Topology or DynamicTopology; got {type(topology).__name__}. "
            "Build one with bluefog.topology.exponential_graph(n)."
        )
    if topology.size != problem.size:
        raise ValueError(
            f"topology.size must equal the number of agents in problem.data; got topology.size="
            f"{topology.size}, problem.size={problem.size}. Build the topology for "
            f"{problem.size} agents or split the data across {topology.size}."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int; got {seed!r}.")


def agent_key(seed: int, agent) -> jax.Array:
    """Agent ``agent``'s PRNG key, :math:`\\mathrm{fold\\_in}(\\mathrm{PRNGKey}(seed), i)`.

    The simulator derives all keys at once with ``vmap`` over this function and MPI rank
    ``i`` derives key ``i`` alone, so stochastic runs match across backends.
    """
    return jax.random.fold_in(jax.random.PRNGKey(seed), jnp.asarray(agent, jnp.uint32))


def default_record_every(steps, record_every):
    """``record_every`` if given, else ``max(1, steps // 100)`` (about 100 records)."""
    if record_every is None:
        return max(1, check_positive_int(steps, "steps") // 100)
    return record_every


def resolve_metrics(metrics) -> Callable:
    """The metric function ``(params, ctx) -> dict`` (default :func:`agent_metrics`)."""
    metrics_fn = agent_metrics if metrics is None else metrics
    if not callable(metrics_fn):
        raise TypeError(
            f"metrics must be a callable (params, ctx) -> dict; got {type(metrics).__name__}.")
    return metrics_fn


def check_stacked_x0(x0, n: int, state) -> None:
    """Check that ``x0`` (if given) is stacked along a leading agent axis of size ``n`` and
    that it is not combined with ``state``."""
    if state is not None and x0 is not None:
        raise ValueError("pass either x0 (a fresh start) or state (a continuation), not both.")
    if x0 is None:
        return
    for leaf in jax.tree_util.tree_leaves(x0):
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n:
            raise ValueError(
                f"x0 must be stacked with a leading agent axis of size {n}; got a leaf of "
                f"shape {jnp.shape(leaf)}. Omit x0 to start every agent at "
                "problem.init_params."
            )
