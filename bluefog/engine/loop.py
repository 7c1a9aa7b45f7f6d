"""The one engine both backends run: validation, plan, compile, dispatch, record, callbacks.

``bluefog_sim.run`` and ``bluefog_dist.run`` are thin wrappers that build a backend adapter
(:mod:`bluefog.engine.backend`) and call :func:`execute`; the loop exists only here.

Jit the whole loop: one jitted call per exchange costs ~40x a raw MPI exchange at 1 KiB, so
a run is executed as a few dispatches of one compiled ``lax.scan`` each (see
:mod:`bluefog.engine.plan`), with metrics computed inside it.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithm import AgentContext
from ..faults import with_faults
from ..faults.inputs import agent_comm, data_axis, with_fault_inputs
from .cache import cached, run_key, shapes
from .errors import NonFiniteError
from .observers import notify_records
from .inputs import (check_metric_shapes, check_run_arguments, check_state_matches,
                     describe_metrics_fn, describe_tree)
from .plan import plan_run
from .program import make_segment, record
from .result import RunResult

__all__ = ["execute"]


def _agreement_fields(args, algorithm, problem, topology, x0, state, backend) -> dict:
    import bluefog

    return {
        "agents": backend.size,
        "topology": f"{topology.name} {topology.fingerprint}",
        "algorithm": f"{algorithm.name} {algorithm.config!r}",
        "problem": f"{problem.name} {problem.config!r}",
        # per-agent shapes: ranks holding only their own agents' rows (Problem.shard) agree
        "data": describe_tree(jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:], a.dtype), problem.data)),
        "init_params": problem.init_params,
        "x0": "none" if x0 is None else x0,
        "state": "none" if state is None else describe_tree(state),
        "steps": args.steps,
        "seed": args.seed,
        "record_every": args.record_every,
        "segment_every": args.segment_every,
        "on_nonfinite": args.on_nonfinite,
        "metrics": describe_metrics_fn(args.metrics),
        "local_size": backend.comm.local_size,
        "x64": bool(jax.config.jax_enable_x64),
        "faults": repr(backend.comm.faults),
        "versions": f"jax {jax.__version__}, bluefog {bluefog.__version__}",
    }


class _Progress:
    """A tqdm bar on the root process; shows the first five metrics of each record."""

    def __init__(self, enabled: bool, total: int, desc: str):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)

    def update(self, steps: int, metrics: dict) -> None:
        if self.bar is None:
            return
        self.bar.update(steps)
        post = {k: f"{float(np.asarray(v).reshape(-1)[-1]):.3e}"
                for k, v in list(metrics.items())[:5]}
        self.bar.set_postfix(post, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _nonfinite_error(step: int, agent: int, last: int, history: dict, algorithm) -> NonFiniteError:
    who = f"agent {agent}'s state" if agent >= 0 else "a metric (the state was finite)"
    if step == 0:
        hint = (" Likely cause: the initial state or the data contain NaN or infinity (check "
                "x0 / problem.init_params and problem.data).")
    elif algorithm.config.get("lr") is not None:
        hint = (f" Likely cause: the step size is too large for this problem ({algorithm.name} "
                f"{algorithm.config}); lower it.")
    else:
        hint = ""
    return NonFiniteError(
        f"the run diverged: {who} is not finite at step {step} (last finite record: step "
        f"{last}).{hint} Pass on_nonfinite='continue' to keep running anyway (e.g. to study "
        "divergence).", step=step, agent=agent, last_finite_step=last, history=history)


class _History:
    def __init__(self):
        self.columns: dict = {"step": []}

    def add(self, steps: np.ndarray, metrics: dict) -> None:
        self.columns["step"].append(np.asarray(steps, np.int64))
        for k, v in metrics.items():
            self.columns.setdefault(k, []).append(np.asarray(v).reshape(len(steps)))

    def arrays(self) -> dict:
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.columns.items()}


class _Run:
    """One call of :func:`execute`: the validated inputs, the state and the programs."""

    def __init__(self, backend, algorithm, problem, topology, args, state):
        self.backend, self.algorithm, self.problem, self.topology = backend, algorithm, problem, topology
        self.args = args
        self.state = state
        self.stop = args.on_nonfinite == "raise"
        self.compile_seconds = self.run_seconds = 0.0
        self.history = _History()
        comm = backend.comm
        # with faults the data is (data, fault tables): tables are inputs (bluefog.faults.inputs)
        self.data_axis = data_axis(comm)

        # A plain closure, not a bound method: cached programs must not keep this run alive.
        def ctx(d, k):
            agent, d = agent_comm(comm, d)
            return AgentContext(agent, topology, problem, d, k)

        self.ctx = ctx
        self.key = run_key(backend, algorithm, problem, topology, args)
        self.programs: dict = {}  # this run's programs where the backend is not cached

    def cached(self, name: tuple, build):
        """``build()`` once per run, or once per run key across runs (see :mod:`.cache`)."""
        if self.key is not None:
            return cached(self.key, name, build)[0]
        if name not in self.programs:
            self.programs[name] = build()
        return self.programs[name]

    def jitted(self, name: tuple, fn_of_ctx):
        """``jit(backend.map_agents(...))`` of ``fn_of_ctx(ctx)``, built once (see :meth:`cached`)."""
        return self.cached(name, lambda: fn_of_ctx(self.ctx))

    def init_fn(self, x_axis):
        algorithm, backend = self.algorithm, self.backend
        return backend.map_agents(lambda x, d, k: algorithm.init(x, self.ctx(d, k)),
                                  (x_axis, self.data_axis, 0))

    def init_program(self, x_axis):
        algorithm, backend, axes = self.algorithm, self.backend, (x_axis, self.data_axis, 0)
        return self.jitted(("init", x_axis), lambda ctx: jax.jit(backend.map_agents(
            lambda x, d, k: algorithm.init(x, ctx(d, k)), axes)))

    def _raise_nonfinite(self, step: int, agent: int):
        h = self.backend.finish(self.history.arrays())
        last = int(h["step"][-1]) if len(h["step"]) else -1
        raise _nonfinite_error(step, agent, last, h, self.algorithm)

    def record_initial(self, data, keys):
        one = lambda s, d, k: self.args.metrics(self.algorithm.params(s), self.ctx(d, k))  # noqa: E731
        axes = (0, self.data_axis, 0)
        shapes = jax.eval_shape(self.backend.map_agents(one, axes), self.state, data, keys)
        check_metric_shapes(self.backend.agent_view(shapes), self.args.metrics)
        algorithm, backend, metrics = self.algorithm, self.backend, self.args.metrics
        fn = self.jitted(("record",), lambda ctx: jax.jit(backend.map_agents(
            lambda s, d, k: record(algorithm, metrics, s, ctx(d, k)), axes)))
        m0, bad0, agent0 = jax.tree_util.tree_map(
            np.asarray, self.backend.agent_view(fn(self.state, data, keys)))
        if self.stop and bool(bad0):
            self._raise_nonfinite(0, int(agent0))
        self.history.add(np.zeros(1, np.int64), {k: np.reshape(v, 1) for k, v in m0.items()})
        notify_records(np.zeros(1, np.int64), {k: np.reshape(v, 1) for k, v in m0.items()})

    def program(self, dispatch, data, keys):
        """The compiled program of ``dispatch``'s shape (compiled once per run, and once for
        all runs with the same run key and input shapes, see :mod:`bluefog.engine.cache`)."""
        name = ("segment", dispatch.records, dispatch.chunk_steps,
                shapes((self.state, data, keys)))

        def build():
            t0 = time.perf_counter()
            seg = make_segment(self.algorithm, self.args.metrics, dispatch.chunk_steps,
                               dispatch.records, self.stop)
            ctx = self.ctx
            fn = self.backend.map_agents(lambda s, d, k: seg(s, ctx(d, k)),
                                         (0, self.data_axis, 0))
            program = jax.jit(fn, donate_argnums=0)
            # AOT compile for the timing; calls go through jit, which hits the compilation
            # cache (AOT executables with ordered effects, as mpi4jax programs have, fail
            # when called a second time in jax 0.10).
            program.lower(self.state, data, keys).compile()
            self.compile_seconds += time.perf_counter() - t0
            return program

        return self.cached(name, build)

    def dispatch(self, dispatch, done: int, data, keys) -> tuple[int, dict]:
        """Run one dispatch; return the step reached and its metrics."""
        program = self.program(dispatch, data, keys)
        t0 = time.perf_counter()
        self.state, outs = program(self.state, data, keys)
        metrics, bad, agent = jax.tree_util.tree_map(
            np.asarray, self.backend.agent_view(jax.block_until_ready(outs)))
        self.run_seconds += time.perf_counter() - t0
        steps = done + dispatch.chunk_steps * np.arange(1, dispatch.records + 1)
        if self.stop and bad.any():
            i = int(np.argmax(bad))
            self.history.add(steps[:i], {k: v[:i] for k, v in metrics.items()})
            self._raise_nonfinite(int(steps[i]), int(agent[i]))
        self.history.add(steps, metrics)
        notify_records(steps, metrics)
        return int(steps[-1]), metrics


def _show_progress(progress) -> bool:
    if progress is not None:
        return progress
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def execute(backend, algorithm, problem, topology, steps, *, seed=0, x0=None,
            record_every=None, progress=None, metrics=None, state=None, segment_every=None,
            on_segment: Callable | None = None, on_nonfinite: str = "raise",
            desc: str | None = None) -> RunResult:
    """Run ``steps`` iterations of ``algorithm`` on ``backend`` (see :func:`bluefog_sim.run`
    for the arguments and :mod:`bluefog.engine.backend` for the adapter).

    Every input is validated here, once, inside the backend's start-up agreement (so under
    MPI a bad input on one rank raises on every rank). The compiled programs depend only on
    ``(steps, record_every, segment_every)``, so every process runs the same sequence.
    """
    resolved: dict = {}
    # crashes and keep_last memory wrap the step inside the compiled program (bluefog.faults)
    algorithm = with_faults(algorithm, getattr(backend.comm, "faults", None))

    def fields():
        args = check_run_arguments(
            algorithm, problem, topology, steps, seed=seed, x0=x0, state=state,
            record_every=record_every, segment_every=segment_every, metrics=metrics,
            progress=progress, on_segment=on_segment, on_nonfinite=on_nonfinite)
        backend.check_agents(topology)
        run = resolved["run"] = _Run(backend, algorithm, problem, topology, args, state)
        resolved["inputs"] = with_fault_inputs(backend.comm,
                                               backend.agent_inputs(problem, args.seed))
        if state is not None:
            x_val, x_axis = backend.initial_params(None, problem)
            expected = jax.eval_shape(run.init_fn(x_axis), x_val, *resolved["inputs"])
            check_state_matches(state, expected)
        return _agreement_fields(args, algorithm, problem, topology, x0, state, backend)

    backend.agree(fields)
    run, (data, keys) = resolved["run"], resolved["inputs"]
    args = run.args
    if state is None:
        x_val, x_axis = backend.initial_params(x0, problem)
        run.state = run.init_program(x_axis)(x_val, data, keys)
    else:
        run.state = jax.tree_util.tree_map(jnp.array, state)  # private copy: dispatches donate
    run.record_initial(data, keys)
    bar = _Progress(_show_progress(args.progress) and backend.is_root, args.steps,
                    desc or f"{algorithm.name} | {topology.name} | {backend.name} n={backend.size}")
    done = 0
    try:
        for dispatch in plan_run(args.steps, args.record_every, args.segment_every):
            reached, last = run.dispatch(dispatch, done, data, keys)
            bar.update(reached - done, last)
            done = reached
            if dispatch.segment_end and args.on_segment is not None:
                snapshot, current = run.history.arrays(), run.state
                backend.run_callback(lambda: args.on_segment(done, current, snapshot))
    finally:
        bar.close()
    params = run.jitted(("params",), lambda ctx: jax.jit(backend.map_agents(
        algorithm.params, 0)))(run.state)
    return RunResult(params, backend.finish(run.history.arrays()), run.state,
                     run.compile_seconds, run.run_seconds)
