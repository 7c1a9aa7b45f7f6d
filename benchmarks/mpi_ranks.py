"""Rank-side MPI timings: run under ``mpiexec -n N``; rank 0 prints/writes JSON.

Every op is timed inside the ranks (``time.perf_counter`` between two barriers,
``_timing.slowest_rank_sample``), ``reps`` operations per sample; a sample's time is the
*maximum* over ranks (the step is as slow as the slowest rank). Per message size, every op
is warmed up once (compilation; excluded) and the ``--samples`` repetitions are
**interleaved** (``_timing.interleaved``: each repetition times every op once, the order
rotated by one per repetition). ``ops[op][d]`` is the median sample in seconds per operation
(what :mod:`cost_report` reads), ``samples[op][d]`` every per-repetition value, and
``ratios["ours / raw"][d]`` the min and median of the per-repetition ratio for the pairs of
:data:`PAIRS`, where raw MPI does the same work in the same dtype (float32):
``MpiComm.neighbor_allreduce`` (in a ``fori_loop``, and one call per op) vs raw ``Sendrecv``
+ the NumPy float32 weighted sum, ``MpiComm.allreduce`` loop vs raw ``Allreduce``, and the
``mpi4jax.sendrecv`` loop vs the raw ``Sendrecv`` ring. ``load_before`` / ``load_after``
record ``os.getloadavg()``. Ops (those whose library is missing are left out):

``raw_pingpong``            one-way time of an mpi4py ``Send``/``Recv`` ping-pong between
                            ranks 0 and 1 (half the round trip): the alpha-beta fit's input
``raw_sendrecv_ring``       mpi4py ``Sendrecv`` to rank+1 from rank-1 (NumPy buffers)
``raw_exchange_exponential``  the exponential graph's schedule with mpi4py ``Sendrecv``
                            plus the NumPy weighted sum: neighbor averaging by hand
``raw_allreduce``           mpi4py ``Allreduce`` (MPI_SUM), NumPy buffers
``mpi4jax_sendrecv_loop``   ``mpi4jax.sendrecv`` ring, K inside one jitted ``fori_loop``
``bluefog_neighbor_allreduce``       ``MpiComm.neighbor_allreduce`` (exponential graph),
                            one jitted call per op
``bluefog_neighbor_allreduce_loop``  the same, K inside one jitted ``fori_loop``
``bluefog_one_peer_loop``   one-peer exponential graph, K inside one ``fori_loop``
``bluefog_allreduce_loop``  ``MpiComm.allreduce``, K inside one ``fori_loop``

Usage: ``mpiexec -n 4 python -m benchmarks.mpi_ranks --json out.json [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import numpy as np


#: (ours, raw MPI doing the same work): reported as min and median of the per-repetition
#: ratio ``ours / raw`` (in ``res["ratios"]["ours / raw"]``).
PAIRS = [
    ("bluefog_neighbor_allreduce_loop", "raw_exchange_exponential"),
    ("bluefog_neighbor_allreduce", "raw_exchange_exponential"),
    ("bluefog_allreduce_loop", "raw_allreduce"),
    ("mpi4jax_sendrecv_loop", "raw_sendrecv_ring"),
]


def _repeat(fn, n):
    """A function calling ``fn`` ``n`` times (one timing sample)."""
    def run():
        for _ in range(n):
            fn()
    return run


def _raw_ops(comm, topo, x, reps) -> dict:
    """Raw mpi4py ops of one message size: name -> (sample function, ops per sample)."""
    from mpi4py import MPI

    from ._raw import round_weights, weighted_sum

    rank, size = comm.Get_rank(), comm.Get_size()
    y = np.empty_like(x)
    right, left = (rank + 1) % size, (rank - 1) % size
    ops = {}
    if size >= 2:
        def pingpong():
            if rank == 0:
                comm.Send(x, dest=1, tag=7)
                comm.Recv(y, source=1, tag=8)
            elif rank == 1:
                comm.Recv(y, source=0, tag=7)
                comm.Send(x, dest=0, tag=8)
        ops["raw_pingpong"] = (_repeat(pingpong, reps), 2 * reps)  # one-way: half a round trip

        def ring():
            comm.Sendrecv(x, dest=right, sendtag=1, recvbuf=y, source=left, recvtag=1)
        ops["raw_sendrecv_ring"] = (_repeat(ring, reps), reps)

        sched = topo.schedule
        bufs = [np.empty_like(x) for _ in sched.rounds]
        # the sum stays in x's dtype, float32, as in the jitted exchange it is compared with
        s_self, weights = round_weights(sched, rank, x.dtype)
        acc = np.empty_like(x)

        def exchange():
            for rnd, buf in zip(sched.rounds, bufs):
                comm.Sendrecv(x, dest=int(rnd.destinations[rank]), sendtag=2, recvbuf=buf,
                              source=int(rnd.sources[rank]), recvtag=2)
            return weighted_sum(x, bufs, s_self, weights, acc)
        ops["raw_exchange_exponential"] = (_repeat(exchange, reps), reps)

    def allreduce():
        comm.Allreduce(x, y, op=MPI.SUM)
    ops["raw_allreduce"] = (_repeat(allreduce, reps), reps)
    return ops


def _jax_ops(comm, topo, x, reps, loop) -> dict:
    """mpi4jax and bluefog_dist ops of one message size (left out where not installed)."""
    try:
        import jax
        import jax.numpy as jnp
        import mpi4jax
        from jax import lax
    except ImportError:
        return {}
    rank, size = comm.Get_rank(), comm.Get_size()
    xj = jnp.asarray(x)
    lreps = max(2, reps // loop)

    def jitted(f, n):  # sample function and ops per sample of a jitted f doing n ops per call
        calls = lreps if n > 1 else reps
        return _repeat(lambda: f(xj).block_until_ready(), calls), calls * n

    def in_loop(body):
        return jitted(jax.jit(lambda v: lax.fori_loop(0, loop, body, v)), loop)

    ops = {}
    if size >= 2:
        left, right = (rank - 1) % size, (rank + 1) % size
        ops["mpi4jax_sendrecv_loop"] = in_loop(
            lambda _, u: mpi4jax.sendrecv(u, u, source=left, dest=right, comm=comm))
    try:
        from bluefog_dist import MpiComm
    except ImportError:
        return ops
    from bluefog.topology import one_peer_exponential_graph

    bf = MpiComm(comm)
    if size >= 2:
        ops["bluefog_neighbor_allreduce"] = jitted(
            jax.jit(lambda v: bf.neighbor_allreduce(v, topo)), 1)
        ops["bluefog_neighbor_allreduce_loop"] = in_loop(
            lambda k, u: bf.neighbor_allreduce(u, topo))
        op = one_peer_exponential_graph(size)
        ops["bluefog_one_peer_loop"] = in_loop(lambda k, u: bf.neighbor_allreduce(u, op, k))
    ops["bluefog_allreduce_loop"] = in_loop(lambda k, u: bf.allreduce(u))
    return ops


def measure(sizes, *, samples=5, loop=20, quick=False) -> dict:
    """Every available op for every message size (float32 counts), interleaved; rank 0's
    result (``None`` on the other ranks)."""
    from mpi4py import MPI

    from ._timing import interleaved, load_average, ratio_stats, slowest_rank_sample
    from ._topologies import make_topology

    comm = MPI.COMM_WORLD.Dup()
    rank, size = comm.Get_rank(), comm.Get_size()
    res = {"size": size, "floats": list(sizes), "ops": {}, "samples": {}, "ratios": {},
           "loop": loop, "repeats": samples, "load_before": load_average()}
    topo = make_topology("exponential", size) if size > 1 else None
    for d in sizes:
        reps = int(max(3, min(100, 2e7 // max(4 * d, 1) // 100)))
        if quick:
            reps = max(2, reps // 4)
        x = np.random.default_rng(rank).standard_normal(d).astype(np.float32)
        ops = {**_raw_ops(comm, topo, x, reps), **_jax_ops(comm, topo, x, reps, loop)}
        raw = interleaved({name: fn for name, (fn, _) in ops.items()}, samples,
                          sample=lambda fn: slowest_rank_sample(comm, fn))
        per_op = {name: [t / ops[name][1] for t in ts] for name, ts in raw.items()}
        for name, ts in per_op.items():
            res["ops"].setdefault(name, {})[str(d)] = statistics.median(ts)
            res["samples"].setdefault(name, {})[str(d)] = ts
        for ours, base in PAIRS:
            if ours in per_op and base in per_op:
                lo, med = ratio_stats(per_op[ours], per_op[base])
                res["ratios"].setdefault(f"{ours} / {base}", {})[str(d)] = {
                    "min": lo, "median": med}
    if topo is not None:
        res["exponential_rounds"] = topo.schedule.num_rounds
    res["load_after"] = load_average()
    return res if rank == 0 else None


def main(argv=None):
    p = argparse.ArgumentParser(description="Rank-side MPI timings (run under mpiexec).")
    p.add_argument("--floats", type=int, nargs="+",
                   default=[2, 256, 4096, 65536, 262144],
                   help="message sizes in float32 values per rank")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--loop", type=int, default=20, help="ops per jitted fori_loop")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--json", metavar="PATH", help="write rank 0's result here")
    args = p.parse_args(argv)
    res = measure(args.floats, samples=args.samples, loop=args.loop, quick=args.quick)
    if res is not None:
        res["load"] = os.getloadavg()  # after the run (load_before / load_after: strings)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        else:
            print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
