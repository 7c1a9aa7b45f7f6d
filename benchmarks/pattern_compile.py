"""Compile time of a time-varying topology vs its number of patterns, in the simulator.

    python -m benchmarks.pattern_compile [--patterns 4 16 128] [--reps 3] [--json out.json]

For each pool size ``K`` it builds ``random_matching(n, pool_size=K)`` and times the compile
of one whole ``bluefog_sim.run`` of DGD on a quadratic (``RunResult.compile_seconds``: the
scan program's lowering and XLA compile), two ways, interleaved in each repetition:

* ``data``: the simulator's default, patterns as data (:mod:`bluefog.comm.patterns`): one
  gather per round slot, whatever ``K`` is;
* ``branches``: one ``lax.switch`` branch per pattern, as the MPI backend must do (static
  peers for ``mpi4jax.sendrecv``), forced here on the simulator's communicator.

It also reports the alternative for static peers, a union-of-edges schedule (every edge of
every pattern, weights per step): the number of exchanges per step it would cost, and the
compile and step time of that schedule in the simulator. The pattern tables are built before
timing (the topology's one-off NumPy cost, reported separately as ``tables_s``). Ratios are
per repetition, against ``K = min(patterns)`` of the same repetition; min and median are
reported with the machine load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from ._timing import machine_load


def _branches_backend(n: int):
    from bluefog_sim.runner import SimBackend

    backend = SimBackend(n)
    backend.comm._traced_patterns = False  # what a static-peer backend (MPI) does
    backend.cache_key = None  # never share programs with the default mode
    return backend


def _compile_seconds(topology, mode: str, d: int, steps: int) -> float:
    import algorithms
    from bluefog.engine import execute
    from bluefog_sim.runner import SimBackend

    n = topology.size
    b = np.random.default_rng(0).normal(size=(n, d))
    backend = SimBackend(n) if mode == "data" else _branches_backend(n)
    res = execute(backend, algorithms.dgd(0.1), algorithms.problems.quadratic(b), topology,
                  steps, record_every=steps, progress=False)
    return res.compile_seconds


def _union(topology):
    from bluefog.topology import Topology

    support = sum((p.weights != 0).astype(float) for p in topology.patterns) > 0
    deg = support.sum(axis=1, keepdims=True)
    return Topology(support / deg, name="union", require="row", check_connected=False)


def _union_step(union, d: int) -> tuple[float, float, int]:
    import jax
    import jax.numpy as jnp

    from bluefog_sim import spmd

    X = jnp.ones((union.size, d), jnp.float32)
    mix = spmd(lambda c, x: c.neighbor_allreduce(x, union), union.size, jit=False)
    fn = jax.jit(mix)
    t0 = time.perf_counter()
    fn.lower(X).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(fn(X))
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(X))
        samples.append(time.perf_counter() - t0)
    return compile_s, min(samples), union.schedule.num_rounds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=64)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--patterns", type=int, nargs="+", default=[4, 16, 128])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=["data", "branches"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from bluefog.comm.patterns import pattern_tables
    from bluefog.topology import random_matching

    base = min(args.patterns)
    times = {m: {k: [] for k in args.patterns} for m in args.modes}
    tables = {}
    for rep in range(args.reps + 1):  # repetition 0 is a warm-up, not reported
        for k in args.patterns:
            topo = random_matching(args.agents, seed=rep, pool_size=k)
            t0 = time.perf_counter()
            pattern_tables(topo)
            tables[k] = time.perf_counter() - t0
            for m in args.modes:
                c = _compile_seconds(topo, m, args.dim, args.steps)
                if rep:
                    times[m][k].append(c)
    out = {"agents": args.agents, "dim": args.dim, "load": machine_load(), "modes": {}}
    for m in args.modes:
        rows = {}
        for k in args.patterns:
            ratios = [a / b for a, b in zip(times[m][k], times[m][base])]
            rows[k] = {"min_s": min(times[m][k]), "median_s": statistics.median(times[m][k]),
                       "ratio_min": min(ratios), "ratio_median": statistics.median(ratios),
                       "tables_s": tables[k]}
            print(f"{m:9s} K={k:4d}: compile min {rows[k]['min_s']:.3f} s, median "
                  f"{rows[k]['median_s']:.3f} s, vs K={base}: min {rows[k]['ratio_min']:.2f}x "
                  f"median {rows[k]['ratio_median']:.2f}x (tables {tables[k]:.3f} s)")
        out["modes"][m] = rows
    big = random_matching(args.agents, seed=0, pool_size=max(args.patterns))
    cs, step, rounds = _union_step(_union(big), args.dim)
    out["union"] = {"patterns": max(args.patterns), "rounds": rounds, "compile_s": cs,
                    "step_s": step}
    print(f"union of edges of K={max(args.patterns)}: {rounds} exchanges per step (vs 1 per "
          f"matching), compile {cs:.3f} s, one mixing step {step * 1e6:.0f} us")
    print(out["load"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
