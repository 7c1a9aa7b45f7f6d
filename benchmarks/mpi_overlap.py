"""Overlap of window communication and local compute under MPI (one-sided windows).

Rank program (``mpiexec -n N python -m benchmarks.mpi_overlap --json out.json``): every rank
owns a window of ``--floats`` float64 on the exponential graph (``N = 2``: the pair), and one
*step* is a jitted compute (``reps`` float32 ``m x m`` matmuls, ``m = --matmul``; ``reps``
calibrated on rank 0 so that the compute takes about as long as one blocking exchange, then
broadcast) plus one exchange (accumulate to every out-neighbour, then collect). Methods,
interleaved repetition by repetition (one warm-up repetition excluded), ``--steps`` steps per
repetition, time per step of the slowest rank:

* ``sequential``: compute, then ``MpiWindows.accumulate`` (blocking) and collect;
* ``overlap``: ``accumulate_nonblocking`` of the previous iterate, compute, ``wait``, collect
  (SGP's overlap: the transfer runs on the communication thread during the compute);
* ``compute`` / ``exchange``: each part alone (the reference ``compute + exchange``);
* ``raw_sequential`` / ``raw_request``: raw ``MPI.Win`` on a separate buffer: ``Lock`` /
  ``Accumulate`` / ``Unlock`` after the compute, vs ``Lock`` + ``Raccumulate`` before the
  compute and ``Waitall`` + ``Unlock`` after it (request-based RMA in an open epoch, the
  other way to overlap; it keeps the epoch open during the compute, which would block the
  target's exclusive self-lock for reading, so :class:`bluefog_dist.MpiWindows` does not
  use it).

Reported: median seconds per step of each method and the per-repetition ratios (min and
median) ``overlap / sequential``, ``raw_request / raw_sequential`` and, for reference,
``(compute + exchange) / sequential`` and the ideal ``max(c, x) / (c + x)``; load average
before and after. Driver (``python -m benchmarks.mpi_overlap --launch 2,4 --markdown``):
runs the rank program under ``mpiexec -n`` each size, with :func:`benchmarks._mpi.rank_env`,
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from ._mpi import run_module_json

METHODS = ["sequential", "overlap", "compute", "exchange", "raw_sequential", "raw_request"]


def _compute_fn(m: int, reps: int):
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).standard_normal((m, m)) / np.sqrt(m),
                    jnp.float32)

    @jax.jit
    def run(b):
        return jax.lax.fori_loop(0, reps, lambda i, y: jnp.tanh(y @ a), b)

    run(a).block_until_ready()
    return lambda: run(a).block_until_ready()


def _topology(n):
    from bluefog.topology import Topology, exponential_graph

    return Topology(np.full((2, 2), 0.5), name="pair") if n == 2 else exponential_graph(n)


def _raw(comm, wins, name, x):
    """Raw ``MPI.Win`` on a buffer shaped like ``MpiWindows``' (slots at the same rows)."""
    from mpi4py import MPI

    w = wins.windows[name]
    buf = np.zeros_like(w.buf)
    win = MPI.Win.Create(buf, disp_unit=buf.itemsize, comm=comm)
    outs = [(dst, w.row_at[dst] * buf.shape[1] + 1) for dst in w.outs]
    payload = np.ascontiguousarray(x, np.float64)

    def start():
        reqs = []
        for dst, disp in outs:
            win.Lock(dst, MPI.LOCK_SHARED)
            reqs.append(win.Raccumulate(payload, dst, target=(disp, x.size, MPI.DOUBLE),
                                        op=MPI.SUM))
        return reqs

    def finish(reqs):
        MPI.Request.Waitall(reqs)
        for dst, _ in outs:
            win.Unlock(dst)

    def blocking():
        for dst, disp in outs:
            win.Lock(dst, MPI.LOCK_SHARED)
            win.Accumulate(payload, dst, target=(disp, x.size, MPI.DOUBLE), op=MPI.SUM)
            win.Unlock(dst)

    return win, start, finish, blocking


def _methods(wins, name, x, compute, raw):
    _, start, finish, raw_blocking = raw

    def sequential():
        compute()
        wins.accumulate(x, name)
        wins.update_then_collect(name)

    def overlap():
        t = wins.accumulate_nonblocking(x, name)
        compute()
        wins.wait(t)
        wins.update_then_collect(name)

    def exchange():
        wins.accumulate(x, name)
        wins.update_then_collect(name)

    def raw_request():
        reqs = start()
        compute()
        finish(reqs)

    def raw_sequential():
        compute()
        raw_blocking()

    return {"sequential": sequential, "overlap": overlap, "compute": compute,
            "exchange": exchange, "raw_sequential": raw_sequential, "raw_request": raw_request}


def _calibrate(comm, exchange, m, steps):
    """Matmuls per compute so that it lasts about one blocking exchange (rank 0 decides):
    the fastest of ``steps`` exchanges after two warm-ups (slowest rank), over the fastest
    per-matmul time of a 16-matmul loop."""
    def fastest(fn):
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    exchange(), exchange()
    tx = comm.allreduce(fastest(exchange), op=_max())
    per = fastest(_compute_fn(m, 16)) / 16
    return comm.bcast(max(1, int(round(tx / per))), root=0)


def _max():
    from mpi4py import MPI

    return MPI.MAX


def measure(floats: int, m: int, steps: int, repeats: int, progress=5e-4,
            reps: int | None = None) -> dict:
    """One window size: per-step seconds of every method, interleaved repetitions."""
    from mpi4py import MPI

    from bluefog_dist.windows import MpiWindows

    comm = MPI.COMM_WORLD
    wins = MpiWindows(progress="none" if progress is None else "thread",
                      progress_interval=progress or 5e-4)
    x = np.ones(floats)
    wins.create(x, "w", _topology(comm.Get_size()), zero_init=True)
    raw = _raw(comm, wins, "w", x)
    reps = reps or _calibrate(comm, lambda: (wins.accumulate(x, "w"),
                                             wins.update_then_collect("w")), m, steps)
    methods = _methods(wins, "w", x, _compute_fn(m, reps), raw)
    samples = {k: [] for k in METHODS}
    for rep in range(repeats + 1):
        for name in METHODS:
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(steps):
                methods[name]()
            wins.wait_all()
            el = comm.allreduce((time.perf_counter() - t0) / steps, op=MPI.MAX)
            if rep:  # repetition 0 is warm-up
                samples[name].append(el)
    raw[0].Free()
    wins.close()
    return {"floats": floats, "bytes": floats * 8, "matmul": m, "matmul_reps": reps,
            "samples": samples, **summarise(samples)}


def _ratio(a, b) -> dict:
    r = np.asarray(a) / np.asarray(b)
    return {"min": float(r.min()), "median": float(np.median(r))}


def summarise(samples: dict) -> dict:
    """Median seconds per method and the per-repetition ratios (min, median)."""
    s = {k: np.asarray(v) for k, v in samples.items()}
    c, x = s["compute"], s["exchange"]
    return {"seconds": {k: float(np.median(v)) for k, v in s.items()},
            "overlap/sequential": _ratio(s["overlap"], s["sequential"]),
            "raw_request/raw_sequential": _ratio(s["raw_request"], s["raw_sequential"]),
            "(compute+exchange)/sequential": _ratio(c + x, s["sequential"]),
            "ideal max(c,x)/(c+x)": _ratio(np.maximum(c, x), c + x)}


def markdown(runs: list) -> str:
    """A README table of driver runs ``[{"ranks": N, "results": [...], load...}]``."""
    head = ("| ranks | window | compute / exchange alone (ms) | sequential (ms) | overlap (ms) | "
            "overlap / sequential (min, median) | ideal | raw request / raw sequential "
            "(min, median) |\n|---|---|---|---|---|---|---|---|\n")
    rows = []
    for run in runs:
        for r in run["results"]:
            sec, o, q = r["seconds"], r["overlap/sequential"], r["raw_request/raw_sequential"]
            rows.append(
                f"| {run['ranks']} | {r['bytes'] / 2**20:g} MiB | {1e3 * sec['compute']:.1f} / "
                f"{1e3 * sec['exchange']:.1f} | {1e3 * sec['sequential']:.1f} | "
                f"{1e3 * sec['overlap']:.1f} | {o['min']:.2f}, {o['median']:.2f} | "
                f"{r['ideal max(c,x)/(c+x)']['median']:.2f} | {q['min']:.2f}, "
                f"{q['median']:.2f} |")
    loads = "; ".join(f"-n {r['ranks']}: load {r['load_before'][0]:.1f} before, "
                      f"{r['load_after'][0]:.1f} after" for r in runs)
    return head + "\n".join(rows) + f"\n\n{loads} ({os.cpu_count()} cores)\n"


def _rank_main(args):
    from mpi4py import MPI

    load0 = os.getloadavg()
    progress = None if args.progress == "none" else float(args.progress)
    results = [measure(int(f), args.matmul, args.steps, args.repeats, progress, args.reps)
               for f in args.floats.split(",")]
    if MPI.COMM_WORLD.Get_rank() == 0:
        data = {"ranks": MPI.COMM_WORLD.Get_size(), "results": results,
                "progress": args.progress,
                "load_before": load0, "load_after": os.getloadavg(),
                "thread_level": MPI.Query_thread()}
        print(json.dumps({k: v for k, v in data.items() if k != "results"}))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(data, f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--floats", default="131072,2097152",
                   help="window sizes in float64s (default 1 MiB and 16 MiB)")
    p.add_argument("--matmul", type=int, default=256, help="matrix size of the compute")
    p.add_argument("--reps", type=int, default=None,
                   help="matmuls per compute (default: calibrated to one blocking exchange)")
    p.add_argument("--steps", type=int, default=5, help="steps per repetition")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--progress", default="5e-4",
                   help="progress thread's poll interval in seconds, or 'none' (then set "
                        "MPIR_CVAR_ASYNC_PROGRESS=1 for MPICH's own progress thread)")
    p.add_argument("--json", default=None)
    p.add_argument("--launch", default=None, help="driver: rank counts, e.g. 2,4")
    p.add_argument("--markdown", action="store_true", help="driver: print a README table")
    args = p.parse_args(argv)
    if args.launch is None:
        return _rank_main(args)
    runs = []
    for n in (int(v) for v in args.launch.split(",")):
        data = run_module_json("mpi_overlap", ["--floats", args.floats, "--matmul",
                                               args.matmul, "--steps", args.steps,
                                               "--repeats", args.repeats, "--progress",
                                               args.progress] + (
                                                   [] if args.reps is None else
                                                   ["--reps", args.reps]), n, 1800)
        if isinstance(data, str):
            raise SystemExit(f"mpiexec -n {n}: {data}")
        runs.append(data)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f)
    print(markdown(runs) if args.markdown else json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
