"""bluefog_sim.run against a dense NumPy re-implementation of the same iteration.

The algorithm under test is a plain decentralized gradient descent written here,
``x_i <- sum_j W_ij(t) x_j - lr * grad f_i(x_i)``, on least squares
``f_i(x) = 1/2 ||A_i x - b_i||^2``; the oracle iterates ``X <- W(t) X - lr * G(X)`` in
float64 NumPy and computes the recorded metrics from their definitions.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bluefog.algorithm import Algorithm, Problem
from bluefog.topology import exponential_graph, one_peer_exponential_graph, ring_graph
from bluefog_sim import agent_keys, run

LR = 0.05


class DGDState(NamedTuple):
    x: jax.Array
    count: jax.Array


def dgd(lr=LR):
    def init(params, ctx):
        return DGDState(params, jnp.zeros((), jnp.int32))

    def step(s, ctx):
        mixed = ctx.comm.neighbor_allreduce(s.x, ctx.topology, t=s.count)
        return DGDState(mixed - lr * ctx.grad(s.x), s.count + 1)

    return Algorithm(init, step, lambda s: s.x, name="test_dgd", config={"lr": lr})


def least_squares(n, m=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, m, d))
    b = rng.standard_normal((n, m))
    xstar = np.linalg.lstsq(A.reshape(n * m, d), b.reshape(n * m), rcond=None)[0]

    def loss(x, data):
        r = data["A"] @ x - data["b"]
        return 0.5 * jnp.sum(r * r)

    prob = Problem(loss, {"A": jnp.asarray(A), "b": jnp.asarray(b)}, jnp.zeros(d),
                   optimum=jnp.asarray(xstar), name="lsq")
    return prob, A, b, xstar


def numpy_dgd(topo_at, A, b, X0, steps, lr=LR):
    X = X0.copy()
    traj = [X.copy()]
    for t in range(steps):
        G = np.einsum("imd,im->id", A, np.einsum("imd,id->im", A, X) - b)
        X = topo_at(t) @ X - lr * G
        traj.append(X.copy())
    return traj


def oracle_metrics(X, A, b, xstar):
    n = X.shape[0]
    xbar = X.mean(0)
    r = np.einsum("imd,d->im", A, xbar) - b
    grad = np.einsum("imd,im->d", A, r) / n
    dist = np.sqrt(np.mean(np.sum((X - xstar) ** 2, axis=1)))
    return {
        "consensus_distance": np.sqrt(np.mean(np.sum((X - xbar) ** 2, axis=1))),
        "loss": np.mean(0.5 * np.sum(r * r, axis=1)),
        "grad_norm": np.linalg.norm(grad),
        "distance_to_optimum": dist,
        "relative_error": dist / np.linalg.norm(xstar),
    }


def test_static_topology_step_by_step(x64):
    n, steps = 6, 12
    topo = exponential_graph(n)
    prob, A, b, xstar = least_squares(n)
    X0 = np.random.default_rng(1).standard_normal((n, 3))
    res = run(dgd(), prob, topo, steps, x0=jnp.asarray(X0), record_every=1, progress=False)
    traj = numpy_dgd(lambda t: topo.weights, A, b, X0, steps)
    np.testing.assert_array_equal(res.history["step"], np.arange(steps + 1))
    for k, X in enumerate(traj):
        want = oracle_metrics(X, A, b, xstar)
        for name, v in want.items():
            assert res.history[name][k] == pytest.approx(v, rel=1e-10, abs=1e-12), (name, k)
    assert res.params.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(res.params), traj[-1], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(res.state.count), np.full(n, steps))


def test_dynamic_topology_record_every_and_default_start(x64):
    n, steps = 6, 10
    topo = one_peer_exponential_graph(n)
    prob, A, b, xstar = least_squares(n, seed=2)
    res = run(dgd(), prob, topo, steps, record_every=3, progress=False)
    np.testing.assert_array_equal(res.history["step"], [0, 3, 6, 9, 10])
    traj = numpy_dgd(lambda t: topo.at(t).weights, A, b, np.zeros((n, 3)), steps)
    for k, s in enumerate(res.history["step"]):
        want = oracle_metrics(traj[s], A, b, xstar)
        assert res.history["consensus_distance"][k] == pytest.approx(want["consensus_distance"], rel=1e-10, abs=1e-14)
        assert res.history["loss"][k] == pytest.approx(want["loss"], rel=1e-10)
    np.testing.assert_allclose(np.asarray(res.params), traj[-1], rtol=0, atol=1e-12)


def test_continuation_equals_one_long_run(x64):
    n = 5
    topo = one_peer_exponential_graph(n)  # the counter inside the state selects the pattern
    prob, *_ = least_squares(n, seed=3)
    X0 = jnp.asarray(np.random.default_rng(4).standard_normal((n, 3)))
    full = run(dgd(), prob, topo, 9, x0=X0, record_every=9, progress=False)
    a = run(dgd(), prob, topo, 4, x0=X0, record_every=4, progress=False)
    b = run(dgd(), prob, topo, 5, state=a.state, record_every=5, progress=False)
    np.testing.assert_allclose(np.asarray(b.params), np.asarray(full.params), rtol=0, atol=1e-13)
    np.testing.assert_array_equal(np.asarray(b.state.count), np.full(n, 9))
    # the continued run did not consume the caller's state
    np.testing.assert_array_equal(np.asarray(a.state.count), np.full(n, 4))


def test_float32_default_and_progress_bar(capsys):
    n = 4
    prob, *_ = least_squares(n)
    prob32 = Problem(prob.loss, jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), prob.data),
                     jnp.zeros(3, jnp.float32), name="lsq32")
    res = run(dgd(), prob32, ring_graph(n), 20, record_every=2, progress=True)
    assert res.params.dtype == jnp.float32
    assert len(res.history["step"]) == 11 and res.history["step"][-1] == 20
    assert res.history["loss"][-1] < res.history["loss"][0]
    assert "test_dgd" in capsys.readouterr().err  # tqdm description


def test_agent_keys_are_fold_in_of_seed():
    keys = agent_keys(7, 3)
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(keys[i]),
                                      np.asarray(jax.random.fold_in(jax.random.PRNGKey(7), i)))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(algorithm=(lambda s: s)), TypeError, r"algorithm must be a bluefog Algorithm .* got function"),
    (dict(problem="lsq"), TypeError, r"problem must be a bluefog Problem .* got str"),
    (dict(topology=ring_graph(5)), ValueError,
     r"topology.size must equal the number of agents in problem.data; got topology.size=5, problem.size=4"),
    (dict(topology=np.eye(4)), TypeError, r"topology must be a Topology or DynamicTopology; got ndarray"),
    (dict(steps=0), ValueError, r"steps must be an integer >= 1; got 0"),
    (dict(steps=2.5), TypeError, r"steps must be an integer >= 1; got 2.5"),
    (dict(steps=5, record_every=6), ValueError,
     r"record_every must be <= steps; got record_every=6, steps=5. Use record_every=5"),
    (dict(record_every=0), ValueError, r"record_every must be an integer >= 1; got 0"),
    (dict(x0=jnp.zeros((3, 3))), ValueError,
     r"x0 must be stacked with a leading agent axis of size 4; got a leaf of shape \(3, 3\)"),
    (dict(x0=jnp.zeros((4, 3)), state="s"), ValueError, r"pass either x0 \(a fresh start\) or state \(a continuation\), not both"),
    (dict(seed=1.0), TypeError, r"seed must be an int; got 1.0"),
    (dict(metrics=3), TypeError, r"metrics must be a callable \(params, ctx\) -> dict; got int"),
    (dict(progress="yes"), TypeError, r"progress must be True, False or None"),
])
def test_bad_inputs(kwargs, exc, match):
    prob, *_ = least_squares(4)
    args = dict(algorithm=dgd(), problem=prob, topology=ring_graph(4), steps=3)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        run(args.pop("algorithm"), args.pop("problem"), args.pop("topology"), args.pop("steps"), **args)
