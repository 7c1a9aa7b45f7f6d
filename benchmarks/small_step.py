"""Simulator step vs the no-communication step for small per-agent problems.

    python -m benchmarks.small_step [--dims 100 1000] [--samples 200 20] [--reps 15]

DGD on l2-regularised logistic regression (:mod:`_workload`: ``m`` samples x ``d`` features
per agent, float32) on ``exponential_graph(64)`` (6 rounds), ``steps`` steps inside one
jitted ``fori_loop`` per call, three programs timed interleaved in every repetition (the
first repetition is a warm-up and is not reported):

* ``none``: the same program with the mixing replaced by the identity (the limit);
* ``schedule``: ``SimComm.neighbor_allreduce`` (one ``ppermute`` per round, sum then
  divide by the exact in-degree + 1);
* ``one-gather``: a candidate: all rounds' sources gathered at once
  (``all_gather(x)[sources[:, i]]``, one gather of ``R`` rows per agent).

Reports, per configuration, the min and median over repetitions of the per-repetition
ratio to ``none``, and the machine load.
"""

from __future__ import annotations

import argparse
import statistics
import time

from ._timing import machine_load


def _programs(n: int, d: int, m: int, steps: int):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from bluefog.topology import exponential_graph
    from bluefog_sim import SimComm

    from . import _workload as W

    topo, comm = exponential_graph(n), SimComm(n)
    src = jnp.asarray(np.stack([r.sources for r in topo.schedule.rounds]).astype(np.int32))
    count = float(topo.schedule.num_rounds + 1)

    def one_gather(v):
        recv = lax.all_gather(v, comm.axis_name)[src[:, comm.rank()]]
        return (v + recv.sum(0)) / count

    mixes = {"none": lambda v: v, "schedule": lambda v: comm.neighbor_allreduce(v, topo),
             "one-gather": one_gather}
    A, y = (jnp.asarray(a) for a in W.data(n, m=m, dim=d))
    X0 = jnp.zeros((n, d), jnp.float32)

    def program(mix):
        def agent(x, a, b):
            return lax.fori_loop(0, steps, lambda k, v: W.dgd_step(v, a, b, mix), x)
        fn = jax.jit(jax.vmap(agent, axis_name=comm.axis_name))
        return lambda: jax.block_until_ready(fn(X0, A, y))

    progs = {k: program(f) for k, f in mixes.items()}
    ref = topo.weights.astype(np.float32) @ np.ones((n, d), np.float32)
    got = jax.jit(jax.vmap(mixes["one-gather"], axis_name=comm.axis_name))(jnp.ones((n, d)))
    if not np.allclose(np.asarray(got), ref, atol=1e-5):
        raise RuntimeError("one-gather mixing disagrees with W @ X")
    return progs


def _sample(fn, min_time: float) -> float:
    k, t0 = 0, time.perf_counter()
    while True:
        fn()
        k += 1
        el = time.perf_counter() - t0
        if el >= min_time:
            return el / k


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=64)
    ap.add_argument("--dims", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--samples", type=int, nargs="+", default=[200, 20])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--min-time", type=float, default=0.05)
    args = ap.parse_args(argv)
    out = {"load_before": machine_load(), "rows": []}
    for m in args.samples:
        for d in args.dims:
            progs = _programs(args.agents, d, m, args.steps)
            times = {k: [] for k in progs}
            for rep in range(args.reps + 1):
                for k, fn in progs.items():
                    t = _sample(fn, args.min_time) / args.steps
                    if rep:
                        times[k].append(t)
            for k in ("schedule", "one-gather"):
                r = [a / b for a, b in zip(times[k], times["none"])]
                row = {"samples": m, "dim": d, "variant": k, "us_min": min(times[k]) * 1e6,
                       "none_us_min": min(times["none"]) * 1e6, "ratio_min": min(r),
                       "ratio_median": statistics.median(r)}
                out["rows"].append(row)
                print(f"m={m:4d} d={d:5d} {k:10s}: {row['us_min']:.0f} us/step (none "
                      f"{row['none_us_min']:.0f}), ratio to none min {row['ratio_min']:.2f} "
                      f"median {row['ratio_median']:.2f}")
    out["load_after"] = machine_load()
    print(out["load_before"], "|", out["load_after"])
    return out


if __name__ == "__main__":
    main()
