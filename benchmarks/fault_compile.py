"""Compile time of faulty runs in the simulator: vs the number of failure patterns, and for a
sweep of fault parameters.

    python -m benchmarks.fault_compile [--windows 1 100] [--sweep 8] [--reps 3] [--json out.json]

1. **Windows.** For each count ``K`` it builds ``Faults(MessageLoss(0.05), K LinkOutage
   windows)`` (each window cuts one random link of ``exponential_graph(n)`` for a random step
   range) and times the compile of one whole ``bluefog_sim.run`` of consensus
   (``RunResult.compile_seconds``), plus a fault-free run, interleaved in each repetition.
   The windows are one integer table (:mod:`bluefog.faults.tables`), so the compiled program
   should not grow with ``K``. Every run uses fresh algorithm and problem objects, so no
   program is reused from the cache. Ratios are per repetition against ``min(windows)``.
2. **Sweep.** ``S`` runs of one structure (``MessageLoss(p, seed)`` plus one outage window
   and one crash), each with another seed, loss rate, window and crash step: *one program*
   (the same algorithm and problem objects for the ``S`` runs, so the fault tables are the
   only change and are inputs of the cached program) against *a program per setting*
   (fresh objects per run: one compile per setting, what every new seed or rate cost when
   the tables were constants of the program). Same runs, same dtype (float32) on both
   sides; per repetition the wall time of the whole sweep, its summed compile seconds and
   how many of its runs compiled; the ratio is *a program per setting* / *one program*.

Repetition 0 is a warm-up, not reported; the order of the variants is rotated per
repetition. Min and median are reported with the machine load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

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


def _sweep_faults(n: int, steps: int, s: int, rng):
    from bluefog.faults import Faults, LinkOutage, MessageLoss, NodeCrash

    out = []
    for _ in range(s):
        j, start = int(rng.integers(n)), int(rng.integers(0, steps))
        out.append(Faults(MessageLoss(float(rng.uniform(0.0, 0.3)), seed=int(rng.integers(2**31))),
                          LinkOutage([(j, (j + 1) % n)], start, start + 5),
                          NodeCrash(int(rng.integers(n)), at=int(rng.integers(0, steps)))))
    return out


def _objects(n: int, d: int):
    import algorithms

    b = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    return algorithms.consensus(), algorithms.problems.quadratic(b), b


def _run(objects, n: int, steps: int, faults):
    import bluefog_sim
    from bluefog.topology import exponential_graph

    alg, prob, b = objects
    return bluefog_sim.run(alg, prob, exponential_graph(n), steps, x0=b, record_every=steps,
                           progress=False, faults=faults)


def _windows_rep(args, rep: int, labels, rng) -> dict:
    out = {}
    for k in labels[rep % len(labels):] + labels[:rep % len(labels)]:
        faults = None if k == "none" else _faults(args.agents, int(k), rng)
        objects = _objects(args.agents, args.dim + rep)
        out[k] = _run(objects, args.agents, args.steps, faults).compile_seconds
    return out


def _sweep_rep(args, rep: int, rng) -> dict:
    settings = _sweep_faults(args.agents, args.steps, args.sweep, rng)
    out = {}
    for variant in (("one", "each") if rep % 2 == 0 else ("each", "one")):
        shared = _objects(args.agents, args.dim + rep)  # fresh per repetition: compiles once
        t0, compile_s, compiled = time.perf_counter(), 0.0, 0
        for f in settings:
            objects = shared if variant == "one" else _objects(args.agents, args.dim + rep)
            c = _run(objects, args.agents, args.steps, f).compile_seconds
            compile_s, compiled = compile_s + c, compiled + (c > 0)
        out[variant] = (time.perf_counter() - t0, compile_s, compiled)
    return out


def _stats(values) -> dict:
    return {"min": min(values), "median": statistics.median(values)}


def _report_windows(times: dict, base: str) -> dict:
    rows = {}
    for k, vals in times.items():
        ratios = [a / b for a, b in zip(vals, times[base])]
        rows[k] = {"min_s": min(vals), "median_s": statistics.median(vals),
                   "ratio_min": min(ratios), "ratio_median": statistics.median(ratios)}
        print(f"windows={k:>5s}: compile min {min(vals):.3f} s, median "
              f"{statistics.median(vals):.3f} s, vs {base}: min {min(ratios):.2f}x median "
              f"{statistics.median(ratios):.2f}x")
    return rows


def _report_sweep(reps: list, s: int) -> dict:
    rows = {v: {"wall_s": _stats([r[v][0] for r in reps]),
                "compile_s": _stats([r[v][1] for r in reps]),
                "runs_compiled": [r[v][2] for r in reps]} for v in ("one", "each")}
    ratios = [r["each"][0] / r["one"][0] for r in reps]
    rows["ratio"] = _stats(ratios)
    for v, name in (("one", "one program"), ("each", "a program per setting")):
        w, c = rows[v]["wall_s"], rows[v]["compile_s"]
        print(f"sweep of {s} settings, {name:22s}: wall min {w['min']:.2f} s median "
              f"{w['median']:.2f} s, compile min {c['min']:.2f} s median {c['median']:.2f} s "
              f"(runs that compiled: {rows[v]['runs_compiled']})")
    print(f"sweep wall time, a program per setting / one program: min {min(ratios):.2f}x "
          f"median {statistics.median(ratios):.2f}x")
    return rows


def main(argv=None) -> dict:
    """Run both measurements (module docstring); print them and return them as a dict."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=64)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 100])
    ap.add_argument("--sweep", type=int, default=8, help="settings per sweep (0: skip)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.agents < 2 or args.steps < 1 or args.reps < 1 or args.sweep < 0 or args.dim < 1:
        ap.error(f"need --agents >= 2, --steps >= 1, --reps >= 1, --dim >= 1, --sweep >= 0; got "
                 f"{args.agents}, {args.steps}, {args.reps}, {args.dim}, {args.sweep}")
    rng = np.random.default_rng(0)
    labels = ["none"] + [str(k) for k in args.windows]
    times, sweeps = {k: [] for k in labels}, []
    for rep in range(args.reps + 1):
        got = _windows_rep(args, rep, labels, rng)
        sweep = _sweep_rep(args, rep, rng) if args.sweep else None
        if rep:  # repetition 0 is the warm-up
            for k in labels:
                times[k].append(got[k])
            if sweep:
                sweeps.append(sweep)
    out = {"agents": args.agents, "steps": args.steps, "reps": args.reps,
           "load": machine_load(), "rows": _report_windows(times, str(min(args.windows)))}
    if sweeps:
        out["sweep"] = {"settings": args.sweep, **_report_sweep(sweeps, args.sweep)}
    print(out["load"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
