"""Many simulated agents: build, compile and run time and peak memory, and the second run.

    python -m benchmarks.many_agents [--agents 65536] [--dim 4] [--steps 20]

Builds ``exponential_graph(n)`` by its edges (no dense ``n x n`` matrix), runs DGD on a
quadratic twice with the same shapes (the second ``run()`` reuses the compiled programs:
``compile_seconds`` must be 0), checks the result against the ``scipy.sparse`` recursion
``x+ = W x - lr (x - b)`` and prints the peak resident memory of the process and the load.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from ._timing import machine_load


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=65536)
    ap.add_argument("--dim", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    import algorithms
    import bluefog_sim
    from bluefog.topology import exponential_graph

    n, d, steps = args.agents, args.dim, args.steps
    t0 = time.perf_counter()
    topo = exponential_graph(n)
    rounds = topo.schedule.num_rounds
    build = time.perf_counter() - t0
    b = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    alg, prob = algorithms.dgd(0.1), algorithms.problems.quadratic(b)
    runs = []
    for seed in (0, 1):
        t0 = time.perf_counter()
        res = bluefog_sim.run(alg, prob, topo, steps, record_every=steps, seed=seed,
                              progress=False)
        runs.append((time.perf_counter() - t0, res))
    A, x = topo.sparse_weights.csr(), np.zeros((n, d))
    for _ in range(steps):
        x = A @ x - 0.1 * (x - b)
    err = float(np.abs(np.asarray(runs[0][1].params) - x).max())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    out = {"agents": n, "dim": d, "steps": steps, "rounds": rounds, "build_s": build,
           "first_s": runs[0][0], "first_compile_s": runs[0][1].compile_seconds,
           "second_s": runs[1][0], "second_compile_s": runs[1][1].compile_seconds,
           "max_abs_err_vs_scipy": err, "peak_rss_gib": rss, "load": machine_load()}
    print(f"{n} agents, d={d}, {rounds} rounds: build+schedule {build:.2f} s; first run "
          f"{runs[0][0]:.2f} s (compile {runs[0][1].compile_seconds:.2f} s); second run "
          f"{runs[1][0]:.2f} s (compile {runs[1][1].compile_seconds:.2f} s); max |err| vs "
          f"scipy.sparse {err:.1e} (float32); peak RSS {rss:.2f} GiB; {out['load']}")
    return out


if __name__ == "__main__":
    main()
