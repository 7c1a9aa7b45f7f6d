"""Every algorithm of the library, under MPI and in the simulator: same trajectories.

Run by ``tests/test_algorithms_mpi.py`` as ONE ``mpiexec -n 4`` launch (each launch pays JAX
start-up and compilation on every rank, so all algorithms share it). Each rank runs every
algorithm for ``STEPS`` steps with ``bluefog_dist.run`` (rank ``i`` = agent ``i``), rank 0
also with ``bluefog_sim.run`` (all agents in one process), recording the whole stacked trajectory at
every step through a metric that allgathers the parameters, and checks

* this rank's final parameters are row ``rank`` of the allgathered MPI trajectory,
* on rank 0, the stacked MPI trajectory equals the simulator's to 1e-6 at every step
  (float64), so every rank's trajectory matches its simulated row.

Rank 0 prints one ``CROSS-BACKEND OK <name> <max abs diff>`` line per algorithm; any failure
raises, which aborts the MPI job (non-zero exit status).
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
from mpi4py import MPI  # noqa: E402

import algorithms as A  # noqa: E402
import bluefog_dist  # noqa: E402
import bluefog_sim  # noqa: E402
from algorithms import problems as P  # noqa: E402
from bluefog.topology import Topology, one_peer_exponential_graph, ring_graph  # noqa: E402

STEPS = 60
TOL = 1e-6


def column_stochastic(n):
    """Directed ring plus a chord 0 -> n/2, out-degree weights: column- but not row-stochastic
    for n >= 4."""
    adj = np.eye(n)
    for j in range(n):
        adj[(j + 1) % n, j] = 1.0
    if n >= 4:
        adj[n // 2, 0] = 1.0
    return Topology(adj / adj.sum(axis=0, keepdims=True), require="column",
                    name=f"directed_ring_chord(n={n})")


def cases(n):
    sym, dyn, col = ring_graph(n), one_peer_exponential_graph(n), column_stochastic(n)
    return [
        ("consensus", A.consensus(), dyn),
        ("push_sum", A.push_sum(), col),
        ("dgd", A.dgd(0.1), dyn),
        ("diffusion_atc", A.diffusion(0.1, style="atc"), sym),
        ("diffusion_awc", A.diffusion(0.1, style="awc"), dyn),
        ("exact_diffusion", A.exact_diffusion(0.1), sym),
        ("extra", A.extra(0.1), sym),
        ("nids", A.nids(0.1), sym),
        ("gradient_tracking", A.gradient_tracking(0.05), dyn),
        ("gradient_tracking_atc", A.gradient_tracking(0.1, style="atc"), sym),
        ("push_diging", A.push_diging(0.05), col),
        ("dsgd", A.dsgd(0.05), dyn),
        ("dsgd_local_momentum", A.dsgd(0.05, momentum=0.5, steps_per_communication=3), dyn),
        ("gradient_allreduce", A.gradient_allreduce(0.1, momentum=0.5), sym),
    ]


def trajectory_metrics(params, ctx):
    """All agents' flattened parameters, as scalars identical on every agent."""
    flat, _ = ravel_pytree(params)
    everyone = ctx.comm.allgather(flat)
    return {f"x{i:03d}_{k:03d}": everyone[i, k]
            for i in range(everyone.shape[0]) for k in range(everyone.shape[1])}


def stacked(history, n):
    keys = sorted(k for k in history if k.startswith("x"))
    return np.stack([history[k] for k in keys], axis=1).reshape(len(history["step"]), n, -1)


def main():
    world = MPI.COMM_WORLD
    rank, n = world.Get_rank(), world.Get_size()
    rng = np.random.default_rng(5)
    Amat = rng.normal(size=(n, 10, 3)) + rng.normal(size=(n, 1, 3))
    y = rng.normal(size=(n, 10))
    problem = P.least_squares(Amat, y, batch_size=4)  # minibatches: dsgd, gradient_allreduce
    x0 = rng.normal(size=(n, 3))
    kw = dict(seed=7, x0=x0, record_every=1, progress=False, metrics=trajectory_metrics)
    for name, alg, topo in cases(n):
        dist = bluefog_dist.run(alg, problem, topo, STEPS, **kw)
        got = stacked(dist.history, n)
        assert got.shape == (STEPS + 1, n, 3), (name, got.shape)
        # this rank's own parameters are its row of the allgathered MPI trajectory ...
        np.testing.assert_allclose(ravel_pytree(dist.params)[0], got[-1, rank], rtol=TOL, atol=TOL,
                                   err_msg=name)
        if rank == 0:
            # ... and the whole MPI trajectory equals the simulator's (run on rank 0 only, to
            # spare the 2-core CI machine three redundant compilations per algorithm)
            sim = bluefog_sim.run(alg, problem, topo, STEPS, **kw)
            want = stacked(sim.history, n)
            np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL, err_msg=name)
            np.testing.assert_allclose(got[-1], np.asarray(sim.params), rtol=TOL, atol=TOL, err_msg=name)
            assert np.abs(want[-1] - want[0]).max() > 1e-3, f"{name}: trajectory did not move"
            diff = float(np.abs(got - want).max())
            print(f"CROSS-BACKEND OK {name} {diff:.3e} ({topo.name})", flush=True)
    return 0


if __name__ == "__main__":
    try:
        status = main()
    except Exception:
        import traceback

        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)
    sys.exit(status)
