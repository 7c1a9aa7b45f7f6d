"""Run under ``mpiexec -n 4`` by tests/test_dist_windows.py: win_info, cross-rank checks,
run_async's compute_delay and the non-blocking window ops on real MPI windows.

Checks, on every rank (each failure prints ``FAIL`` and the job exits non-zero):
1. ``MpiWindowComm.win_info`` equals the simulator's ``win_info`` (sources, versions,
   stamps; the oracle is the other backend) after three puts, after a read (versions 0,
   stamps kept) and after a get (stamp = the neighbour's send count);
2. a window created with float32 on rank 1 and float64 elsewhere, or with another pytree
   structure on rank 2, raises ValueError on every rank; a send whose dtype differs from
   the window's raises ValueError;
3. ``run_async`` with a negative ``compute_delay`` on rank 2 only, a NaN, or a per-rank
   sequence of the wrong length, or ``jit='yes'`` on one rank, raises ValueError on every
   rank (agreed), and a valid per-rank sequence runs;
4. non-blocking really returns before the transfer: rank 1 holds an exclusive lock on its
   own window; rank 0's ``accumulate_nonblocking`` to it returns, ``poll`` is False and
   rank 1's slot is untouched until rank 1 unlocks; then ``wait`` completes and the value
   arrives once; the payload was copied at the call (changing ``x`` afterwards changes
   nothing); a non-blocking put followed by a blocking one lands in issue order; 2 MiB
   accumulates (blocking and not) sum exactly;
5. ``async_sgp(lr, overlap=True)`` under ``run_async`` (rank 0 3x slower): the push-sum
   weight held by the ranks plus what sits in their slots is n to 1e-12.
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import algorithms  # noqa: E402
from algorithms.problems import quadratic  # noqa: E402
from bluefog.topology import exponential_graph  # noqa: E402
from bluefog_dist import failfast  # noqa: E402
from rank_checks import RankChecks  # noqa: E402 (tests/mpi, the script's folder)
from bluefog_dist.window_comm import MpiWindowComm, run_async  # noqa: E402
from bluefog_dist.windows import MpiWindows, _own  # noqa: E402
from bluefog_sim import spmd  # noqa: E402

failfast.install()

comm = MPI.COMM_WORLD
rank, n = comm.Get_rank(), comm.Get_size()
topo = exponential_graph(n)
X0 = np.arange(n * 3, dtype=np.float64).reshape(n, 3) ** 1.5
checks = RankChecks(comm)
check, raises = checks.check, checks.raises


# 1. win_info against the simulator's
def ops(c, x, wins=None):
    wins = c.win_create(wins, x, "i", topo)
    for k in range(3):
        wins = c.win_put(wins, x * (k + 1), "i")
    return wins


def sim_side(c, x):
    wins = ops(c, x)
    a = c.win_info(wins, "i")
    _, wins = c.win_update(wins, "i")
    b = c.win_info(wins, "i")
    wins = c.win_get(wins, "i")
    return a, b, c.win_info(wins, "i")


want = jax.tree_util.tree_map(lambda v: np.asarray(v)[rank], spmd(sim_side, n)(jnp.asarray(X0)))
wins = MpiWindows()
wc = MpiWindowComm(wins)
w = ops(wc, jnp.asarray(X0[rank]))
wc.barrier()                                        # every put has landed
got = [wc.win_info(w, "i")]
_, w = wc.win_update(w, "i")
got.append(wc.win_info(w, "i"))
wc.barrier()                                        # nobody sends any more: gets are stable
w = wc.win_get(w, "i")
got.append(wc.win_info(w, "i"))
for tag, g, s in zip(["after puts", "after update", "after get"], got, want):
    for field in ("sources", "versions", "stamps"):
        check(np.array_equal(np.asarray(getattr(g, field)), getattr(s, field)),
              f"win_info {tag} {field}: MPI {np.asarray(getattr(g, field))} != sim "
              f"{getattr(s, field)}")
check(np.all(np.asarray(got[0].in_flight) == -1) and np.all(np.isnan(got[0].arrived)),
      "win_info: in_flight/arrived not marked as not measurable")
wc.win_free(w, "i")

# 2. cross-rank dtype and structure checks, local dtype check
raises(lambda: wc.win_create(None, jnp.zeros(3, jnp.float32 if rank == 1 else jnp.float64),
                             "d", topo), "dtype", "dtype differs on rank 1")
raises(lambda: wc.win_create(None, (jnp.zeros(2), jnp.zeros(1)) if rank == 2 else
                             {"a": jnp.zeros(2), "b": jnp.zeros(1)}, "s", topo), "layout",
       "pytree structure differs on rank 2")
w = wc.win_create(None, jnp.zeros(3), "ok", topo)
raises(lambda: wc.win_put(w, jnp.zeros(3, jnp.float32), "ok"), "must match window 'ok'",
       "float32 send into a float64 window")
wc.win_free(w, "ok")

# 3. compute_delay is validated on every rank
prob = quadratic(jnp.asarray(X0))
neg = "compute_delay must be a finite real number in [0, inf]; got -1.0"
for what, delay, fragment in [("negative on rank 2", -1.0 if rank == 2 else 0.0, neg),
                              ("NaN", float("nan"), "compute_delay must be a finite"),
                              ("wrong length", [0.0] * (n - 1),
                               f"one delay per rank ({n})")]:
    raises(lambda: run_async(algorithms.async_push_sum(), prob, topo, 2, compute_delay=delay,
                             comm=wc), fragment, f"compute_delay {what}")
raises(lambda: run_async(algorithms.async_push_sum(), prob, topo, 2, comm=wc,
                         jit="yes" if rank == 3 else False),
       "run_async: jit must be True or False; got 'yes'", "jit='yes' on rank 3")
state, _ = run_async(algorithms.async_push_sum(), prob, topo, 2, comm=wc, x0=jnp.asarray(X0),
                     compute_delay=[1e-3 * (r + 1) for r in range(n)])
check(int(state.count) == 2, "a valid per-rank compute_delay sequence did not run")
wc.win_free(state.windows)

# 4. non-blocking: returns before the transfer, copies the payload, keeps the issue order
wins.create(np.zeros(3), "nb", topo, zero_init=True)
nb = wins.windows["nb"]
flag = np.zeros(1, np.int64)
if rank == 1:
    with _own(nb, rank, MPI):                      # nobody's operation on us can complete
        comm.Send(flag, dest=0, tag=7)             # "locked"
        comm.Recv(flag, source=0, tag=8)           # rank 0 issued and polled
        slot = nb.buf[1 + nb.ins.index(0)].copy()
    check(slot[-1] == 0 and not slot[1:-1].any(), f"slot written while locked: {slot}")
if rank == 0:
    comm.Recv(flag, source=1, tag=7)
    x = np.ones(3)
    t = wins.accumulate_nonblocking(x, "nb", dst_weights={1: 2.0})
    x[:] = 100.0                                   # the payload was copied at the call
    polled = wins.poll(t)
    check(not polled, "poll() true while the target held an exclusive lock")
    comm.Send(np.array([int(polled)], np.int64), dest=1, tag=8)
    wins.wait(t)
    check(wins.poll(t) and wins.pending() == 0, "wait() returned before completion")
comm.Barrier()
if rank == 1:
    v = wins.versions("nb")
    got = wins.update("nb", 0.0, {j: 1.0 for j in nb.ins}, reset=True)
    check(v[0] == 1 and np.allclose(got, 2.0), f"after wait: versions {v}, value {got}")
wins.create(np.zeros(3), "ord", topo, zero_init=True)
t = wins.put_nonblocking(np.full(3, 1.0 + rank), "ord")
wins.put(np.full(3, 10.0 + rank), "ord")           # blocking, queued behind the first
check(wins.poll(t), "a blocking op returned before an earlier non-blocking one completed")
comm.Barrier()
info, o = wins.info("ord"), wins.windows["ord"]
for s, j in enumerate(o.ins):
    check(info["versions"][j] == 2 and info["stamps"][j] == 1
          and np.allclose(o.buf[1 + s, 1:-1], 10.0 + j), f"issue order from {j}: {info}")
wins.free("nb")
wins.free("ord")
# large payloads (2 MiB): MPI may read an origin buffer as late as Unlock, so every payload
# must stay alive until then (a temporary freed after Accumulate crashed at 1 MiB)
big = np.arange(1 << 18, dtype=np.float64)
wins.create(np.zeros(big.size), "big", topo, zero_init=True)
wins.accumulate(big * (rank + 1), "big")
wins.wait(wins.accumulate_nonblocking(big * (rank + 1), "big"))
comm.Barrier()
ins = wins.windows["big"].ins
got = wins.update("big", 0.0, {j: 1.0 for j in ins}, reset=True)
check(np.array_equal(got, 2 * sum(j + 1 for j in ins) * big), "2 MiB accumulates: wrong sum")
wins.free("big")

# 5. SGP's overlap variant on the non-blocking ops, no lock-step
state, wc = run_async(algorithms.async_sgp(0.05, overlap=True), prob, topo, 30, comm=wc,
                      compute_delay=3e-3 if rank == 0 else 1e-3)
real = (wc.win_in_neighbors(state.windows, "push_sum") >= 0).astype(jnp.float64)
(mx, mw), _ = wc.win_update(state.windows, "push_sum", 0.0, real, reset=True)
total = comm.allreduce(float(state.w) + float(mw))
check(abs(total - n) < 1e-12, f"overlap SGP: sum of weights {total!r} != {n}")
check(bool(wc.win_poll(state.windows, state.handle)), "overlap SGP: last send not complete")
finite = comm.allreduce(int(np.all(np.isfinite(np.asarray(state.x)))), op=MPI.MIN)
check(finite == 1, "overlap SGP: non-finite iterate")
wc.win_free(state.windows)
wins.close()
if rank == 0:
    print(f"gaps ok={checks.ok} overlap SGP |sum w - n| = {abs(total - n):.1e}", flush=True)
sys.exit(checks.exit_status())
