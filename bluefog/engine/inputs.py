"""Validation of a run's inputs: every argument of ``bluefog_sim.run`` / ``bluefog_dist.run``
is checked here, once, with the rules of :mod:`bluefog.validation`.

Both runners call :func:`check_run_arguments` before anything is compiled; the MPI backend
calls it inside its start-up agreement so that a bad argument on one rank raises on every
rank instead of leaving the others waiting.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithm import Algorithm, Problem
from ..metrics import agent_metrics
from ..topology import DynamicTopology, Topology
from ..validation import (check_callable, check_choice, check_optional_bool, check_positive_int,
                          check_seed, check_steps)

__all__ = ["RunArguments", "check_run_arguments", "agent_key", "describe_tree", "NONFINITE_MODES"]

#: Accepted values of ``on_nonfinite``.
NONFINITE_MODES = ("raise", "continue")


class RunArguments(NamedTuple):
    """The validated, defaulted arguments of a run."""

    steps: int
    seed: int
    record_every: int
    segment_every: int | None
    metrics: Callable
    progress: bool | None
    on_segment: Callable | None
    on_nonfinite: str


def agent_key(seed: int, agent) -> jax.Array:
    """Agent ``agent``'s PRNG key, :math:`\\mathrm{fold\\_in}(\\mathrm{PRNGKey}(seed), i)`.

    The simulator derives all keys at once with ``vmap`` over this function and MPI rank
    ``i`` derives key ``i`` alone, so stochastic runs match across backends.
    """
    return jax.random.fold_in(jax.random.PRNGKey(seed), jnp.asarray(agent, jnp.uint32))


def describe_tree(tree) -> str:
    """``shape/dtype`` summary of a pytree, e.g. ``"[(3,):float32, (2, 2):float32]"`` (the
    MPI start-up agreement compares it across ranks)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return "[" + ", ".join(f"{tuple(np.shape(x))}:{getattr(x, 'dtype', None) or np.asarray(x).dtype}"
                           for x in leaves) + "]"


def _check_objects(algorithm, problem, topology) -> None:
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


def _check_record_every(record_every, steps: int) -> int:
    if record_every is None:
        return max(1, steps // 100)
    record_every = check_positive_int(record_every, "record_every")
    if record_every > steps:
        raise ValueError(
            f"record_every must be <= steps; got record_every={record_every}, steps={steps}. "
            f"Use record_every={steps} to record only the final step."
        )
    return record_every


def _check_segment_every(segment_every, record_every: int, steps: int) -> int | None:
    if segment_every is None:
        return None
    segment_every = check_positive_int(segment_every, "segment_every")
    if segment_every % record_every:
        raise ValueError(
            f"segment_every must be a multiple of record_every (segment ends are recorded); got "
            f"segment_every={segment_every}, record_every={record_every}. Use "
            f"segment_every={max(record_every, segment_every - segment_every % record_every)} or "
            f"a record_every that divides {segment_every}."
        )
    return min(segment_every, steps)


def check_stacked(tree, n: int, name: str, fix: str) -> None:
    """Check that every leaf of ``tree`` has a leading agent axis of size ``n``."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n:
            raise ValueError(
                f"{name} must be stacked with a leading agent axis of size {n}; got a leaf of "
                f"shape {jnp.shape(leaf)}. {fix}"
            )


def check_state_matches(state, expected, name: str = "state") -> None:
    """Check that a continuation ``state`` has the structure, shapes and dtypes that
    ``algorithm.init`` produces (``expected``: a pytree of ``ShapeDtypeStruct``)."""
    got_def = jax.tree_util.tree_structure(state)
    want_def = jax.tree_util.tree_structure(expected)
    if got_def != want_def:
        raise ValueError(
            f"{name} does not have the structure of this algorithm's state: expected {want_def}, "
            f"got {got_def}. Pass the state of a run of the same algorithm (result.state), or "
            "omit state to start afresh."
        )
    for g, w in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(expected)):
        if tuple(np.shape(g)) != tuple(w.shape) or np.dtype(getattr(g, "dtype", np.asarray(g).dtype)) != w.dtype:
            raise ValueError(
                f"{name} has a leaf of shape {tuple(np.shape(g))} and dtype "
                f"{getattr(g, 'dtype', None)} where this algorithm, topology and problem give "
                f"{tuple(w.shape)} and {w.dtype} (a different number of agents or parameters?). "
                "Pass the state of a run with the same configuration."
            )


def check_run_arguments(algorithm, problem, topology, steps, *, seed, x0, state,
                        record_every, segment_every, metrics, progress, on_segment,
                        on_nonfinite) -> RunArguments:
    """Validate and default every argument of a run (see :func:`bluefog_sim.run`).

    Raises
    ------
    TypeError, ValueError
        Naming the argument, what was expected, what was received and the fix.
    """
    _check_objects(algorithm, problem, topology)
    steps = check_steps(steps)
    seed = check_seed(seed)
    record_every = _check_record_every(record_every, steps)
    segment_every = _check_segment_every(segment_every, record_every, steps)
    metrics_fn = agent_metrics if metrics is None else check_callable(
        metrics, "metrics", "(params, ctx) -> dict")
    progress = check_optional_bool(progress, "progress", none_means="auto: on for a terminal")
    if on_segment is not None:
        check_callable(on_segment, "on_segment", "(step, state, history) -> None")
    check_choice(on_nonfinite, "on_nonfinite", NONFINITE_MODES)
    if state is not None and x0 is not None:
        raise ValueError("pass either x0 (a fresh start) or state (a continuation), not both.")
    if x0 is not None:
        check_stacked(x0, problem.size, "x0",
                      "Omit x0 to start every agent at problem.init_params.")
    return RunArguments(steps, seed, record_every, segment_every, metrics_fn, progress,
                        on_segment, on_nonfinite)


def check_metric_shapes(shapes: Any, fn: Any) -> None:
    """Check that a metric function returned a non-empty dict of real scalars (``shapes``:
    its ``jax.eval_shape`` output for one agent)."""
    name = describe_metrics_fn(fn)
    if not isinstance(shapes, dict) or not shapes:
        raise TypeError(
            f"metrics must return a non-empty dict {{name: scalar}}; {name} returned "
            f"{type(shapes).__name__}. Return e.g. {{'loss': ctx.comm.allreduce(ctx.loss(p))}}.")
    for key, v in shapes.items():
        if not isinstance(key, str):
            raise TypeError(f"metrics must return a dict with str keys; {name} returned key "
                            f"{key!r}.")
        if not hasattr(v, "shape") or v.shape != () or not np.issubdtype(v.dtype, np.number):
            raise ValueError(
                f"metrics must return real scalars (one value per record); {name} returned "
                f"{key!r} with shape {getattr(v, 'shape', None)} and dtype "
                f"{getattr(v, 'dtype', type(v).__name__)}. Reduce it to a scalar, e.g. "
                "jnp.mean(...) or jnp.linalg.norm(...).")


def describe_metrics_fn(fn: Any) -> str:
    """A rank-independent name for a metric function (for the MPI start-up agreement)."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
