"""One process per agent: the DGD workload of :mod:`_workload` under ``mpiexec -n N`` with
``bluefog_dist.MpiComm`` (exponential graph), ``K`` steps inside one jitted ``fori_loop``.

The program is compiled and run once first (warm-up, excluded); then ``--samples`` runs are
timed between barriers. Rank 0 writes ``{"size": N, "per_step": seconds, "samples": [...]}``
(slowest rank per sample, median over samples). ``compare.py`` launches it once per
interleaved repetition with ``--samples 1``, alternating with the in-process simulator, so
the per-repetition ratio compares the two under the same machine load. Usage::

    mpiexec -n 4 python -m benchmarks.dgd_ranks --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from jax import lax
    from mpi4py import MPI

    from . import _workload as W
    from ._topologies import make_topology
    from bluefog_dist import MpiComm

    world = MPI.COMM_WORLD
    comm = MpiComm(world)
    rank, n = world.Get_rank(), world.Get_size()
    topo = make_topology("exponential", n)
    A, y = W.data(n)
    Ai, yi = jnp.asarray(A[rank]), jnp.asarray(y[rank])

    @jax.jit
    def run(x):
        mix = lambda v: comm.neighbor_allreduce(v, topo)  # noqa: E731
        return lax.fori_loop(0, args.steps, lambda k, v: W.dgd_step(v, Ai, yi, mix), x)

    x = jnp.zeros(W.DIM, jnp.float32)
    run(x).block_until_ready()
    samples = []
    for _ in range(args.samples):
        world.Barrier()
        t0 = time.perf_counter()
        run(x).block_until_ready()
        samples.append(world.allreduce((time.perf_counter() - t0) / args.steps, op=MPI.MAX))
    if rank == 0:
        res = {"size": n, "per_step": statistics.median(samples), "samples": samples}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f)
        else:
            print(json.dumps(res))


if __name__ == "__main__":
    main()
