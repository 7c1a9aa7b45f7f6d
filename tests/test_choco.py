"""CHOCO-Gossip / CHOCO-SGD against the exact average and the least-squares optimum, and
naive compressed DGD as the negative control (Koloskova, Stich & Jaggi, ICML 2019).

Oracles: the exact average of the initial values; ``numpy.linalg.lstsq`` of the stacked
ridge system (through ``problem.optimum``); uncompressed DGD at the same step size.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bluefog_sim
from algorithms import dgd
from algorithms import problems as P
from algorithms import choco_gossip, choco_sgd, compressed_dgd, compressed_gossip
from bluefog import compression as C
from bluefog import topology as T

N = 16


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def _average_metrics(target):
    def metrics(params, ctx):
        mean = ctx.comm.allreduce(params)
        err = ctx.comm.allreduce(jnp.sum((params - target) ** 2))
        return {"mean_error": jnp.max(jnp.abs(mean - target)), "error": jnp.sqrt(err)}
    return metrics


@pytest.mark.parametrize("compressor", [C.top_k(0.1), C.qsgd(4),
                                        C.chain(C.top_k(0.2), C.blockwise(8, 16))],
                         ids=lambda c: c.name)
def test_choco_gossip_reaches_the_exact_average_and_preserves_it(x64, compressor):
    b = np.random.default_rng(0).normal(size=(N, 50))
    problem = P.quadratic(b)
    res = bluefog_sim.run(choco_gossip(compressor, gamma=0.2), problem, T.exponential_graph(N),
                          1500, x0=jnp.asarray(b), record_every=50, progress=False,
                          metrics=_average_metrics(jnp.asarray(b.mean(0))))
    assert np.all(res.history["mean_error"] < 1e-12)  # the average never moves
    assert res.history["error"][-1] < 1e-10
    np.testing.assert_allclose(res.params, np.broadcast_to(b.mean(0), b.shape), atol=1e-10)


@pytest.mark.parametrize("compressor,gamma,steps", [(C.blockwise(8, 100), 0.9, 300),
                                                    (C.top_k(0.01), 0.02, 3000)],
                         ids=["int8", "top-1%"])
def test_choco_gossip_on_64_agents_reaches_1e8_where_naive_gossip_stalls(x64, compressor, gamma,
                                                                        steps):
    n = 64
    b = np.random.default_rng(0).normal(size=(n, 100))
    problem, topo = P.quadratic(b), T.exponential_graph(n)
    metrics = _average_metrics(jnp.asarray(b.mean(0)))
    kw = dict(x0=jnp.asarray(b), record_every=steps // 10, progress=False, metrics=metrics)
    choco = bluefog_sim.run(choco_gossip(compressor, gamma), problem, topo, steps, **kw)
    naive = bluefog_sim.run(compressed_gossip(compressor), problem, topo, steps, **kw)
    assert choco.history["error"][-1] / np.sqrt(n) < 1e-8  # rms over agents
    assert naive.history["error"][-1] / np.sqrt(n) > 1e-4


def test_choco_gossip_with_too_large_a_consensus_step_does_not_converge(x64):
    """gamma must be O(delta (1 - rho)): at 0.4 with top-10% the error grows instead."""
    b = np.random.default_rng(0).normal(size=(N, 50))
    res = bluefog_sim.run(choco_gossip(C.top_k(0.1), gamma=0.4), P.quadratic(b),
                          T.exponential_graph(N), 1500, x0=jnp.asarray(b), progress=False,
                          on_nonfinite="continue", metrics=_average_metrics(jnp.asarray(b.mean(0))))
    err = res.history["error"]
    assert not err[-1] < 1e3 * err[0]


def test_choco_sgd_keeps_dgd_accuracy_where_naive_compression_fails(x64):
    """Same step size, 10x fewer coordinates on the wire: CHOCO-SGD gets within ~4x of
    uncompressed DGD's O(lr) error; naive compressed DGD stalls >10x away (top-k) or
    diverges (QSGD)."""
    X, y = P.breast_cancer()
    Xs, ys = P.split_dataset(X, y, N, method="iid")
    problem = P.least_squares(Xs, ys, l2=0.1)
    topo = T.exponential_graph(N)

    def final(alg, **kw):
        return bluefog_sim.run(alg, problem, topo, 4000, progress=False, **kw).history[
            "relative_error"][-1]

    base = final(dgd(0.01))
    assert base < 0.02
    assert final(choco_sgd(0.01, C.top_k(0.1), gamma=0.2)) < 4 * base
    assert final(choco_sgd(0.01, C.scaled_sign(), gamma=0.2)) < 4 * base
    assert final(compressed_dgd(0.01, C.top_k(0.1))) > 10 * base
    assert not final(compressed_dgd(0.01, C.qsgd(4)), on_nonfinite="continue") < 1.0


@pytest.mark.parametrize("call,exc,match", [
    (lambda: choco_gossip("topk", 0.2), TypeError,
     r"choco_gossip: compressor must be a bluefog.compression.Compressor"),
    (lambda: choco_gossip(C.top_k(0.1), 0.0), ValueError,
     r"choco_gossip: gamma must be a finite real number in \(0, 1\]"),
    (lambda: choco_sgd(float("inf"), C.top_k(0.1), 0.2), ValueError,
     r"choco_sgd: lr must be a positive finite float; got inf"),
    (lambda: compressed_dgd(0.1, None), TypeError, r"compressed_dgd: compressor must be"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_choco_refuses_a_matrix_that_is_not_doubly_stochastic():
    W = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.25, 0.25, 0.5]])
    topo = T.from_matrix(W, require="row")
    with pytest.raises(ValueError, match=r"choco_gossip needs doubly-stochastic mixing weights"):
        bluefog_sim.run(choco_gossip(C.top_k(0.5), 0.2), P.quadratic(np.ones((3, 2))), topo, 5)


def _numpy_choco_sgd(W, B, x0, lr, gamma, ratio, steps, overlap):
    """CHOCO-SGD on f_i = |x - b_i|^2 / 2 in NumPy, top-k by a stable argsort (independent
    of the library): q = topk(target - x_hat), x_hat += q, s += W q, x = target + gamma (s - x_hat),
    target = x - lr g(x) (overlap=False) or x (overlap=True, then x -= lr g(x_old))."""
    X, Xh, S = x0.copy(), np.zeros_like(x0), np.zeros_like(x0)
    k = int(np.ceil(ratio * X.shape[1]))
    for _ in range(steps):
        G = X - B
        target = X if overlap else X - lr * G
        D = target - Xh
        Q = np.zeros_like(D)
        idx = np.argsort(-np.abs(D), axis=1, kind="stable")[:, :k]
        np.put_along_axis(Q, idx, np.take_along_axis(D, idx, axis=1), axis=1)
        Xh, S = Xh + Q, S + W @ Q
        X = target + gamma * (S - Xh) - (lr * G if overlap else 0.0)
    return X


@pytest.mark.parametrize("overlap", [False, True], ids=["sequential", "overlap"])
def test_choco_sgd_trajectory_equals_a_numpy_reference(x64, overlap):
    rng = np.random.default_rng(4)
    B = rng.normal(size=(N, 20))
    x0 = rng.normal(size=(N, 20))
    topo = T.exponential_graph(N)
    res = bluefog_sim.run(choco_sgd(0.1, C.top_k(0.25), gamma=0.3, overlap=overlap),
                          P.quadratic(B), topo, 200, x0=jnp.asarray(x0), progress=False,
                          record_every=200)
    ref = _numpy_choco_sgd(topo.weights, B, x0, 0.1, 0.3, 0.25, 200, overlap)
    np.testing.assert_allclose(np.asarray(res.params), ref, rtol=1e-10, atol=1e-10)
    # the average takes exact gradient steps on the mean objective, so it reaches mean(b)
    assert np.abs(np.asarray(res.params).mean(0) - B.mean(0)).max() < 1e-8
