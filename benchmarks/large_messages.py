"""Large neighbor exchanges (16-64 MiB per rank): time and page faults per exchange.

Run under ``mpiexec -n R`` (2 or 4 ranks), once without and once with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in the ranks' environment (``bfrun`` sets it;
compare launches alternately, the variable acts at process start). For each size, in ONE
process and with interleaved repetitions (warm-up excluded), it times one ring
``neighbor_allreduce`` (float32) done by

* ``bluefog_loop``          ``MpiComm.neighbor_allreduce`` x K in one jitted ``fori_loop``;
* ``bluefog_loop_donated``  the same with the input buffer donated (``donate_argnums=0``);
* ``mpi4jax_whole``         bare ``mpi4jax.sendrecv`` of the whole buffer + the weighted sum;
* ``mpi4jax_chunked``       the same cut into ``--chunk-mib`` chunks, one ``sendrecv`` each
                            (pipelining: XLA may add chunk ``c`` while ``c + 1`` travels);
* ``raw_sendrecv_mix``      mpi4py ``Sendrecv`` of NumPy buffers + the NumPy float32 sum.

Reported per method: median and min seconds per exchange (slowest rank), minor page faults
per exchange (``getrusage``, this rank, median), and the min / median per-repetition ratio
to ``raw_sendrecv_mix``; plus the load average and ``GLIBC_TUNABLES``.

Usage: ``mpiexec -n 2 python -m benchmarks.large_messages --json out.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import numpy as np


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def methods(comm, world, x_np, K, chunk_floats):
    """name -> function doing K ring exchanges (state kept across calls)."""
    import jax
    import jax.numpy as jnp
    import mpi4jax
    from mpi4py import MPI

    from bluefog.topology import ring_graph

    rank, size = world.Get_rank(), world.Get_size()
    topo = ring_graph(size)
    sched = topo.schedule
    rounds = [(int(r.sources[rank]), int(r.destinations[rank]), np.float32(r.weights[rank]))
              for r in sched.rounds]
    s_self = np.float32(sched.self_weights[rank])
    raw = world.Clone()

    def mix_by_hand(v, send):
        acc = s_self * v
        for src, dst, w in rounds:
            acc = acc + w * send(v, src, dst)
        return acc

    def whole(v, src, dst):
        return mpi4jax.sendrecv(v, v, src, dst, comm=raw)

    def chunked(v, src, dst):
        parts = [mpi4jax.sendrecv(c, c, src, dst, comm=raw)
                 for c in jnp.split(v, list(range(chunk_floats, v.size, chunk_floats)))]
        return jnp.concatenate(parts)

    def jitted(body, donate=False):
        loop = jax.jit(lambda v: jax.lax.fori_loop(0, K, lambda _, u: body(u), v),
                       donate_argnums=0 if donate else ())
        state = {"x": jnp.asarray(x_np)}

        def run():
            state["x"] = loop(state["x"]).block_until_ready()
        return run

    recv = [np.empty_like(x_np) for _ in rounds]
    st = {"x": x_np.copy(), "acc": np.empty_like(x_np)}

    def raw_mix():
        x, acc = st["x"], st["acc"]
        for _ in range(K):
            for (src, dst, _), rb in zip(rounds, recv):
                raw.Sendrecv([x, MPI.FLOAT], dst, 0, [rb, MPI.FLOAT], src, 0)
            np.multiply(x, s_self, out=acc)
            for (_, _, w), rb in zip(rounds, recv):
                acc += w * rb
            x, acc = acc, x
        st["x"], st["acc"] = x, acc

    return {"bluefog_loop": jitted(lambda u: comm.neighbor_allreduce(u, topo)),
            "bluefog_loop_donated": jitted(lambda u: comm.neighbor_allreduce(u, topo), True),
            "mpi4jax_whole": jitted(lambda u: mix_by_hand(u, whole)),
            "mpi4jax_chunked": jitted(lambda u: mix_by_hand(u, chunked)),
            "raw_sendrecv_mix": raw_mix}


def measure(nbytes: int, repeats: int, chunk_mib: float) -> dict:
    """Interleaved repetitions of every method at one size; rank 0's summary."""
    from mpi4py import MPI

    from bluefog_dist import MpiComm

    world = MPI.COMM_WORLD
    K = max(3, int((256 << 20) // nbytes))
    x_np = np.random.default_rng(world.Get_rank()).standard_normal(nbytes // 4).astype(np.float32)
    fns = methods(MpiComm(), world, x_np, K, int(chunk_mib * (1 << 20)) // 4)
    for fn in fns.values():
        fn()  # warm-up: compile, first touch
    times = {m: [] for m in fns}
    faults = {m: [] for m in fns}
    names = list(fns)
    for rep in range(repeats):
        for m in names[rep % len(names):] + names[:rep % len(names)]:
            world.Barrier()
            f0, t0 = _faults(), time.perf_counter()
            fns[m]()
            dt, df = (time.perf_counter() - t0) / K, (_faults() - f0) / K
            times[m].append(world.allreduce(dt, op=MPI.MAX))
            faults[m].append(df)
    base = times["raw_sendrecv_mix"]
    out = {}
    for m in names:
        ratio = [a / b for a, b in zip(times[m], base)]
        out[m] = {"median_s": statistics.median(times[m]), "min_s": min(times[m]),
                  "faults_per_exchange": statistics.median(faults[m]),
                  "ratio_min": min(ratio), "ratio_median": statistics.median(ratio)}
    return {"bytes": nbytes, "loop": K, "methods": out}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=float, nargs="+", default=[16, 64])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--chunk-mib", type=float, default=4.0)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    from mpi4py import MPI

    load0 = os.getloadavg()
    rows = [measure(int(m * (1 << 20)), args.repeats, args.chunk_mib) for m in args.mib]
    if MPI.COMM_WORLD.Get_rank() == 0:
        res = {"ranks": MPI.COMM_WORLD.Get_size(), "glibc_tunables":
               os.environ.get("GLIBC_TUNABLES", ""), "chunk_mib": args.chunk_mib,
               "load_before_after": [*load0, *os.getloadavg()], "rows": rows}
        print(json.dumps(res, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
