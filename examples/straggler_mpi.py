"""Wall-clock straggler study under MPI: asynchronous SGP vs the same method in lock-step.

Run with 4 ranks: ``bfrun -np 4 python examples/straggler_mpi.py`` (add ``--slowdown 1`` for
no straggler). Every rank runs ``algorithms.async_sgp`` on real one-sided MPI windows
(:mod:`bluefog_dist.window_comm`); each step first sleeps ``--delay`` seconds of emulated
compute, rank 0 ``--slowdown`` times longer. ``sync`` runs ``--steps`` steps with a barrier
after every step (every rank waits for the slowest, as a synchronous method does); ``async``
runs every rank until one deadline ``--duration`` seconds after the common start
(``run_async(duration=...)``), no barrier. Each rank logs ``(wall time, its estimate)`` after
every step; afterwards rank 0 rebuilds, at every logged
time, the newest estimate of every rank and reports the first wall time at which
``f(mean estimate)`` is within ``--target`` of ``f(x0) - f*``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import algorithms  # noqa: E402
from algorithms.problems import logistic_regression  # noqa: E402
from bluefog.topology import exponential_graph  # noqa: E402
from bluefog_dist import failfast  # noqa: E402
from bluefog_dist.window_comm import MpiWindowComm, run_async  # noqa: E402


def make_problem(n, m=40, d=10, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    X = rng.normal(size=(n, m, d))
    y = (X @ w + 0.5 * rng.normal(size=(n, m)) > 0).astype(np.float64)
    import dataclasses
    return dataclasses.replace(logistic_regression(X, y, l2=0.01), stochastic_loss=None)


def run(mode, comm, problem, lr, steps, duration, delay, slowdown):
    """One run on this rank; its log ``[(seconds since the common start, estimate)]``.

    ``sync``: ``steps`` own steps, each followed by a barrier (lock-step needs a fixed step
    count, see :func:`run_async`); ``async``: steps until a deadline ``duration`` seconds
    after the common start, no barrier.
    """
    alg, log = algorithms.async_sgp(lr), []

    def on_step(k, state, seconds):
        t = time.monotonic()
        if mode == "sync":
            comm.barrier()
        log.append((seconds + time.monotonic() - t, np.asarray(alg.params(state)).tolist()))

    stop = {"steps": steps} if mode == "sync" else {"duration": duration}
    state, _ = run_async(alg, problem, exponential_graph(comm.size), **stop, comm=comm,
                         compute_delay=delay * (slowdown if comm.rank() == 0 else 1.0),
                         on_step=on_step)
    comm.win_free(state.windows)
    return log


def time_to_target(logs, problem, target):
    """First logged time at which f(mean of every rank's newest estimate) <= target."""
    events = sorted((t, i, np.asarray(z)) for i, log in enumerate(logs) for t, z in log)
    newest = [np.asarray(problem.init_params)] * len(logs)
    for t, i, z in events:
        newest[i] = z
        if float(problem.global_loss(jnp.asarray(np.mean(newest, axis=0)))) <= target:
            return t
    return float("inf")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--delay", type=float, default=0.2)
    p.add_argument("--slowdown", type=float, default=5.0)
    p.add_argument("--lr", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=40, help="own steps of a sync run")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of an async run")
    p.add_argument("--target", type=float, default=0.01)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    failfast.install()
    comm = MpiWindowComm()
    problem = make_problem(comm.size)
    f0 = float(problem.global_loss(jnp.asarray(problem.init_params)))
    fs = float(problem.global_loss(jnp.asarray(problem.optimum)))
    target = fs + args.target * (f0 - fs)
    run("sync", comm, problem, args.lr, 3, None, 0.0, 1.0)  # warm-up: traces, caches
    load0, out = os.getloadavg(), {}
    for mode in ("sync", "async", "sync", "async"):  # interleaved repetitions
        log = run(mode, comm, problem, args.lr, args.steps, args.duration, args.delay,
                  args.slowdown)
        logs = comm.mpi.comm.gather(log, root=0)
        if comm.rank() == 0:
            out.setdefault(mode, []).append(time_to_target(logs, problem, target))
    if comm.rank() == 0:
        ratios = [s / a for s, a in zip(out["sync"], out["async"])]
        result = {"seconds": out, "ratio_sync_over_async": ratios, "ranks": comm.size,
                  "delay": args.delay, "slowdown": args.slowdown, "sync_steps": args.steps,
                  "async_duration": args.duration, "load_before": load0,
                  "load_after": os.getloadavg()}
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f)
    comm.mpi.close()


if __name__ == "__main__":
    main()
