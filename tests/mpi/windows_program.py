"""Run under ``mpiexec -n 4`` by tests/test_dist_windows.py: real one-sided MPI windows.

Checks, on every rank (each failure prints ``FAIL`` and exits non-zero):
1. asynchronous push-sum with random per-rank compute delays (rank 0 5x slower), no barrier
   between iterations: after a final barrier and collect, sum of weights = n to 1e-12 and
   every ratio = the exact average of the initial values to 1e-10;
2. put / update against the dense oracle ``W @ X`` (after a barrier);
3. bad input raises ValueError on every rank: unknown window name, put before create,
   shapes that differ across ranks (refused by one allgather, no hang);
4. win_free and exit leave no rank blocked (the parent test has a timeout).
"""

import sys
import time

import numpy as np
from mpi4py import MPI

from bluefog.topology import exponential_graph
from bluefog_dist import failfast
from bluefog_dist.windows import MpiWindows

failfast.install()  # an uncaught error on one rank ends the job instead of blocking others

comm = MPI.COMM_WORLD
rank, n = comm.Get_rank(), comm.Get_size()
topo = exponential_graph(n)
W = np.asarray(topo.weights)
X0 = np.arange(n * 3, dtype=np.float64).reshape(n, 3) ** 1.5
ok = True


def check(cond, what):
    global ok
    if not cond:
        ok = False
        print(f"FAIL rank {rank}: {what}", flush=True)


wins = MpiWindows()
# 1. asynchronous push-sum
wins.create(np.zeros(4), "ps", topo, zero_init=True)
z = np.append(X0[rank], 1.0)                       # (x, w)
rng = np.random.default_rng(rank)
outs = {i: W[i, rank] for i in range(n) if i != rank and W[i, rank] != 0}
t0 = time.perf_counter()
for k in range(150):
    time.sleep(rng.uniform(0, 1e-3) * (5 if rank == 0 else 1))  # heterogeneous compute
    wins.accumulate(z, "ps", dst_weights=outs, self_weight=W[rank, rank])
    z = wins.update_then_collect("ps")
comm.Barrier()                                     # every accumulate has completed (Unlock)
z = wins.update_then_collect("ps")
total_w = comm.allreduce(z[-1])
check(abs(total_w - n) < 1e-12, f"sum of push-sum weights {total_w!r} != {n}")
err = np.abs(z[:-1] / z[-1] - X0.mean(axis=0)).max()
check(err < 1e-10, f"ratio error {err:.3e} > 1e-10")
# 2. put/update vs dense oracle
wins.create(X0[rank], "p", topo)
wins.put(X0[rank], "p")
comm.Barrier()
v = wins.versions("p")
check(all(c == 1 for c in v.values()), f"versions after one put: {v}")
got = wins.update("p")
check(np.allclose(got, (W @ X0)[rank], atol=1e-12), "put + update != W @ X")
check(all(c == 0 for c in wins.versions("p").values()), "versions not reset by update")
# 3. bad input, on every rank
for what, fn in [("unknown name", lambda: wins.update("nope")),
                 ("put before create", lambda: wins.put(X0[rank], "later")),
                 ("shapes differ across ranks",
                  lambda: wins.create(np.zeros(2 + (rank == 1)), "bad", topo))]:
    try:
        fn()
        check(False, f"{what}: no error")
    except ValueError as exc:
        check("win_" in str(exc), f"{what}: unclear message {exc}")
comm.Barrier()
# 4. free and exit
wins.close()
if rank == 0:
    print(f"windows ok={ok} async push-sum 150 iterations in {time.perf_counter() - t0:.2f} s,"
          f" ratio error {err:.2e}, |sum w - n| = {abs(total_w - n):.1e}", flush=True)
sys.exit(0 if comm.allreduce(0 if ok else 1) == 0 else 1)
