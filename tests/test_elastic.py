"""Elastic resumption (``bfrun --elastic``, ``bluefog-train --elastic``): a checkpoint of n agents
continued by m != n agents.

Oracles: the new agents' parameters are the float64 mean of the checkpoint's (NumPy), Adam's
moments are optax's fresh zeros, a gradient tracker is the closed-form least-squares gradient
A_j^T (A_j x - y_j) / m_rows at the mean on the new agent's rows, and the step counters are
the checkpoint's. The relaunch loop's rank counts are read back from the launched programs.
"""

import itertools
import os

import numpy as np
import pytest


def _perturbed(algorithm, problem, topology, seed=0, count=7):
    """A 'checkpoint' state: init on ``problem``'s agents, then every float leaf made
    different per agent and every integer leaf set to ``count``."""
    import jax

    import bluefog_sim
    from bluefog.algorithm import AgentContext

    n = problem.size
    state = bluefog_sim.spmd(
        lambda comm, d, k: algorithm.init(problem.init_params,
                                          AgentContext(comm, topology, problem, d, k)), n)(
        problem.data, bluefog_sim.agent_keys(0, n))
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    out = []
    for a in leaves:
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.integer):
            out.append(np.full_like(a, count))
        else:
            out.append((a + rng.normal(size=a.shape)).astype(a.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


def _least_squares(n, seed=0, rows=6, d=3):
    from algorithms import problems

    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, rows, d)).astype(np.float32)
    y = rng.normal(size=(n, rows)).astype(np.float32)
    return problems.least_squares(A, y), A, y


def test_adam_state_moves_to_the_average_with_fresh_moments_and_kept_counter():
    import jax
    import optax

    from algorithms.optim import decentralized
    from bluefog.topology import exponential_graph, ring_graph
    from bluefog_train.elastic import reshard_state

    algo = decentralized(optax.adam(0.01))
    old_problem, _, _ = _least_squares(4)
    old = _perturbed(algo, old_problem, exponential_graph(4))
    new_problem, _, _ = _least_squares(3, seed=1)
    new = reshard_state(old, algo, new_problem, ring_graph(3), seed=0)

    x_old = np.asarray(jax.vmap(algo.params)(old), dtype=np.float64)
    x_new = np.asarray(jax.vmap(algo.params)(new))
    assert x_new.shape == (3, 3) and x_new.dtype == np.float32
    np.testing.assert_array_equal(x_new, np.broadcast_to(x_old.mean(0).astype(np.float32), (3, 3)))
    leaves_old = jax.tree_util.tree_leaves(old)
    leaves_new = jax.tree_util.tree_leaves(new)
    ints = [b for a, b in zip(leaves_old, leaves_new) if np.issubdtype(a.dtype, np.integer)]
    assert ints and all((b == 7).all() and b.shape[0] == 3 for b in ints)  # counters kept
    adam = [s for s in jax.tree_util.tree_leaves(new, is_leaf=lambda v: isinstance(
        v, optax.ScaleByAdamState)) if isinstance(s, optax.ScaleByAdamState)]
    assert adam, "no Adam state found in the decentralized optimizer's state"
    for s in adam:
        assert not np.asarray(s.mu).any() and not np.asarray(s.nu).any()  # optax's fresh zeros
        assert (np.asarray(s.count) == 7).all()


def test_gradient_tracker_is_reinitialised_at_the_average_on_the_new_data():
    import jax

    from algorithms import gradient_tracking
    from bluefog.topology import exponential_graph, ring_graph
    from bluefog_train.elastic import reshard_state

    algo = gradient_tracking(0.1)
    old_problem, _, _ = _least_squares(4)
    old = _perturbed(algo, old_problem, exponential_graph(4))
    new_problem, A, y = _least_squares(3, seed=2)
    new = reshard_state(old, algo, new_problem, ring_graph(3))
    xbar = np.asarray(jax.vmap(algo.params)(old), dtype=np.float64).mean(0)
    for j in range(3):  # closed form: grad of 1/(2m) ||A_j x - y_j||^2
        g = A[j].astype(np.float64).T @ (A[j] @ xbar - y[j]) / A.shape[1]
        np.testing.assert_allclose(np.asarray(new.y[j]), g, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(np.asarray(new.grad[j]), g, rtol=2e-5, atol=2e-6)
    assert (np.asarray(new.count) == 7).all()
    # tracking's invariant holds again: sum_j y_j = sum_j grad f_j(x_j)
    np.testing.assert_allclose(np.asarray(new.y).sum(0), np.asarray(new.grad).sum(0), rtol=1e-6)


def test_counters_that_differ_between_agents_are_reinitialised():
    import jax

    from algorithms import gradient_tracking
    from bluefog.topology import exponential_graph, ring_graph
    from bluefog_train.elastic import reshard_state

    algo = gradient_tracking(0.1)
    problem4, _, _ = _least_squares(4)
    old = _perturbed(algo, problem4, exponential_graph(4))
    old = old._replace(count=np.arange(4, dtype=np.asarray(old.count).dtype))
    new = reshard_state(old, algo, _least_squares(2)[0], ring_graph(2))
    assert (np.asarray(new.count) == 0).all()  # a fresh init's counter
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(old)


def test_bad_inputs_name_the_argument():
    from algorithms import gradient_tracking
    from bluefog.topology import exponential_graph, ring_graph
    from bluefog_train.elastic import reshard_state

    algo = gradient_tracking(0.1)
    problem4, _, _ = _least_squares(4)
    old = _perturbed(algo, problem4, exponential_graph(4))
    with pytest.raises(ValueError, match="topology has 4 agents but problem has 3"):
        reshard_state(old, algo, _least_squares(3)[0], ring_graph(4))
    with pytest.raises(ValueError, match="old_state must be stacked"):
        reshard_state({"a": np.zeros((4, 2)), "b": np.zeros((3, 2))}, algo,
                      _least_squares(3)[0], ring_graph(3))
    other, _, _ = _least_squares(3, d=5)
    with pytest.raises(ValueError, match="does not have the per-agent structure"):
        reshard_state(old, algo, other, ring_graph(3))


def test_elastic_sizes_shrink_by_one_per_failure_down_to_min_np():
    from bluefog_dist.restart import elastic_sizes

    assert list(itertools.islice(elastic_sizes(4, 2), 5)) == [4, 3, 2, 2, 2]
    assert list(itertools.islice(elastic_sizes(3, 3), 3)) == [3, 3, 3]


def test_supervise_restarts_relaunches_on_fewer_ranks_with_the_elastic_flag(tmp_path, capsys):
    from bluefog_dist.restart import supervise_restarts

    log = tmp_path / "log"

    def make_cmd(extra, size):
        return ["sh", "-c", f"echo {size}/$BLUEFOG_ELASTIC/$BLUEFOG_RESTART_COUNT >> {log}; "
                            "test $BLUEFOG_RESTART_COUNT -ge 2"]

    code = supervise_restarts(make_cmd, dict(os.environ), max_restarts=3, grace=1.0, np_=4,
                              min_np=3)
    assert code == 0
    assert log.read_text().split() == ["4/1/0", "3/1/1", "3/1/2"]
    err = capsys.readouterr().err
    assert err.count("on 3 rank(s) (--elastic, --min-np 3)") == 2
    log.unlink()
    assert supervise_restarts(make_cmd, {k: v for k, v in os.environ.items()
                                         if k != "BLUEFOG_ELASTIC"},
                              max_restarts=2, grace=1.0, np_=4) == 0
    assert log.read_text().split() == ["4//0", "4//1", "4//2"]  # not elastic: same size


@pytest.mark.parametrize("argv, message", [
    (["-np", "4", "--elastic", "true"], "--elastic relaunches a failed job on fewer ranks, so it "
                                        "needs --max-restarts K >= 1"),
    (["-np", "4", "--max-restarts", "1", "--min-np", "2", "true"], "--min-np is the smallest "
                                                                    "relaunch of --elastic"),
    (["-np", "4", "--max-restarts", "1", "--elastic", "--min-np", "5", "true"],
     "--min-np must be between 1 and -np 4; got 5"),
    (["-np", "4", "--max-restarts", "1", "--elastic", "--local-size", "2", "true"],
     "--elastic cannot be combined with --local-size"),
])
def test_bfrun_refuses_bad_elastic_options(argv, message, capsys):
    from bluefog_dist.launcher import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def _train(tmp_path, argv):
    from bluefog_train.cli import build_parser
    from bluefog_train.training import train

    cfg = vars(build_parser().parse_args(
        ["--backend", "sim", "--hidden", "8", "--optimizer", "adam", "--lr", "0.01",
         "--no-progress", "--checkpoint-dir", str(tmp_path / "ck"), "--checkpoint-every", "20",
         "--keep", "10", "--out", str(tmp_path / "r.json"), *argv]))
    return train(cfg, progress=False)


def test_bluefog_train_resumes_a_4_agent_checkpoint_on_3_agents(tmp_path, capsys):
    from bluefog_train import checkpoint as ckpt

    first = _train(tmp_path, ["--agents", "4", "--steps", "40"])
    assert ckpt.agent_count(str(tmp_path / "ck" / "ckpt-00000040.npz")) == 4
    with pytest.raises(FileNotFoundError, match="one of another number of agents is "
                                                "continued with --elastic"):
        _train(tmp_path, ["--agents", "3", "--steps", "60", "--resume"])  # not without it
    assert "another model size or number of agents?" in capsys.readouterr().err
    r = _train(tmp_path, ["--agents", "3", "--steps", "60", "--resume", "--elastic"])
    out = capsys.readouterr().out
    assert "resuming from step 40" in out and "the checkpoint holds 4 agents, this run has 3" in out
    assert r["resumed_from_step"] == 40 and r["config"]["agents"] == 3
    assert r["history"]["step"][: len(first["history"]["step"])] == first["history"]["step"]
    assert r["history"]["step"][-1] == 60
    assert r["topology"].startswith("exponential(n=3")
    assert len(r["per_agent_test_accuracy"]) == 3
    assert r["final"]["test_accuracy"] > first["final"]["test_accuracy"]  # it went on learning
    assert os.path.exists(tmp_path / "ck" / "ckpt-00000060.npz")
