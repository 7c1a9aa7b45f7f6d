"""Simulator speed-up from spreading agents over the devices of one process.

    python -m benchmarks.multi_device [--devices 8] [--agents 64] [--dim 1000] [--reps 7]

Sets ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` before importing JAX (run it as
its own process), then times the same DGD run (:mod:`_workload`'s logistic regression,
``m`` samples x ``d`` features per agent, float32, ``exponential_graph(n)``,
``bluefog_sim.run`` with ``record_every=steps``) on one device and with
``devices=jax.devices()``, interleaved, warm-up excluded (the programs are compiled once
and reused by the engine's cache). Reports ``run_seconds`` per step, the min and median of
the per-repetition speed-up (one device / D devices), the largest difference between the
two trajectories' parameters, and the load. On CPU the host devices share the machine's
cores: the speed-up is bounded by the core count.
"""

from __future__ import annotations

import argparse
import os
import statistics


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--agents", type=int, default=64)
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.devices}")
    import jax
    import numpy as np

    import algorithms
    import bluefog_sim
    from bluefog.topology import exponential_graph

    from . import _workload as W
    from ._timing import machine_load

    if len(jax.devices()) != args.devices:
        raise SystemExit(f"JAX was already initialised with {len(jax.devices())} devices; "
                         "run this benchmark as its own process.")
    A, y = W.data(args.agents, m=args.samples, dim=args.dim)
    prob = algorithms.problems.logistic_regression(A, y, l2=W.LAM)
    alg, topo = algorithms.dgd(W.LR), exponential_graph(args.agents)
    modes = {"1 device": None, f"{args.devices} devices": jax.devices()}
    times = {k: [] for k in modes}
    params = {}
    for rep in range(args.reps + 1):
        for k, devs in modes.items():
            res = bluefog_sim.run(alg, prob, topo, args.steps, record_every=args.steps,
                                  progress=False, devices=devs)
            params[k] = np.asarray(res.params)
            if rep:
                times[k].append(res.run_seconds / args.steps)
    one, many = modes
    speed = [a / b for a, b in zip(times[one], times[many])]
    out = {"agents": args.agents, "dim": args.dim, "devices": args.devices,
           "one_s_min": min(times[one]), "many_s_min": min(times[many]),
           "speedup_min": min(speed), "speedup_median": statistics.median(speed),
           "max_param_diff": float(np.abs(params[one] - params[many]).max()),
           "load": machine_load()}
    print(f"{args.agents} agents, d={args.dim}, m={args.samples}: 1 device "
          f"{out['one_s_min'] * 1e3:.2f} ms/step, {args.devices} devices "
          f"{out['many_s_min'] * 1e3:.2f} ms/step (min); speed-up min {out['speedup_min']:.2f}x "
          f"median {out['speedup_median']:.2f}x; max |param diff| {out['max_param_diff']:.1e}; "
          f"{out['load']}")
    return out


if __name__ == "__main__":
    main()
