"""A Problem that holds only some agents' rows (``Problem(..., shard=(first, n))``): what it
answers, what it refuses (with the messages pinned), and ``bluefog-train``'s experiment built
for one MPI rank.

Oracles: the stacked NumPy arrays the tests build themselves (a shard's agent ``i`` is row
``i`` of them), the dense mean of the per-agent losses written in NumPy, and
``algorithms.problems.split_dataset`` / ``np.bincount`` on the raw arrays the tests write as
IDX files. The MPI side (every rank holds only its rows, trains like the simulator, and a
shard that misses a rank's agent raises on every rank) is ``tests/test_problem_shard_mpi.py``.
"""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from bluefog.algorithm import Problem

RNG = np.random.default_rng(3)
B = RNG.normal(size=(4, 3)).astype(np.float32)  # agent i's data: row i


def _loss(x, d):
    return 0.5 * jnp.sum((x - d) ** 2)


def _full():
    return Problem(_loss, jnp.asarray(B), jnp.zeros(3))


def test_a_shard_holds_the_rows_of_its_agents_only():
    p = Problem(_loss, jnp.asarray(B[1:3]), jnp.zeros(3), shard=(1, 4))
    assert p.size == 4 and p.agents == range(1, 3) and p.is_partial
    np.testing.assert_array_equal(p.agent_data(1), B[1])
    np.testing.assert_array_equal(p.agent_data(2), B[2])
    np.testing.assert_array_equal(p.block_data(1, 2), B[1:3])
    r = _full().restrict(2)
    assert r.shard == (2, 4) and r.agents == range(2, 3)
    np.testing.assert_array_equal(r.agent_data(2), B[2])
    whole = Problem(_loss, jnp.asarray(B), jnp.zeros(3), shard=(0, 4))
    assert not whole.is_partial
    x = RNG.normal(size=3)
    np.testing.assert_allclose(float(whole.global_loss(jnp.asarray(x))),
                               np.mean(0.5 * np.sum((x - B) ** 2, axis=1)), rtol=1e-6)


def test_an_agent_outside_the_shard_is_refused_by_name():
    p = _full().restrict(2)
    with pytest.raises(ValueError, match=re.escape(
            "Problem: agent 1's data is not held here; this Problem holds agents 2..2 of 4 "
            "(shard=(2, 4)). Build each process's Problem from the rows of the agents it runs "
            "(shard=(first_agent, 4) with those rows")):
        p.agent_data(1)
    with pytest.raises(ValueError, match=re.escape("Problem: agents 1..2' data is not held here")):
        p.block_data(1, 2)


def test_global_loss_and_the_simulator_refuse_a_partial_problem():
    import bluefog_sim
    from algorithms import dgd
    from bluefog.topology import ring_graph

    p = _full().restrict(1, 2)
    with pytest.raises(ValueError, match=re.escape(
            "Problem.global_loss (f = 1/n sum_i f_i) needs every agent's data in this process; "
            "got a Problem holding only agents 1..2 of 4 (shard=(1, 4)). Evaluate it where "
            "every agent's data is (a Problem without shard), or reduce the agents' own losses "
            "across processes, e.g. comm.allreduce(ctx.loss(x)).")):
        p.global_loss(jnp.zeros(3))
    with pytest.raises(ValueError, match=re.escape(
            "bluefog_sim.run (every agent runs in this one process) needs every agent's data in "
            "this process; got a Problem holding only agents 1..2 of 4 (shard=(1, 4)). Build "
            "the Problem from every agent's rows (shard=None, e.g. load_agent_shards without "
            "agents=), or run the shards under MPI with bluefog_dist.run.")):
        bluefog_sim.run(dgd(0.1), p, ring_graph(4), 3, progress=False)


@pytest.mark.parametrize("shard, exc, message", [
    ((1,), TypeError, "Problem: shard must be None or a pair of ints (first_agent, num_agents); "
                      "got (1,)."),
    (("0", 4), TypeError, "Problem: shard must be None or a pair of ints"),
    ((True, 4), TypeError, "Problem: shard must be None or a pair of ints"),
    ((3, 4), ValueError, "Problem: shard=(first_agent, num_agents) needs 0 <= first_agent and "
                         "first_agent + k <= num_agents, with k = 2 the agents data holds (its "
                         "leading axis); got shard=(3, 4)."),
    ((-1, 4), ValueError, "got shard=(-1, 4)"),
])
def test_bad_shards_are_refused(shard, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        Problem(_loss, jnp.asarray(B[:2]), jnp.zeros(3), shard=shard)


def test_reshard_without_comm_refuses_a_partial_problem():
    import optax

    from algorithms.optim import decentralized
    from bluefog.topology import ring_graph
    from bluefog_train.elastic import reshard_state

    with pytest.raises(ValueError, match=re.escape(
            "reshard_state (every new agent is initialised in this process) needs every "
            "agent's data in this process; got a Problem holding only agents 2..2 of 4 "
            "(shard=(2, 4)). Pass comm= (the run's MPI communicator)")):
        reshard_state(_old_state(), decentralized(optax.sgd(0.1)), _full().restrict(2),
                      ring_graph(4))


def _old_state():
    import bluefog_sim
    import optax

    from algorithms.optim import decentralized
    from bluefog.algorithm import AgentContext
    from bluefog.topology import ring_graph

    algo, p, topo = decentralized(optax.sgd(0.1)), _full(), ring_graph(4)
    return bluefog_sim.spmd(lambda c, d, k: algo.init(p.init_params, AgentContext(
        c, topo, p, d, k)), 4)(p.data, bluefog_sim.agent_keys(0, 4))


def _cfg(tmp_path, *extra):
    from bluefog_train.cli import build_parser
    from bluefog_train.config import validate_config

    return validate_config(vars(build_parser().parse_args(
        ["--dataset", "mnist", "--data-dir", str(tmp_path), "--data-verify", "off",
         "--agents", "4", "--hidden", "8", "--split", "dirichlet", "--alpha", "0.3",
         "--seed", "5", "--backend", "sim", *extra])))


def test_experiment_for_one_rank_holds_its_rows_and_every_label(tmp_path):
    from algorithms.problems import split_dataset
    from bluefog_train.experiment import make_experiment
    from test_datasets import write_mnist

    arrays = write_mnist(tmp_path, gz=True)
    X = arrays["train"][0].reshape(200, 784) / np.float32(255)
    Xs, ys = (np.asarray(a) for a in split_dataset(
        X, arrays["train"][1].astype(np.int32), 4, "dirichlet", alpha=0.3, seed=5))
    exp = make_experiment(_cfg(tmp_path), agents=range(2, 3))
    p = exp["problem"]
    assert p.shard == (2, 4) and p.size == 4 and p.agents == range(2, 3)
    np.testing.assert_array_equal(np.asarray(p.agent_data(2)["x"]), Xs[2])
    np.testing.assert_array_equal(np.asarray(p.agent_data(2)["y"]), ys[2])
    assert exp["label_histogram"] == [np.bincount(row, minlength=10).tolist() for row in ys]
    assert exp["topology"].size == 4
    with pytest.raises(ValueError, match=re.escape(
            "make_experiment: agents must be None or a non-empty range(first, last + 1) inside "
            "range(4) (the agents this process runs); got range(3, 5).")):
        make_experiment(_cfg(tmp_path), agents=range(3, 5))


def test_digits_experiment_for_one_rank_keeps_its_rows(tmp_path):
    from bluefog_train.data import load_digits, partition
    from bluefog_train.experiment import make_experiment

    cfg = _cfg(tmp_path, "--dataset", "digits")
    X_tr, y_tr, _, _ = load_digits(seed=5)
    Xs, ys = (np.asarray(a) for a in partition(X_tr, y_tr, 4, "dirichlet", alpha=0.3, seed=5))
    exp = make_experiment(cfg, agents=range(1, 2))
    p = exp["problem"]
    assert p.shard == (1, 4) and np.shape(p.data["x"])[0] == 1
    np.testing.assert_allclose(np.asarray(p.agent_data(1)["x"]), Xs[1], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(p.agent_data(1)["y"]), ys[1])
    assert exp["label_histogram"] == [np.bincount(row, minlength=10).tolist() for row in ys]
