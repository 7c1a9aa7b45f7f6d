"""Step time of the hybrid MPI backend versus agents per rank (run under ``mpiexec -n R``).

For every ``k`` in ``--agents-per-rank``, ``n = R k`` agents run DGD on a least-squares
problem (``--dim`` parameters per agent, 8 data rows, ridge 0.1) over ``exponential_graph(n)`` with
``bluefog_dist.run(..., agents_per_rank=k)``. The run is cut into ``--segments`` segments
of ``--steps`` steps that execute the same compiled program; the wall time between two
consecutive ``on_segment`` callbacks is one sample (compile excluded: the program is
compiled before the first dispatch; the first segment is a warm-up and is dropped). A
sample's time is the maximum over ranks (a step is as slow as the slowest rank). Reported:
min and median seconds per step, and per agent-step, with the load average.

Usage: ``bfrun -np 4 python -m benchmarks.block_ranks --agents-per-rank 1 16 64 256
--json out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def measure(k: int, *, dim: int, steps: int, segments: int) -> dict:
    """Per-step times of one configuration (every rank returns the same dict)."""
    from mpi4py import MPI

    import algorithms as A
    import bluefog_dist
    from algorithms import problems as P
    from bluefog.topology import exponential_graph

    world = MPI.COMM_WORLD
    n = world.Get_size() * k
    rng = np.random.default_rng(0)
    problem = P.least_squares(rng.normal(size=(n, 8, dim)).astype(np.float32),
                              rng.normal(size=(n, 8)).astype(np.float32), l2=0.1)
    stamps: list = []
    res = bluefog_dist.run(A.dgd(0.01), problem, exponential_graph(n), steps * segments,
                           record_every=steps, segment_every=steps, progress=False,
                           agents_per_rank=None if k == 1 else k,
                           on_segment=lambda *_: stamps.append(time.perf_counter()))
    per_step = np.diff(np.asarray(stamps)) / steps  # segment 1 (warm-up) dropped
    per_step = np.max(np.asarray(world.allgather(per_step)), axis=0)  # slowest rank
    return {"agents_per_rank": k, "agents": n, "dim": dim, "steps_per_sample": steps,
            "samples": len(per_step), "min_s_per_step": float(per_step.min()),
            "median_s_per_step": float(statistics.median(per_step)),
            "median_s_per_agent_step": float(statistics.median(per_step)) / n,
            "compile_s": res.compile_seconds}


def markdown(rows: list, ranks: int, load) -> str:
    """A table of :func:`measure` rows."""
    lines = [f"{ranks} ranks, exponential_graph(R k), DGD, float32, load "
             f"{' '.join(f'{v:.2f}' for v in load)}",
             "", "| agents/rank | agents | ms/step (min) | ms/step (median) | "
             "us per agent-step (median) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['agents_per_rank']} | {r['agents']} | {1e3 * r['min_s_per_step']:.3f} | "
                     f"{1e3 * r['median_s_per_step']:.3f} | "
                     f"{1e6 * r['median_s_per_agent_step']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description="Hybrid backend step time vs agents per rank.")
    p.add_argument("--agents-per-rank", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--steps", type=int, default=20, help="steps per timed segment")
    p.add_argument("--segments", type=int, default=6, help="segments (the first is warm-up)")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    from mpi4py import MPI

    load0 = os.getloadavg()
    rows = [measure(k, dim=args.dim, steps=args.steps, segments=args.segments)
            for k in args.agents_per_rank]
    load = (*load0, *os.getloadavg())
    if MPI.COMM_WORLD.Get_rank() == 0:
        out = {"ranks": MPI.COMM_WORLD.Get_size(), "rows": rows, "load_before_after": load}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        print(markdown(rows, out["ranks"], load) if args.markdown else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
