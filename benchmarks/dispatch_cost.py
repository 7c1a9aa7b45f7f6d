"""Per-call cost of a user-written, per-step jitted loop under MPI at small messages.

Run under ``mpiexec -n R``. For a ring exchange of ``--bytes`` float32 per rank, in ONE
process with interleaved repetitions (warm-up excluded), it times ``--calls`` consecutive
calls of

* ``plain_jit``            a jitted ``2 * x`` (no MPI): JAX's fast C++ dispatch path;
* ``mpi4jax_jit``          a jitted bare ``mpi4jax.sendrecv`` (one call per exchange);
* ``bluefog_call``         a jitted ``MpiComm.neighbor_allreduce`` (one call per step, as a
                           user's own ``for`` loop does);
* ``bluefog_call_donated`` the same with the input donated;
* ``bluefog_loop``         K exchanges inside one jitted ``fori_loop``, per exchange;
* ``raw_sendrecv_mix``     mpi4py ``Sendrecv`` + the NumPy float32 weighted sum.

Reported (rank 0, slowest rank per sample): median and min microseconds per call and the
min / median per-repetition ratio to ``raw_sendrecv_mix``, plus the load average.

Usage: ``mpiexec -n 2 python -m benchmarks.dispatch_cost``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def methods(world, x_np, calls):
    import jax
    import jax.numpy as jnp
    import mpi4jax
    from mpi4py import MPI

    from bluefog.topology import ring_graph
    from bluefog_dist import MpiComm

    comm, raw = MpiComm(), world.Clone()
    rank, size = world.Get_rank(), world.Get_size()
    topo = ring_graph(size)
    left, right = (rank - 1) % size, (rank + 1) % size
    st = {"x": jnp.asarray(x_np)}

    def repeat(fn, donate=False):
        f = jax.jit(fn, donate_argnums=0 if donate else ())

        def run():
            v = st["x"] if not donate else jnp.array(st["x"])
            for _ in range(calls):
                v = f(v)
            jax.block_until_ready(v)
        return run

    loop = jax.jit(lambda v: jax.lax.fori_loop(
        0, calls, lambda _, u: comm.neighbor_allreduce(u, topo), v))
    sched = topo.schedule
    rounds = [(int(r.sources[rank]), int(r.destinations[rank]), np.float32(r.weights[rank]))
              for r in sched.rounds]
    s_self = np.float32(sched.self_weights[rank])
    recv = [np.empty_like(x_np) for _ in rounds]
    acc = np.empty_like(x_np)

    def raw_mix():
        x = x_np
        for _ in range(calls):
            for (src, dst, _), rb in zip(rounds, recv):
                raw.Sendrecv([x, MPI.FLOAT], dst, 0, [rb, MPI.FLOAT], src, 0)
            np.multiply(x, s_self, out=acc)
            for (_, _, w), rb in zip(rounds, recv):
                np.add(acc, w * rb, out=acc)

    return {"plain_jit": repeat(lambda v: 2 * v),
            "mpi4jax_jit": repeat(lambda v: mpi4jax.sendrecv(v, v, left, right, comm=raw)),
            "bluefog_call": repeat(lambda v: comm.neighbor_allreduce(v, topo)),
            "bluefog_call_donated": repeat(lambda v: comm.neighbor_allreduce(v, topo), True),
            "bluefog_loop": lambda: jax.block_until_ready(loop(st["x"])),
            "raw_sendrecv_mix": raw_mix}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bytes", type=int, default=1024)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    load0 = os.getloadavg()
    x_np = np.random.default_rng(world.Get_rank()).standard_normal(args.bytes // 4).astype(np.float32)
    fns = methods(world, x_np, args.calls)
    for fn in fns.values():
        fn()  # warm-up (compile)
    names, times = list(fns), {m: [] for m in fns}
    for rep in range(args.repeats):
        for m in names[rep % len(names):] + names[:rep % len(names)]:
            world.Barrier()
            t0 = time.perf_counter()
            fns[m]()
            times[m].append(world.allreduce((time.perf_counter() - t0) / args.calls, op=MPI.MAX))
    if world.Get_rank() == 0:
        base = times["raw_sendrecv_mix"]
        out = {m: {"median_us": 1e6 * statistics.median(t), "min_us": 1e6 * min(t),
                   "ratio_min": min(a / b for a, b in zip(t, base)),
                   "ratio_median": statistics.median(a / b for a, b in zip(t, base))}
               for m, t in times.items()}
        print(json.dumps({"ranks": world.Get_size(), "bytes": args.bytes, "calls": args.calls,
                          "load_before_after": [*load0, *os.getloadavg()], "methods": out},
                         indent=1))


if __name__ == "__main__":
    main()
