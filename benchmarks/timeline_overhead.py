"""Overhead of the ``jax.profiler`` timeline (``bfrun --timeline``) on a training run.

The same training, ``bluefog_dist.run(algorithms.dgd(lr), logistic regression,
exponential_graph(n), steps)`` (the workload of :mod:`benchmarks._workload`: 200 samples x
1000 features per agent, float32), runs repeatedly on one communicator, once with a
:class:`bluefog_dist.timeline.Timeline` recording and once without, the order alternating
between repetitions (interleaved; one warm-up run of each kind first, excluded). Per
repetition the slowest rank's wall time of the ``run`` call gives the ratio on / off, and
so does the CPU time of all ranks (``time.process_time``, less disturbed by other processes
on a shared machine); the table reports the min and median of these per-repetition ratios,
the medians of both wall times, and separately the timeline's start (one allgather +
``jax.profiler.start_trace``) and its stop + conversion to the rank's Chrome trace
(``Timeline.close``), which happen outside the training loop. The load average before and
after is recorded. Usage (the MPICH variables make a waiting rank yield its core instead of
polling, so that CPU time counts work; ``bfrun`` sets them itself when ranks outnumber
cores)::

    bfrun -np 2 -x MPIR_CVAR_ENABLE_HEAVY_YIELD=1 -x MPIR_CVAR_POLLS_BEFORE_YIELD=1 \
        python -m benchmarks.timeline_overhead --steps 1000 --repeats 15 --markdown

``--per-op`` measures the profiler's cost per XLA op instead, in one process without MPI
(where CPU time counts only work): the DGD compute loop alone, at 200 and 2000 samples
per agent, profiler on / off interleaved, CPU seconds per step, and the number of XLA ops
per step counted in the profile::

    python -m benchmarks.timeline_overhead --per-op --steps 1000 --repeats 21 --markdown

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


from ._timing import interleaved, load_average, ratio_stats


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="DGD steps per run")
    p.add_argument("--repeats", type=int, default=7, help="interleaved repetitions")
    p.add_argument("--json", metavar="PATH", help="write the results here (rank 0)")
    p.add_argument("--markdown", action="store_true", help="print the markdown table (rank 0)")
    p.add_argument("--per-op", action="store_true",
                   help="instead: the profiler's cost per XLA op in one process, no MPI "
                        "(the DGD compute loop at 200 and 2000 samples per agent)")
    return p.parse_args(argv)


def _timed(world, fn):
    """``(slowest rank's wall time, CPU time of all ranks)`` of ``fn()`` in seconds (all
    ranks start after a barrier). The CPU time (``time.process_time``: every thread of each
    rank, the profiler's included) is less sensitive than the wall time to other processes
    on a shared machine, but counts MPI's polling while a rank waits."""
    from mpi4py import MPI

    world.Barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return world.allreduce(wall, op=MPI.MAX), world.allreduce(cpu, op=MPI.SUM)


def measure(args) -> dict:
    """Run the interleaved repetitions; the per-repetition seconds of every phase."""
    import algorithms
    import bluefog_dist
    from algorithms.problems import logistic_regression
    from bluefog.topology import exponential_graph
    from bluefog_dist.timeline import start_timeline

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

    side = {k: [] for k in ("off_cpu", "on_cpu", "start", "close")}

    def off():
        wall, cpu = _timed(world, train)
        side["off_cpu"].append(cpu)
        return wall

    def on():
        box, where = {}, os.path.join(root, f"run{len(side['start'])}")
        begin = _timed(world, lambda: box.update(tl=start_timeline(where, world)))
        side["start"].append(begin[0])
        wall, cpu = _timed(world, train)
        side["on_cpu"].append(cpu)
        side["close"].append(_timed(world, box["tl"].close)[0])
        return wall

    # one warm-up call of each (dropped from the side lists), then alternating order
    rows = interleaved({"off": off, "on": on}, args.repeats, sample=lambda fn: fn())
    rows.update({k: v[1:] for k, v in side.items()})
    world.Barrier()
    if comm.rank() == 0:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def summary(rows: dict, meta: dict) -> dict:
    r"""Medians, and min / median of the per-repetition ratios
    :math:`q_r = t^{\text{on}}_r / t^{\text{off}}_r` (wall and CPU; Hoefler & Belli, SC 2015:
    summarize ratios of paired measurements)."""
    ratio_min, ratio_median = ratio_stats(rows["on"], rows["off"])
    cpu_min, cpu_median = ratio_stats(rows["on_cpu"], rows["off_cpu"])
    return {**meta, "rows": rows, "ratio_min": ratio_min, "ratio_median": ratio_median,
            "cpu_ratio_min": cpu_min, "cpu_ratio_median": cpu_median,
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
        "| run without timeline (median) | with timeline (median) | wall ratio on/off (min, "
        "median) | CPU ratio on/off (min, median) | timeline start (median) | stop + convert "
        "(median) |",
        "|---|---|---|---|---|---|",
        f"| {res['off_median_s']:.3f} s ({1e3 * res['off_median_s'] / steps:.3f} ms/step) "
        f"| {res['on_median_s']:.3f} s ({1e3 * res['on_median_s'] / steps:.3f} ms/step) "
        f"| {res['ratio_min']:.3f}, {res['ratio_median']:.3f} "
        f"| {res['cpu_ratio_min']:.3f}, {res['cpu_ratio_median']:.3f} "
        f"| {res['start_median_s']:.3f} s | {res['close_median_s']:.3f} s |"])


def _loop_and_ops(m: int, steps: int):
    """The jitted DGD compute loop (no communication) and its XLA ops per step, counted in
    one profiled run (events with an ``hlo_op`` stat, divided by ``steps``)."""
    import jax
    import jax.numpy as jnp
    from jax.profiler import ProfileData

    from bluefog_dist.profile_export import find_xplane
    from bluefog_dist.timeline import profile_options

    from . import _workload as W

    A, y = (jnp.asarray(a[0]) for a in W.data(1, m=m))
    loop = jax.jit(lambda x: jax.lax.fori_loop(
        0, steps, lambda k, v: W.dgd_step(v, A, y, lambda z: z), x))
    x = jnp.zeros(W.DIM, jnp.float32)
    loop(x).block_until_ready()
    log_dir = tempfile.mkdtemp(prefix="bf_timeline_ops_")
    jax.profiler.start_trace(log_dir, profiler_options=profile_options())
    loop(x).block_until_ready()
    jax.profiler.stop_trace()
    data = ProfileData.from_file(find_xplane(log_dir))
    ops = sum(1 for plane in data.planes for line in plane.lines for ev in line.events
              if not ev.name.startswith("end: ") and "hlo_op" in dict(ev.stats))
    shutil.rmtree(log_dir, ignore_errors=True)
    return (lambda: loop(x).block_until_ready()), max(ops - 1, 0) / steps  # - the while op


def per_op(args) -> list[dict]:
    """CPU seconds per step with the profiler on and off, interleaved, in one process."""
    import jax

    from bluefog_dist.timeline import profile_options

    def sample(run, steps, profiled):
        def fn():
            log_dir = tempfile.mkdtemp(prefix="bf_timeline_ops_")
            if profiled:
                jax.profiler.start_trace(log_dir, profiler_options=profile_options())
            c0 = time.process_time()
            run()
            seconds = (time.process_time() - c0) / steps
            if profiled:
                jax.profiler.stop_trace()
            shutil.rmtree(log_dir, ignore_errors=True)
            return seconds
        return fn

    rows = []
    for m in (200, 2000):
        run, ops = _loop_and_ops(m, args.steps)
        times = interleaved({"off": sample(run, args.steps, False),
                             "on": sample(run, args.steps, True)},
                            args.repeats, sample=lambda fn: fn())
        ratio_min, ratio_median = ratio_stats(times["on"], times["off"])
        extra = [on - off for on, off in zip(times["on"], times["off"])]
        rows.append({"samples": m, "ops_per_step": ops,
                     "off_us": 1e6 * statistics.median(times["off"]),
                     "extra_us": 1e6 * statistics.median(extra),
                     "ratio_min": ratio_min, "ratio_median": ratio_median})
    return rows


def per_op_markdown(rows, meta) -> str:
    """The README table of :func:`per_op`."""
    lines = [f"1 process, load {meta['load_before']} -> {meta['load_after']}; DGD compute loop "
             f"(no communication), {meta['steps']} steps, {meta['repeats']} interleaved "
             "repetitions; CPU time per step (time.process_time), medians.", "",
             "| samples/agent | XLA ops/step | off (us/step) | extra with profiler (us/step) | "
             "extra per op (us) | ratio on/off (min, median) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['samples']} | {r['ops_per_step']:.1f} | {r['off_us']:.1f} | "
              f"{r['extra_us']:.1f} | {r['extra_us'] / max(r['ops_per_step'], 1e-9):.2f} | "
              f"{r['ratio_min']:.3f}, {r['ratio_median']:.3f} |" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    args = _args(argv)
    load_before = load_average()
    if args.per_op:
        rows = per_op(args)
        meta = {"load_before": load_before, "load_after": load_average(), "steps": args.steps,
                "repeats": args.repeats}
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({**meta, "rows": rows}, fh, indent=1)
        print(per_op_markdown(rows, meta) if args.markdown else json.dumps(rows))
        return
    rows = measure(args)
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    if world.Get_rank() != 0:
        return
    res = summary(rows, {"ranks": world.Get_size(), "cpus": os.cpu_count(),
                         "steps": args.steps, "repeats": args.repeats,
                         "load_before": load_before,
                         "load_after": load_average()})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    print(markdown(res) if args.markdown else json.dumps(res))


if __name__ == "__main__":
    main()
