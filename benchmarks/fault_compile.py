"""Compile time of a faulty run vs its number of failure patterns, in the simulator.

    python -m benchmarks.fault_compile [--windows 1 100] [--reps 3] [--json out.json]

For each count ``K`` it builds ``Faults(MessageLoss(0.05), K LinkOutage windows)`` (each
window cuts one random link of ``exponential_graph(n)`` for a random step range) and times
the compile of one whole ``bluefog_sim.run`` of consensus (``RunResult.compile_seconds``),
plus a fault-free run, interleaved in each repetition (repetition 0 is a warm-up, not
reported). The windows are one integer table inside the program (:mod:`bluefog.faults.spec`),
so the compiled program should not grow with ``K``. Every repetition uses fresh windows, so
no program is reused from the cache. Ratios are per repetition against ``min(windows)``;
min and median are reported with the machine load.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

from ._timing import machine_load


def _faults(n: int, k: int, rng):
    from bluefog.faults import Faults, LinkOutage, MessageLoss

    windows = []
    for _ in range(k):
        j = int(rng.integers(n))
        start = int(rng.integers(0, 50))
        windows.append(LinkOutage([(j, (j + 1) % n)], start, start + int(rng.integers(1, 20))))
    return Faults(MessageLoss(0.05, seed=int(rng.integers(2**31))), *windows)


def _compile_seconds(n: int, d: int, steps: int, faults) -> float:
    import algorithms
    import bluefog_sim
    from bluefog.topology import exponential_graph

    b = np.random.default_rng(0).normal(size=(n, d))
    res = bluefog_sim.run(algorithms.consensus(), algorithms.problems.quadratic(b),
                          exponential_graph(n), steps, x0=b, record_every=steps,
                          progress=False, faults=faults)
    return res.compile_seconds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=64)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 100])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    labels = ["none"] + [str(k) for k in args.windows]
    times = {k: [] for k in labels}
    for rep in range(args.reps + 1):
        for k in labels:
            faults = None if k == "none" else _faults(args.agents, int(k), rng)
            c = _compile_seconds(args.agents, args.dim + rep, args.steps, faults)
            if rep:
                times[k].append(c)
    base = str(min(args.windows))
    out = {"agents": args.agents, "load": machine_load(), "rows": {}}
    for k in labels:
        ratios = [a / b for a, b in zip(times[k], times[base])]
        row = {"min_s": min(times[k]), "median_s": statistics.median(times[k]),
               "ratio_min": min(ratios), "ratio_median": statistics.median(ratios)}
        out["rows"][k] = row
        print(f"windows={k:>5s}: compile min {row['min_s']:.3f} s, median {row['median_s']:.3f} "
              f"s, vs {base}: min {row['ratio_min']:.2f}x median {row['ratio_median']:.2f}x")
    print(out["load"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
