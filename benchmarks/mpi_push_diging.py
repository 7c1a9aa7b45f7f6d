"""Does ``async_push_diging`` converge under real MPI asynchrony? Weighted vs unweighted step.

Run as ``mpiexec -n 4 python -m benchmarks.mpi_push_diging --json out.json``: quadratics
``f_i(x) = |x - b_i|^2 / 2`` (minimiser ``mean(b)``), exponential graph, rank 0 sleeping
``--slow`` seconds per step and the others ``--fast``, ``run_async(duration=--duration)``
(``--jit``: ``jit=True``);
for each of ``--runs`` repetitions both forms run, interleaved: ``weighted_step=True``
(``u -= lr v y``, the default) and ``False`` (Bluefog's ``u -= lr y``). Reported per run and
form: the largest distance of any rank's estimate to ``mean(b)``, the smallest push-sum weight
seen by any rank at any step (``on_step``), the own step counts; load before and after.
"""

from __future__ import annotations

import argparse
import json
import os


def _one(weighted: bool, args, B, wins):
    import jax.numpy as jnp
    import numpy as np
    from mpi4py import MPI

    import algorithms
    from algorithms.problems import quadratic
    from bluefog.topology import exponential_graph
    from bluefog_dist.window_comm import MpiWindowComm, run_async

    comm = MPI.COMM_WORLD
    low = [np.inf]
    alg = algorithms.async_push_diging(args.lr, weighted_step=weighted)
    state, wc = run_async(alg, quadratic(jnp.asarray(B)), exponential_graph(comm.Get_size()),
                          duration=args.duration, x0=jnp.asarray(B), comm=MpiWindowComm(wins),
                          compute_delay=args.slow if comm.Get_rank() == 0 else args.fast,
                          jit=args.jit,
                          on_step=lambda k, s, t: low.__setitem__(0, min(low[0], float(s.v))))
    wc.win_free(state.windows)
    err = float(np.abs(np.asarray(alg.params(state)) - B.mean(0)).max())
    err = err if np.isfinite(err) else float("inf")
    return {"error": comm.allreduce(err, op=MPI.MAX),
            "min_weight": comm.allreduce(low[0], op=MPI.MIN),
            "steps": comm.allgather(int(state.count))}


def main(argv=None):
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from mpi4py import MPI

    from bluefog_dist.windows import MpiWindows

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--slow", type=float, default=3e-3)
    p.add_argument("--fast", type=float, default=1e-3)
    p.add_argument("--duration", type=float, default=1.5)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--jit", action="store_true", help="run_async(jit=True)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    n = MPI.COMM_WORLD.Get_size()
    B = np.arange(n * 3, dtype=np.float64).reshape(n, 3) ** 1.5
    load0, wins = os.getloadavg(), MpiWindows()
    runs = [{str(w): _one(w, args, B, wins) for w in (True, False)} for _ in range(args.runs)]
    wins.close()
    if MPI.COMM_WORLD.Get_rank() == 0:
        data = {"ranks": n, "args": vars(args), "runs": runs, "load_before": load0,
                "load_after": os.getloadavg()}
        print(json.dumps(data, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(data, f)


if __name__ == "__main__":
    main()
