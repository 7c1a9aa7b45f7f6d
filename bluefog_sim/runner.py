"""Run an algorithm for all agents at once in one process: ``jax.vmap`` over agents."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from bluefog.algorithm import AgentContext, Algorithm, Problem
from bluefog.driver import RunResult, drive, make_segment
from bluefog.run_common import (agent_key, check_run_inputs, check_stacked_x0,
                                default_record_every, resolve_metrics)

from .comm import AXIS_NAME, SimComm

__all__ = ["run", "spmd", "agent_keys"]


def spmd(fn: Callable, size: int, *, local_size: int = 1, axis_name: str = AXIS_NAME,
         in_axes=0, jit: bool = True) -> Callable:
    """Turn a per-agent function ``fn(comm, *args)`` into one over stacked agents.

    ``spmd(fn, n)(*stacked)`` runs ``fn(SimComm(n), *args_i)`` for every agent ``i`` at once
    (``jax.vmap`` with ``axis_name``), e.g.::

        mix = spmd(lambda comm, x: comm.neighbor_allreduce(x, topo), topo.size)
        X_next = mix(X)          # equals topo.weights @ X
    """
    comm = SimComm(size, axis_name=axis_name, local_size=local_size)
    mapped = jax.vmap(lambda *args: fn(comm, *args), in_axes=in_axes, axis_name=axis_name)
    return jax.jit(mapped) if jit else mapped


def agent_keys(seed: int, size: int) -> jax.Array:
    """Per-agent PRNG keys ``fold_in(PRNGKey(seed), i)``; the MPI backend derives the same
    key on rank ``i`` (:func:`bluefog.run_common.agent_key`), so stochastic runs match
    across backends."""
    return jax.vmap(lambda i: agent_key(seed, i))(jnp.arange(size, dtype=jnp.uint32))


def run(algorithm: Algorithm, problem: Problem, topology, steps: int, *, seed: int = 0,
        x0=None, record_every: int | None = None, progress: bool | None = None,
        local_size: int = 1, axis_name: str = AXIS_NAME, metrics: Callable | None = None,
        state=None) -> RunResult:
    """Simulate ``steps`` iterations of ``algorithm`` on ``problem`` for all agents at once.

    The whole loop is compiled: each dispatch is one ``jit(vmap(scan(...)))`` whose metrics
    (:mod:`bluefog.metrics`) are recorded every ``record_every`` steps inside the scan.

    Parameters
    ----------
    algorithm : Algorithm
    problem : Problem
        ``problem.size`` agents; agent ``i`` sees ``problem.agent_data(i)``.
    topology : Topology or DynamicTopology
        Of size ``problem.size``.
    steps : int
    seed : int
        Agent ``i``'s key is ``fold_in(PRNGKey(seed), i)`` (as on MPI rank ``i``).
    x0 : pytree, optional
        Stacked ``(n, ...)`` initial parameters; default: every agent starts at
        ``problem.init_params``.
    record_every : int, optional
        Default ``max(1, steps // 100)``.
    progress : bool or None
        Show a tqdm progress bar (``None``: only when stderr is a terminal).
    local_size : int
        Agents per simulated machine (hierarchical communication).
    metrics : callable ``(params, ctx) -> dict of scalars``, optional
        Per-agent metric function written with communicator collectives so that every agent
        returns the same values (default :func:`bluefog.metrics.agent_metrics`).
    state : pytree, optional
        A stacked algorithm state to continue from (e.g. a checkpoint, or ``result.state`` of
        an earlier run); ``x0`` must then be omitted. The step counter inside the state
        continues, so ``run(..., steps=a)`` then ``run(..., steps=b, state=...)`` follows the
        same trajectory as one run of ``a + b`` steps.

    Returns
    -------
    RunResult
        ``params`` stacked ``(n, ...)``; ``history`` with ``step`` and the metrics.
    """
    check_run_inputs(algorithm, problem, topology, seed)
    n = problem.size
    record_every = default_record_every(steps, record_every)
    comm = SimComm(n, axis_name=axis_name, local_size=local_size)
    keys = agent_keys(int(seed), n)

    def ctx(data_i, key_i):
        return AgentContext(comm, topology, problem, data_i, key_i)

    metrics_fn = resolve_metrics(metrics)
    check_stacked_x0(x0, n, state)
    if x0 is None:
        x_axes = None
        x0 = problem.init_params
    else:
        x_axes = 0
    init = jax.jit(jax.vmap(lambda x, d, k: algorithm.init(x, ctx(d, k)),
                            in_axes=(x_axes, 0, 0), axis_name=axis_name))
    if state is None:
        state = init(x0, problem.data, keys)
    else:
        state = jax.tree_util.tree_map(jnp.array, state)  # a private copy: segments donate it

    metrics_v = jax.jit(jax.vmap(lambda s, d, k: metrics_fn(algorithm.params(s), ctx(d, k)),
                                 axis_name=axis_name))

    def initial_metrics(s):
        return {k: np.asarray(v)[:1] for k, v in metrics_v(s, problem.data, keys).items()}

    def compile_segment(records, chunk_steps, s):
        seg = make_segment(algorithm, metrics_fn, chunk_steps, records)

        def fn(s, d, k):
            s, m = jax.vmap(lambda s_, d_, k_: seg(s_, ctx(d_, k_)), axis_name=axis_name)(s, d, k)
            return s, {name: v[0] for name, v in m.items()}  # identical on every agent

        compiled = jax.jit(fn, donate_argnums=0).lower(s, problem.data, keys).compile()
        return lambda s_: compiled(s_, problem.data, keys)

    state, history, c_sec, r_sec = drive(
        state, steps=steps, record_every=record_every, compile_segment=compile_segment,
        initial_metrics=initial_metrics, progress=progress,
        desc=f"{algorithm.name} | {topology.name} | sim n={n}")
    params = jax.jit(jax.vmap(algorithm.params))(state)
    return RunResult(params, history, state, c_sec, r_sec)
