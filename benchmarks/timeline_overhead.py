"""Overhead of the ``jax.profiler`` timeline (``bfrun --timeline``) on a training run.

The same training, ``bluefog_dist.run(algorithms.dgd(lr), logistic regression,
exponential_graph(n), steps)`` (the workload of :mod:`benchmarks._workload`: 200 samples x
1000 features per agent, float32), runs repeatedly on one communicator, once with a
:class:`bluefog_dist.timeline.Timeline` recording and once without, the order alternating
between repetitions (interleaved; one warm-up run of each kind first, excluded). Per
repetition the slowest rank's wall time of the ``run`` call gives the ratio on / off; the
table reports the min and median of these per-repetition ratios, the medians of both
times, and separately the timeline's start (one allgather + ``jax.profiler.start_trace``)
and its stop + conversion to the rank's Chrome trace (``Timeline.close``), which happen
outside the training loop. The load average before and after is recorded. Usage::

    bfrun -np 4 python -m benchmarks.timeline_overhead --steps 2000 --repeats 7 --markdown

Reference: JAX profiling (https://docs.jax.dev/en/latest/profiling.html).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="DGD steps per run")
    p.add_argument("--repeats", type=int, default=7, help="interleaved repetitions")
    p.add_argument("--json", metavar="PATH", help="write the results here (rank 0)")
    p.add_argument("--markdown", action="store_true", help="print the markdown table (rank 0)")
    return p.parse_args(argv)


def _timed(world, fn):
    """Slowest rank's wall time of ``fn()`` (all ranks start after a barrier)."""
    from mpi4py import MPI

    world.Barrier()
    t0 = time.perf_counter()
    fn()
    return world.allreduce(time.perf_counter() - t0, op=MPI.MAX)


def measure(args) -> dict:
    """Run the interleaved repetitions; the per-repetition seconds of every phase."""
    import algorithms
    import bluefog_dist
    from algorithms.problems import logistic_regression
    from bluefog.topology import exponential_graph
    from bluefog_dist.timeline import Timeline

    from . import _workload as W

    comm = bluefog_dist.MpiComm()
    world, n = comm.comm, comm.size
    A, y = W.data(n)
    problem = logistic_regression(A, y, l2=W.LAM)
    topology = exponential_graph(n)
    root = tempfile.mkdtemp(prefix="bf_timeline_bench_") if comm.rank() == 0 else None
    root = world.bcast(root, root=0)

    algorithm = algorithms.dgd(lr=W.LR)  # one object: later runs reuse its compiled programs

    def train():
        bluefog_dist.run(algorithm, problem, topology, args.steps, comm=comm, progress=False)

    rows = {"off": [], "on": [], "start": [], "close": []}
    for rep in range(-1, args.repeats):  # rep -1: warm-up of both kinds, not recorded
        for kind in (("off", "on") if rep % 2 else ("on", "off")):
            if kind == "off":
                seconds = _timed(world, train)
            else:
                box = {}
                start = _timed(world, lambda: box.update(
                    tl=Timeline(os.path.join(root, f"rep{rep}"), world)))
                seconds = _timed(world, train)
                close = _timed(world, box["tl"].close)
                if rep >= 0:
                    rows["start"].append(start)
                    rows["close"].append(close)
            if rep >= 0:
                rows[kind].append(seconds)
    world.Barrier()
    if comm.rank() == 0:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def summary(rows: dict, meta: dict) -> dict:
    """Medians, and min / median of the per-repetition ratio on / off."""
    ratios = [on / off for on, off in zip(rows["on"], rows["off"])]
    return {**meta, "rows": rows, "ratio_min": min(ratios),
            "ratio_median": statistics.median(ratios),
            "off_median_s": statistics.median(rows["off"]),
            "on_median_s": statistics.median(rows["on"]),
            "start_median_s": statistics.median(rows["start"]),
            "close_median_s": statistics.median(rows["close"])}


def markdown(res: dict) -> str:
    """The README table of one :func:`summary`."""
    steps = res["steps"]
    return "\n".join([
        f"{res['ranks']} ranks, {res['cpus']} CPUs, load {res['load_before']} -> "
        f"{res['load_after']}; DGD on exponential({res['ranks']}), {steps} steps per run, "
        f"{res['repeats']} interleaved repetitions (warm-up excluded); slowest rank.",
        "",
        "| run without timeline (median) | with timeline (median) | ratio on/off (min, median) "
        "| timeline start (median) | stop + convert (median) |",
        "|---|---|---|---|---|",
        f"| {res['off_median_s']:.3f} s ({1e3 * res['off_median_s'] / steps:.3f} ms/step) "
        f"| {res['on_median_s']:.3f} s ({1e3 * res['on_median_s'] / steps:.3f} ms/step) "
        f"| {res['ratio_min']:.3f}, {res['ratio_median']:.3f} "
        f"| {res['start_median_s']:.3f} s | {res['close_median_s']:.3f} s |"])


def main(argv=None):
    args = _args(argv)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = measure(args)
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    if world.Get_rank() != 0:
        return
    res = summary(rows, {"ranks": world.Get_size(), "cpus": os.cpu_count(),
                         "steps": args.steps, "repeats": args.repeats,
                         "load_before": load_before,
                         "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg())})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    print(markdown(res) if args.markdown else json.dumps(res))


if __name__ == "__main__":
    main()
