"""Run an algorithm for all agents at once in one process: ``jax.vmap`` over agents.

The loop itself is :func:`bluefog.engine.execute`; this module supplies the simulator's
adapter (:class:`SimBackend`): agents are a named ``vmap`` axis, data and keys are stacked.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bluefog.algorithm import Algorithm, Problem
from bluefog.engine import CallbackError, RunResult, agent_key, execute, first_agent

from .comm import AXIS_NAME, SimComm
from .devices import check_devices

__all__ = ["run", "spmd", "agent_keys", "SimBackend"]


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
    key on rank ``i`` (:func:`bluefog.engine.agent_key`), so stochastic runs match across
    backends."""
    return jax.vmap(lambda i: agent_key(seed, i))(jnp.arange(size, dtype=jnp.uint32))


class SimBackend:
    """The simulator's engine adapter (:class:`bluefog.engine.Backend`): all ``size`` agents
    in this process, stacked along a ``vmap`` axis named ``axis_name``."""

    name = "sim"
    is_root = True

    def __init__(self, size: int, *, local_size: int = 1, axis_name: str = AXIS_NAME,
                 faults=None, devices=None):
        self.comm = SimComm(size, axis_name=axis_name, local_size=local_size, faults=faults)
        self.size = self.comm.size
        self.axis_name = axis_name
        devices = check_devices(devices, self.size)
        #: Agents split into contiguous blocks over ``devices`` (None: the default device).
        self.sharding = None if devices is None else NamedSharding(
            Mesh(np.array(devices, dtype=object), (axis_name,)), PartitionSpec(axis_name))
        #: Compiled programs are shared across runs with equal keys (bluefog.engine.cache).
        #: Only the fault model's structure is in it: its tables (seeds, rates, windows, crash
        #: steps) are inputs of the programs (bluefog.faults.inputs).
        structure = None if self.comm.faults is None else self.comm.faults.structure
        self.cache_key = ("sim", self.size, axis_name, self.comm.local_size, structure,
                          None if devices is None else tuple(d.id for d in devices))

    def agree(self, fields):
        fields()  # one process: validating is agreeing

    def check_agents(self, topology):
        pass  # the simulator runs problem.size agents; topology.size is checked against it

    def agent_inputs(self, problem, seed):
        problem.require_all_agents(
            "bluefog_sim.run (every agent runs in this one process)",
            "Build the Problem from every agent's rows (shard=None, e.g. load_agent_shards "
            "without agents=), or run the shards under MPI with bluefog_dist.run.")
        inputs = problem.data, agent_keys(seed, self.size)
        return inputs if self.sharding is None else jax.device_put(inputs, self.sharding)

    def initial_params(self, x0, problem):
        return (problem.init_params, None) if x0 is None else (x0, 0)

    def map_agents(self, fn, in_axes):
        mapped = jax.vmap(fn, in_axes=in_axes, axis_name=self.axis_name)
        if self.sharding is None:
            return mapped
        sharding, n = self.sharding, self.size

        def placed(*args):  # every stacked output stays split over the devices
            return jax.tree_util.tree_map(
                lambda v: lax.with_sharding_constraint(v, sharding)
                if jnp.ndim(v) and jnp.shape(v)[0] == n else v, mapped(*args))

        return placed

    def agent_view(self, tree):
        return first_agent(tree)

    def run_callback(self, fn):
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - re-raised with the engine's contract
            raise CallbackError(f"on_segment raised {type(err).__name__}: {err}",
                                [(0, f"{type(err).__name__}: {err}")]) from err

    def finish(self, history):
        return history


def run(algorithm: Algorithm, problem: Problem, topology, steps: int, *, seed: int = 0,
        x0=None, record_every: int | None = None, progress: bool | None = None,
        local_size: int = 1, axis_name: str = AXIS_NAME, metrics: Callable | None = None,
        state=None, segment_every: int | None = None, on_segment: Callable | None = None,
        on_nonfinite: str = "raise", faults=None, devices=None) -> RunResult:
    """Simulate ``steps`` iterations of ``algorithm`` on ``problem`` for all agents at once.

    The whole loop is compiled: each dispatch is one ``jit(vmap(scan(...)))`` whose metrics
    (:mod:`bluefog.metrics`) are recorded every ``record_every`` steps inside the scan. The
    loop is :func:`bluefog.engine.execute`, shared with :func:`bluefog_dist.run`.

    Parameters
    ----------
    algorithm : Algorithm
    problem : Problem
        ``problem.size`` agents; agent ``i`` sees ``problem.agent_data(i)``. It must hold
        every agent's data (a partial ``Problem(..., shard=...)`` raises ``ValueError``).
    topology : Topology or DynamicTopology
        Of size ``problem.size``.
    steps : int
        In ``[1, 2**31 - 1]`` (the step counter is an int32).
    seed : int
        Agent ``i``'s key is ``fold_in(PRNGKey(seed), i)`` (as on MPI rank ``i``).
    x0 : pytree, optional
        Stacked ``(n, ...)`` initial parameters; default: every agent starts at
        ``problem.init_params``.
    record_every : int, optional
        Default ``max(1, steps // 100)``.
    progress : bool or None
        Show a tqdm progress bar (``None``: only when stderr is a terminal). Display only:
        the compiled programs and dispatches do not depend on it.
    local_size : int
        Agents per simulated machine (hierarchical communication).
    metrics : callable ``(params, ctx) -> dict of scalars``, optional
        Per-agent metric function written with communicator collectives so that every agent
        returns the same values (default :func:`bluefog.metrics.agent_metrics`).
    state : pytree, optional
        A stacked algorithm state to continue from (e.g. a checkpoint, or ``result.state`` of
        an earlier run); ``x0`` must then be omitted. Its structure, shapes and dtypes must be
        those ``algorithm.init`` gives for this problem. The step counter inside the state
        continues, so ``run(..., steps=a)`` then ``run(..., steps=b, state=...)`` follows the
        same trajectory as one run of ``a + b`` steps.
    segment_every : int, optional
        Call ``on_segment`` every this many steps (a multiple of ``record_every``); all
        segments run the same compiled program.
    on_segment : callable ``(step, state, history) -> None``, optional
        Called after each segment with the step reached (counted from the start of this
        call), the stacked state and the history so far (e.g. to write a checkpoint).
        An exception in it is re-raised as :class:`bluefog.engine.CallbackError`.
    on_nonfinite : {"raise", "continue"}
        ``"raise"`` (default): a non-finite state or metric at a record stops the run within
        that dispatch and raises :class:`bluefog.engine.NonFiniteError` naming the step and
        the agent; ``on_segment`` is never called with a non-finite state. ``"continue"``
        records NaN and goes on (for studying divergence).
    faults : bluefog.faults.Faults, optional
        Message loss, link outages, partitions and node crashes, simulated inside the
        compiled loop (:mod:`bluefog.faults`); the same object gives the same lost messages
        under :func:`bluefog_dist.run`. With crashes or ``rule="keep_last"`` the state is a
        :class:`bluefog.faults.FaultAwareState` around the algorithm's. The model's tables
        (seeds, rates, windows, crash steps) are inputs of the compiled program, so another
        run with the same algorithm and problem objects and a model of the same structure
        (:attr:`bluefog.faults.Faults.structure`) compiles nothing.
    devices : sequence of jax.Device, optional
        Spread the agents over these devices of this process (GPUs, or host devices made
        with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``), in contiguous blocks of
        ``n / len(devices)`` agents: the stacked data, keys and state are sharded along the
        agent axis (``NamedSharding(Mesh(devices, (axis_name,)), PartitionSpec(axis_name))``)
        and XLA's SPMD partitioner splits the same compiled program, inserting the
        cross-device transfers of the mixing rounds. The trajectory is the single-device
        one (tested to 1e-12 in float64). ``len(devices)`` must divide ``n``.

    Returns
    -------
    RunResult
        ``params`` stacked ``(n, ...)``; ``history`` with ``step`` and the metrics.
    """
    if not isinstance(problem, Problem):
        raise TypeError(
            f"problem must be a bluefog Problem (e.g. algorithms.problems.quadratic(b)); got "
            f"{type(problem).__name__}."
        )
    backend = SimBackend(problem.size, local_size=local_size, axis_name=axis_name,
                         faults=faults, devices=devices)
    return execute(backend, algorithm, problem, topology, steps, seed=seed, x0=x0,
                   record_every=record_every, progress=progress, metrics=metrics, state=state,
                   segment_every=segment_every, on_segment=on_segment,
                   on_nonfinite=on_nonfinite)
