"""The hybrid backend (a block of agents per rank) under ``mpiexec``: one launch, every check.

Usage: ``mpiexec -n R python tests/mpi/block_checks.py N STEPS [--no-ops]`` (``N`` agents,
``N / R`` per rank). Run by ``tests/test_dist_block.py`` as ONE ``mpiexec -n 4`` launch.

Oracles (independent of the code under test):

* every op against dense NumPy: ``neighbor_allreduce`` = ``W @ X`` (a circulant graph, a
  non-circulant graph whose rank-level exchange needs edge colouring, a time-varying
  topology at several steps), ``allreduce`` = the exact mean, ``allgather`` = ``X``,
  ``broadcast`` = ``X[root]``;
* DGD and exact diffusion (``allow_asymmetric=True``: the graph is directed) on
  ``exponential_graph(N)``: every rank's block of the final parameters and (for small
  ``N``) the recorded metrics at every step equal ``bluefog_sim.run`` to 1e-10 in float64
  (the simulator is itself checked against dense recursions elsewhere);
* a bad ``agents_per_rank`` on one rank raises ``AgreementError`` on every rank, and an
  ``on_segment`` failure on one rank raises ``CallbackError`` on every rank (no hang).

Rank 0 prints one ``BLOCK OK <check> <max abs diff>`` line per check; any failure aborts
the MPI job (non-zero exit status).
"""

import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import algorithms as A  # noqa: E402
import bluefog_dist  # noqa: E402
import bluefog_sim  # noqa: E402
from algorithms import problems as P  # noqa: E402
from bluefog.topology import (erdos_renyi_graph, exponential_graph,  # noqa: E402
                              one_peer_exponential_graph)
from bluefog.engine import CallbackError  # noqa: E402
from bluefog_dist.block_comm import BlockComm  # noqa: E402

TOL = 1e-10
WORLD = MPI.COMM_WORLD
RANK, R = WORLD.Get_rank(), WORLD.Get_size()


def report(name, diff):
    if RANK == 0:
        print(f"BLOCK OK {name} {diff:.3e}", flush=True)


def check_ops(n):
    """Every op on this rank's block against the dense NumPy oracle."""
    k = n // R
    comm = BlockComm(bluefog_dist.default_comm(), k)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 5))
    mine = jnp.asarray(X[RANK * k:(RANK + 1) * k])

    def on_block(fn):
        return jax.jit(jax.vmap(fn, axis_name=comm.axis_name))

    cases = [("exponential", exponential_graph(n), None),
             ("erdos_renyi", erdos_renyi_graph(n, 0.15, seed=2), None)]
    dyn = one_peer_exponential_graph(n)
    cases += [(f"one_peer_t{t}", dyn, t) for t in (0, 3, dyn.period + 1)]
    for name, topo, t in cases:
        if t is None:
            got = on_block(lambda x: comm.neighbor_allreduce(x, topo))(mine)
            W = topo.weights
        else:  # traced step counter: lax.switch over the patterns
            got = on_block(lambda x, s: comm.neighbor_allreduce(x, topo, s))(
                mine, jnp.full(k, t, jnp.int32))
            W = topo.at(t).weights
        full = np.concatenate(WORLD.allgather(np.asarray(got)))
        diff = float(np.abs(full - W @ X).max())
        assert diff <= TOL, (name, diff)
        report(f"neighbor_allreduce_{name}", diff)
    mean = on_block(comm.allreduce)(mine)
    gathered = on_block(comm.allgather)(mine)
    root = n - 3
    bcast = on_block(lambda x: comm.broadcast(x, root))(mine)
    for name, got, want in [("allreduce", mean, np.broadcast_to(X.mean(0), (k, 5))),
                            ("allgather", gathered, np.broadcast_to(X, (k, n, 5))),
                            ("broadcast", bcast, np.broadcast_to(X[root], (k, 5)))]:
        diff = float(np.abs(np.asarray(got) - want).max())
        assert diff <= TOL, (name, diff)
        report(name, diff)


def check_runs(n, steps):
    """DGD and exact diffusion: this rank's block equals the simulator's rows."""
    k = n // R
    rng = np.random.default_rng(11)
    problem = P.least_squares(rng.normal(size=(n, 8, 3)) + rng.normal(size=(n, 1, 3)),
                              rng.normal(size=(n, 8)))
    topo = exponential_graph(n)
    small = n <= 64
    x0 = rng.normal(size=(n, 3))  # rank q's programs get rows q k .. q k + k - 1
    kw = dict(seed=4, x0=x0, record_every=1 if small else steps, progress=False)
    for name, alg in [("dgd", A.dgd(0.05)), ("exact_diffusion", A.exact_diffusion(0.05, allow_asymmetric=True))]:
        t0 = time.perf_counter()
        dist = bluefog_dist.run(alg, problem, topo, steps, agents_per_rank=k, **kw)
        seconds = time.perf_counter() - t0
        sim = bluefog_sim.run(alg, problem, topo, steps, **kw)
        want = np.asarray(sim.params)
        assert np.abs(want - x0).max() > 1e-3, "did not move"
        diff = float(np.abs(np.asarray(dist.params) - want[RANK * k:(RANK + 1) * k]).max())
        if small:  # the default metrics (loss, consensus distance, ...) at every step
            assert set(dist.history) == set(sim.history), (dist.history.keys(), sim.history.keys())
            hist = max(float(np.abs(dist.history[x] - sim.history[x]).max()) for x in sim.history)
            diff = max(diff, hist)
        diff = WORLD.allreduce(diff, op=MPI.MAX)
        assert diff <= TOL, (name, diff)
        report(f"run_{name}_n{n}_k{k}", diff)
        if RANK == 0:
            print(f"BLOCK TIME {name} n={n} k={k} steps={steps} {seconds:.2f}s "
                  f"(run {dist.run_seconds:.2f}s, compile {dist.compile_seconds:.2f}s)", flush=True)


def check_refusal(n):
    """A bad agents_per_rank on the last rank only: AgreementError on every rank."""
    bad = 0 if RANK == R - 1 else n // R
    problem = P.quadratic(np.zeros((n, 2)))
    try:
        bluefog_dist.run(A.dgd(0.1), problem, exponential_graph(n), 3, progress=False,
                         agents_per_rank=bad)
    except bluefog_dist.AgreementError as err:
        assert "agents_per_rank must be" in str(err), err
        report("refusal", 0.0)
    else:
        raise AssertionError("a bad agents_per_rank on one rank was not refused")


def check_callback_failure(n):
    """on_segment raising on rank 1 only: CallbackError naming rank 1 on every rank."""
    problem = P.quadratic(np.arange(2.0 * n).reshape(n, 2))

    def on_segment(step, state, history):
        if RANK == 1 % R:
            raise OSError("disk full")

    try:
        bluefog_dist.run(A.dgd(0.1), problem, exponential_graph(n), 4, progress=False,
                         record_every=2, segment_every=2, on_segment=on_segment,
                         agents_per_rank="auto")
    except CallbackError as err:
        assert f"rank {1 % R}: OSError: disk full" in str(err), err
        report("callback_failure", 0.0)
    else:
        raise AssertionError("an on_segment failure on one rank was not raised everywhere")


def main():
    warnings.filterwarnings("ignore", message="exact_diffusion: running on the non-symmetric")
    n, steps = int(sys.argv[1]), int(sys.argv[2])
    if "--no-ops" not in sys.argv:
        check_ops(n)
        check_refusal(n)
        check_callback_failure(n)
    check_runs(n, steps)
    return 0


if __name__ == "__main__":
    try:
        status = main()
    except Exception:
        import traceback

        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        WORLD.Abort(1)
    sys.exit(status)
