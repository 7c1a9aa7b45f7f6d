"""The same fault model under MPI and in the simulator: the same lost messages, the same
trajectories.

Run by ``tests/test_faults_mpi.py`` as ONE ``mpiexec -n 4`` launch. Every rank runs each
case with ``bluefog_dist.run(..., faults=f)`` (every message is sent; the receiver ignores
the ones the model marks lost, from the same ``(seed, t, receiver, sender)`` hash); rank 0
also runs ``bluefog_sim.run(..., faults=f)`` and compares the allgathered MPI parameters with
the simulator's rows (float64), and checks that the faults changed the result (fault-free
reference: ``W^T X0 / W^T 1`` in NumPy, which is consensus and push-sum on this doubly
stochastic graph), so the comparison can fail. The last case runs the hybrid backend
(``agents_per_rank=2``, 8 agents on 4 ranks). Rank 0 prints ``FAULTS OK <case> <diff>``.
"""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import algorithms as A  # noqa: E402
import bluefog_dist  # noqa: E402
import bluefog_sim  # noqa: E402
from algorithms import problems as P  # noqa: E402
from bluefog.faults import Faults, LinkOutage, MessageLoss, NodeCrash, Partition  # noqa: E402
from bluefog.topology import exponential_graph  # noqa: E402

STEPS = 30


def cases():
    everything = Faults(MessageLoss(0.3, seed=7), LinkOutage([(0, 1)], 2, 6),
                        Partition([[0, 1]], 8, 12), NodeCrash(3, at=4, rejoin=10, state="reset"),
                        NodeCrash(2, at=20))
    return [("consensus_renormalise", A.consensus(), everything),
            ("robust_push_sum_loss_crash", A.robust_push_sum(),
             Faults(MessageLoss(0.3, seed=1), NodeCrash(1, at=3, rejoin=15)))]


def main():
    world = MPI.COMM_WORLD
    rank, n = world.Get_rank(), world.Get_size()
    X0 = np.random.default_rng(0).normal(size=(n, 3))
    prob, topo = P.quadratic(X0), exponential_graph(n)
    for name, alg, faults in cases():
        mine = bluefog_dist.run(alg, prob, topo, STEPS, x0=X0, faults=faults,
                                record_every=STEPS)
        stacked = np.stack(world.allgather(np.asarray(mine.params)))
        _compare(name, alg, faults, prob, topo, X0, stacked, rank == 0)
        world.Barrier()
    # a sweep: another seed, rate and crash window of the same structure reuses the compiled
    # program (the fault tables are inputs of the program) and still follows the simulator
    alg = A.robust_push_sum()
    first = Faults(MessageLoss(0.2, seed=11), NodeCrash(1, at=3, rejoin=15))
    second = Faults(MessageLoss(0.4, seed=12), NodeCrash(1, at=5, rejoin=12))
    assert first.structure == second.structure
    bluefog_dist.run(alg, prob, topo, STEPS, x0=X0, faults=first, record_every=STEPS)
    again = bluefog_dist.run(alg, prob, topo, STEPS, x0=X0, faults=second, record_every=STEPS)
    assert again.compile_seconds == 0.0, again.compile_seconds
    stacked = np.stack(world.allgather(np.asarray(again.params)))
    _compare("sweep_reuses_the_program", alg, second, prob, topo, X0, stacked, rank == 0)
    world.Barrier()
    # the hybrid backend: 2 agents per rank, the same masks
    X0 = np.random.default_rng(1).normal(size=(2 * n, 3))
    prob, topo = P.quadratic(X0), exponential_graph(2 * n)
    faults = Faults(MessageLoss(0.3, seed=3), NodeCrash(5, at=2, rejoin=9, state="reset"))
    mine = bluefog_dist.run(A.robust_push_sum(), prob, topo, STEPS, x0=X0, faults=faults,
                            record_every=STEPS, agents_per_rank=2)
    stacked = np.concatenate(world.allgather(np.asarray(mine.params)))
    _compare("hybrid_robust_push_sum", A.robust_push_sum(), faults, prob, topo, X0, stacked,
             rank == 0)


def _compare(name, alg, faults, prob, topo, X0, stacked, root):
    if root:
        n = len(X0)
        sim = np.asarray(bluefog_sim.run(alg, prob, topo, STEPS, x0=X0, faults=faults,
                                         record_every=STEPS).params)
        Wt = np.linalg.matrix_power(topo.weights, STEPS)  # fault-free, dense NumPy
        clean = (Wt @ X0) / (Wt @ np.ones((n, 1)))
        diff = float(np.abs(stacked - sim).max())
        assert diff <= 1e-12, (name, diff)
        assert float(np.abs(sim - clean).max()) > 1e-6, (name, "faults changed nothing")
        print(f"FAULTS OK {name} {diff:.3e}", flush=True)


if __name__ == "__main__":
    main()
