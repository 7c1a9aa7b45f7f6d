"""Per-step host cost of ``run_async``: op-by-op steps vs ``jit=True`` (window ops as host
callbacks), under ``mpiexec -n N``.

Run as ``mpiexec -n 2 python -m benchmarks.mpi_async_step --json out.json``. Every rank runs
``run_async(algorithm, least_squares, exponential_graph(N), steps=S, compute_delay=0)`` for
each algorithm (``async_sgp(0.01)``, ``async_sgp(0.01, overlap=True)``,
``async_push_diging(0.01)``) in both modes, interleaved repetition by repetition (one
warm-up repetition excluded). With no emulated compute the step time *is* the host cost:
the JAX dispatches of the gradient and update plus the MPI window calls. Per run, the time
per step is taken from ``on_step``'s clock between own step 5 and the last one (so the
compilation in the first step of ``jit=True`` is excluded), slowest rank. Reported: median
seconds per step per mode, and the per-repetition ratio ``jit / op-by-op`` (min, median),
with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

SKIP = 5


def _cases():
    import algorithms

    return {"async_sgp": algorithms.async_sgp(0.01),
            "async_sgp_overlap": algorithms.async_sgp(0.01, overlap=True),
            "async_push_diging": algorithms.async_push_diging(0.01)}


def _one(alg, problem, topo, steps, wins, jit):
    """Seconds per own step (steps SKIP..S-1) of the slowest rank."""
    from mpi4py import MPI

    from bluefog_dist.window_comm import MpiWindowComm, run_async

    stamps = {}
    state, wc = run_async(alg, problem, topo, steps, comm=MpiWindowComm(wins), jit=jit,
                          on_step=lambda k, s, t: stamps.__setitem__(k, t))
    wc.win_free(state.windows)
    per = (stamps[steps - 1] - stamps[SKIP - 1]) / (steps - SKIP)
    return MPI.COMM_WORLD.allreduce(per, op=MPI.MAX)


def measure(steps: int, repeats: int, dim: int) -> dict:
    """Every case in both modes, interleaved; per-step seconds and ratios."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from mpi4py import MPI

    from algorithms.problems import least_squares
    from bluefog.topology import exponential_graph
    from bluefog_dist.windows import MpiWindows

    n = MPI.COMM_WORLD.Get_size()
    rng = np.random.default_rng(0)
    problem = least_squares(jnp.asarray(rng.normal(size=(n, 16, dim))),
                            jnp.asarray(rng.normal(size=(n, 16))))
    topo, wins = exponential_graph(n), MpiWindows()
    samples = {(c, j): [] for c in _cases() for j in (False, True)}
    for rep in range(repeats + 1):
        for (case, jit), out in samples.items():
            t = _one(_cases()[case], problem, topo, steps, wins, jit)
            if rep:
                out.append(t)
    wins.close()
    res = {}
    for case in _cases():
        a, b = np.asarray(samples[(case, False)]), np.asarray(samples[(case, True)])
        r = b / a
        res[case] = {"op_by_op_s": float(np.median(a)), "jit_s": float(np.median(b)),
                     "jit/op_by_op": {"min": float(r.min()), "median": float(np.median(r))},
                     "samples": {"op_by_op": a.tolist(), "jit": b.tolist()}}
    return res


def main(argv=None):
    from mpi4py import MPI

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.steps <= SKIP:
        raise SystemExit(f"--steps must exceed {SKIP}")
    load0 = os.getloadavg()
    res = measure(args.steps, args.repeats, args.dim)
    if MPI.COMM_WORLD.Get_rank() == 0:
        data = {"ranks": MPI.COMM_WORLD.Get_size(), "steps": args.steps,
                "repeats": args.repeats, "results": res, "load_before": load0,
                "load_after": os.getloadavg()}
        print(json.dumps({k: v for k, v in data.items()}, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(data, f)


if __name__ == "__main__":
    main()
