"""Launched by ``tests/test_problem_shard_mpi.py`` under ``mpiexec -n 2``: every rank holds
only its own agents' rows (``Problem.shard``).

Arguments: ``DATA_DIR OUT_DIR`` (the IDX files the test wrote; where each rank writes what it
held and computed). Cases, one after the other in the same processes (a refused case leaves
the job usable, which is itself the property: no rank is left in a collective):

* ``train``: ``bluefog-train --backend mpi --dataset mnist`` (its ``make_experiment``
  wrapped to record the problem it builds): each rank writes the rows it held, rank 0 the
  final parameters of every agent;
* ``wrong``, ``block_wrong``, ``async_wrong``: a problem holding the other rank's agents,
  given to ``bluefog_dist.run`` (one agent per rank, then two), and ``run_async``: every
  rank prints the error it got;
* ``block``: two agents per rank, each rank holding only its two rows; its parameters;
* ``elastic``: ``reshard_state(..., comm=)`` of a 4-agent state onto 2 agents, each rank
  holding only its row: its state.
"""

import sys

import jax.numpy as jnp
import numpy as np
from mpi4py import MPI

import bluefog_dist
from algorithms import ASYNC_REGISTRY, dgd, gradient_tracking, problems
from bluefog.topology import ring_graph
from bluefog_train import training
from bluefog_train.cli import build_parser

rank, data_dir, out = MPI.COMM_WORLD.Get_rank(), sys.argv[1], sys.argv[2]
TRAIN = ["--backend", "mpi", "--dataset", "mnist", "--data-dir", data_dir, "--data-verify", "off",
         "--agents", "2", "--hidden", "8", "--steps", "20", "--record-every", "10",
         "--no-progress", "--split", "dirichlet", "--alpha", "0.5", "--seed", "3"]


def quadratic(n):
    """Agent i's loss 0.5 ||x - b_i||^2 (b drawn with a fixed seed: equal on every rank)."""
    return problems.quadratic(np.random.default_rng(1).normal(size=(n, 3)).astype(np.float32))


def case(name, fn):
    MPI.COMM_WORLD.Barrier()
    try:
        fn()
        print(f"CASE {name} rank {rank} ok", flush=True)
    except Exception as err:  # noqa: BLE001 - printed for the test to read
        first = str(err).replace("\n", " ")
        print(f"CASE {name} rank {rank} {type(err).__name__}: {first}", flush=True)


def train():
    real, held = training.make_experiment, {}

    def recording(cfg, **kwargs):
        held["exp"] = real(cfg, **kwargs)
        return held["exp"]

    training.make_experiment = recording
    res = training.train(vars(build_parser().parse_args(TRAIN)), progress=False)
    p = held["exp"]["problem"]
    np.savez(f"{out}/rows{rank}.npz", x=np.asarray(p.data["x"]), y=np.asarray(p.data["y"]),
             shard=np.asarray(p.shard))
    if rank == 0:
        flat = {f"p{i}": np.asarray(v) for i, v in enumerate(
            __import__("jax").tree_util.tree_leaves(res["_final_params"]))}
        np.savez(f"{out}/final.npz", loss=np.asarray(res["history"]["loss"]), **flat)


def wrong():
    other = quadratic(2).restrict(1 - rank)
    bluefog_dist.run(dgd(0.1), other, ring_graph(2), 5, progress=False)


def block():
    mine = quadratic(4).restrict(2 * rank, 2)
    res = bluefog_dist.run(dgd(0.1), mine, ring_graph(4), 10, record_every=10, progress=False,
                           agents_per_rank=2)
    np.save(f"{out}/block{rank}.npy", np.asarray(res.params))


def block_wrong():
    other = quadratic(4).restrict(2 * (1 - rank), 2)
    bluefog_dist.run(dgd(0.1), other, ring_graph(4), 5, progress=False, agents_per_rank=2)


def async_wrong():
    from bluefog_dist.window_comm import run_async

    other = quadratic(2).restrict(1 - rank)
    run_async(ASYNC_REGISTRY["async_sgp"](0.1), other, ring_graph(2), steps=2)


def elastic():
    from bluefog_train.elastic import reshard_state

    rng = np.random.default_rng(7)
    A = rng.normal(size=(2, 6, 3)).astype(np.float32)
    y = rng.normal(size=(2, 6)).astype(np.float32)
    mine = problems.least_squares(A, y).restrict(rank)
    algo = gradient_tracking(0.1)
    x_old = rng.normal(size=(4, 3)).astype(np.float32)
    stacked = {"x": x_old, "y": np.zeros((4, 3), np.float32), "grad": np.zeros((4, 3), np.float32),
               "count": np.full(4, 9, np.int32)}
    state = reshard_state(_as_state(algo, stacked, mine), algo, mine, ring_graph(2), seed=0,
                          comm=bluefog_dist.default_comm())
    np.savez(f"{out}/elastic{rank}.npz", x_old=x_old, A=A, b=y,
             **{f"new_{k}": np.asarray(getattr(state, k)) for k in ("x", "y", "grad", "count")})


def _as_state(algo, stacked, problem):
    """The gradient-tracking state type holding ``stacked``'s leaves."""
    import jax

    from bluefog.algorithm import AgentContext

    one = jax.eval_shape(lambda: algo.init(jnp.zeros(3), AgentContext(
        None, ring_graph(2), problem, problem.agent_data(rank), jax.random.PRNGKey(0))))
    return type(one)(**{k: stacked[k] for k in one._fields})


case("train", train)
case("wrong", wrong)
case("block", block)
case("block_wrong", block_wrong)
case("async_wrong", async_wrong)
case("elastic", elastic)
