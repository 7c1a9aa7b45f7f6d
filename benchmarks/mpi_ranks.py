"""Rank-side MPI timings: run under ``mpiexec -n N``; rank 0 prints/writes JSON.

Every op is timed inside the ranks (``MPI.Wtime``-free: ``time.perf_counter`` between two
barriers), ``reps`` operations per sample, several samples; a sample's time is the *maximum*
over ranks (the step is as slow as the slowest rank) and the reported value is the median
sample, divided by ``reps``, in seconds per operation. Ops (those whose library is missing
are left out):

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
import time

import numpy as np


def _timeit(comm, fn, reps, samples):
    from mpi4py import MPI

    fn()  # warm-up (and compile)
    out = []
    for _ in range(samples):
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        el = (time.perf_counter() - t0) / reps
        out.append(comm.allreduce(el, op=MPI.MAX))
    return statistics.median(out)


def _raw_ops(comm, topo, x, reps, samples, record) -> None:
    """Raw mpi4py timings of one message size: ping-pong, ring, exponential exchange, Allreduce."""
    from mpi4py import MPI

    rank, size, d = comm.Get_rank(), comm.Get_size(), x.size
    y = np.empty_like(x)
    right, left = (rank + 1) % size, (rank - 1) % size
    if size >= 2:
        def pingpong():
            if rank == 0:
                comm.Send(x, dest=1, tag=7)
                comm.Recv(y, source=1, tag=8)
            elif rank == 1:
                comm.Recv(y, source=0, tag=7)
                comm.Send(x, dest=0, tag=8)
        record("raw_pingpong", d, _timeit(comm, pingpong, reps, samples) / 2)

        def ring():
            comm.Sendrecv(x, dest=right, sendtag=1, recvbuf=y, source=left, recvtag=1)
        record("raw_sendrecv_ring", d, _timeit(comm, ring, reps, samples))

        sched = topo.schedule
        bufs = [np.empty_like(x) for _ in sched.rounds]
        # weights as float32 scalars: NumPy 2 would promote a float64 scalar times a float32
        # array to float64 (an 11x slower baseline doing different work); the sum stays in
        # x's dtype, float32, as in the jitted exchange it is compared with
        s_self = x.dtype.type(sched.self_weights[rank])
        weights = [x.dtype.type(rnd.weights[rank]) for rnd in sched.rounds]
        acc = np.empty_like(x)

        def exchange():
            np.multiply(x, s_self, out=acc)
            for rnd, buf, w in zip(sched.rounds, bufs, weights):
                comm.Sendrecv(x, dest=int(rnd.destinations[rank]), sendtag=2, recvbuf=buf,
                              source=int(rnd.sources[rank]), recvtag=2)
                np.add(acc, w * buf, out=acc)
            return acc
        record("raw_exchange_exponential", d, _timeit(comm, exchange, reps, samples))

    def allreduce():
        comm.Allreduce(x, y, op=MPI.SUM)
    record("raw_allreduce", d, _timeit(comm, allreduce, reps, samples))


def _jax_ops(comm, topo, x, reps, samples, loop, record) -> None:
    """mpi4jax and bluefog_dist timings of one message size (skipped where not installed)."""
    try:
        import jax
        import jax.numpy as jnp
        import mpi4jax
        from jax import lax
    except ImportError:
        return
    rank, size, d = comm.Get_rank(), comm.Get_size(), x.size
    xj = jnp.asarray(x)
    lreps = max(2, reps // loop)

    def per_op(fn, n):  # seconds per op of a jitted function doing n ops
        return _timeit(comm, lambda: fn(xj).block_until_ready(), lreps if n > 1 else reps,
                       samples) / n
    if size >= 2:
        left, right = (rank - 1) % size, (rank + 1) % size
        record("mpi4jax_sendrecv_loop", d, per_op(jax.jit(lambda v: lax.fori_loop(
            0, loop, lambda _, u: mpi4jax.sendrecv(u, u, source=left, dest=right, comm=comm),
            v)), loop))
    try:
        from bluefog_dist import MpiComm
    except ImportError:
        return
    from bluefog.topology import one_peer_exponential_graph

    bf = MpiComm(comm)
    if size >= 2:
        record("bluefog_neighbor_allreduce", d,
               per_op(jax.jit(lambda v: bf.neighbor_allreduce(v, topo)), 1))
        record("bluefog_neighbor_allreduce_loop", d, per_op(jax.jit(lambda v: lax.fori_loop(
            0, loop, lambda k, u: bf.neighbor_allreduce(u, topo), v)), loop))
        op = one_peer_exponential_graph(size)
        record("bluefog_one_peer_loop", d, per_op(jax.jit(lambda v: lax.fori_loop(
            0, loop, lambda k, u: bf.neighbor_allreduce(u, op, k), v)), loop))
    record("bluefog_allreduce_loop", d, per_op(jax.jit(lambda v: lax.fori_loop(
        0, loop, lambda k, u: bf.allreduce(u), v)), loop))


def measure(sizes, *, samples=5, loop=20, quick=False) -> dict:
    """Run every available op for every message size (float32 counts); rank 0's result."""
    from mpi4py import MPI

    from ._topologies import make_topology

    comm = MPI.COMM_WORLD.Dup()
    rank, size = comm.Get_rank(), comm.Get_size()
    res = {"size": size, "floats": list(sizes), "ops": {}, "loop": loop}

    def record(op, d, t):
        res["ops"].setdefault(op, {})[str(d)] = t

    topo = make_topology("exponential", size) if size > 1 else None
    for d in sizes:
        reps = int(max(3, min(100, 2e7 // max(4 * d, 1) // 100)))
        if quick:
            reps = max(2, reps // 4)
        x = np.random.default_rng(rank).standard_normal(d).astype(np.float32)
        _raw_ops(comm, topo, x, reps, samples, record)
        _jax_ops(comm, topo, x, reps, samples, loop, record)
    if topo is not None:
        res["exponential_rounds"] = topo.schedule.num_rounds
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
        res["load"] = os.getloadavg()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        else:
            print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
