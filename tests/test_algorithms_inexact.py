"""Inexact and stochastic methods against closed-form oracles.

* DGD / diffusion on f_i = 1/2 ||x - b_i||^2: the fixed points solve linear systems derived by
  hand ((I - W + lr I) X = lr B for DGD, (I - (1 - lr) W) X = lr W B for ATC), and the bias
  behaves as lr * ||(I - W)^+ (B - 1 b^T)|| (DGD) or lr * ||(I - W)^+ W (B - 1 b^T)|| (ATC)
  as lr -> 0 (first-order perturbation of the fixed-point equation; the mean is exact).
* Consensus on a row-stochastic directed graph converges to the Perron-weighted average
  pi^T X0 (pi from numpy.linalg.eig), push-sum to the exact average.
* SGD: the stationary second moment of the mean iterate under Gaussian gradient noise is
  d lr sigma^2 / (n (2 - lr)) (an AR(1) recursion), for all-reduce SGD and for D-SGD with or
  without local steps (mixing with doubly stochastic W preserves the mean).
"""

import numpy as np
import pytest

import algorithms as A
import bluefog_sim
from algorithms import problems as P
from bluefog.topology import Topology

N, D = 8, 3


def metropolis_graph():
    adj = np.zeros((N, N))
    for i in range(N):
        adj[i, (i + 1) % N] = adj[(i + 1) % N, i] = 1
    for i, j in [(0, 4), (1, 3), (2, 6)]:
        adj[i, j] = adj[j, i] = 1
    deg = adj.sum(axis=1)
    W = np.where(adj > 0, 1.0 / (1.0 + np.maximum(deg[:, None], deg[None, :])), 0.0)
    np.fill_diagonal(W, 1.0 - W.sum(axis=1))
    return W


def targets():
    return np.random.default_rng(0).normal(size=(N, D)) * np.arange(1, N + 1)[:, None]


@pytest.mark.parametrize("style", ["dgd", "atc"])
def test_fixed_point_and_first_order_bias(x64, style):
    W = metropolis_graph()
    B = targets()
    bbar = B.mean(axis=0)
    I = np.eye(N)
    topo = Topology(W, require="doubly")
    prob = P.quadratic(B)
    E = np.linalg.pinv(I - W) @ ((W if style == "atc" else I) @ (B - bbar))
    c = np.sqrt(np.mean(np.sum(E ** 2, axis=1)))  # first-order bias coefficient (RMS)
    biases = {}
    for lr in (0.04, 0.02, 0.01):
        if style == "dgd":
            Xstar = np.linalg.solve(I - W + lr * I, lr * B)
            alg = A.dgd(lr)
        else:
            Xstar = np.linalg.solve(I - (1 - lr) * W, lr * W @ B)
            alg = A.diffusion(lr, style="atc")
        res = bluefog_sim.run(alg, prob, topo, 4000, x0=B, record_every=4000)
        X = np.asarray(res.params)
        np.testing.assert_allclose(X, Xstar, rtol=0, atol=1e-9 * np.abs(Xstar).max())
        np.testing.assert_allclose(X.mean(axis=0), bbar, atol=1e-10)  # the mean is exact
        biases[lr] = res.history["distance_to_optimum"][-1]
    # bias = lr * c + O(lr^2): halving lr halves the bias; bias / lr -> c
    assert 1.85 < biases[0.04] / biases[0.02] < 2.15
    assert 1.9 < biases[0.02] / biases[0.01] < 2.1
    assert abs(biases[0.01] / 0.01 - c) < 0.05 * c


def directed_graph():
    """Strongly connected, directed, non-regular: ring 0->1->...->7->0 plus 0->2, 0->4, 0->6."""
    edges = [(j, (j + 1) % N) for j in range(N)] + [(0, 2), (0, 4), (0, 6)]
    adj = np.eye(N)
    for j, i in edges:
        adj[i, j] = 1.0
    return adj


def test_push_sum_reaches_the_average_where_plain_mixing_does_not(x64):
    adj = directed_graph()
    Acol = adj / adj.sum(axis=0, keepdims=True)  # column stochastic (out-degree weights)
    Wrow = adj / adj.sum(axis=1, keepdims=True)  # row stochastic (in-degree weights)
    X0 = targets()
    avg = X0.mean(axis=0)
    prob = P.quadratic(X0)  # optimum = the average
    # oracle: plain iteration with the column-stochastic matrix does not average
    plain = np.linalg.matrix_power(Acol, 500) @ X0
    assert np.abs(plain - avg).max() > 0.1 * np.abs(avg).max()
    res = bluefog_sim.run(A.push_sum(), prob, Topology(Acol, require="column"), 300,
                          x0=X0, record_every=300)
    np.testing.assert_allclose(np.asarray(res.params), np.broadcast_to(avg, (N, D)), atol=1e-11)
    # row-stochastic consensus converges, but to the Perron-weighted average pi^T X0
    vals, vecs = np.linalg.eig(Wrow.T)
    pi = np.real(vecs[:, np.argmin(np.abs(vals - 1))])
    pi = pi / pi.sum()
    assert np.abs(pi - 1 / N).max() > 0.02
    res = bluefog_sim.run(A.consensus(), prob, Topology(Wrow), 300, x0=X0, record_every=300)
    np.testing.assert_allclose(np.asarray(res.params), np.broadcast_to(pi @ X0, (N, D)), atol=1e-11)
    with pytest.raises(ValueError, match="consensus needs row-stochastic mixing weights"):
        bluefog_sim.run(A.consensus(), prob, Topology(Acol, require="column"), 10, x0=X0)


def test_consensus_rate_matches_rho(x64):
    W = metropolis_graph()
    topo = Topology(W, require="doubly")
    X0 = targets()
    res = bluefog_sim.run(A.consensus(), P.quadratic(X0), topo, 60, x0=X0, record_every=1)
    c = res.history["consensus_distance"]
    # ||X_k - 1 xbar|| <= rho^k ||X_0 - 1 xbar||, and the asymptotic rate is the second
    # largest |eigenvalue| of the symmetric W
    rho = np.sort(np.abs(np.linalg.eigvalsh(W)))[-2]
    assert np.all(c[1:] <= rho ** np.arange(1, 61) * c[0] * (1 + 1e-9))
    assert abs((c[60] / c[40]) ** (1 / 20) - rho) < 0.01


@pytest.mark.parametrize("make", [
    lambda: A.gradient_allreduce(0.1),
    lambda: A.dsgd(0.1),
    lambda: A.dsgd(0.1, steps_per_communication=4),
], ids=["allreduce", "dsgd", "local_sgd_J4"])
def test_sgd_stationary_variance_of_the_mean(x64, make):
    sigma, lr, steps = 1.0, 0.1, 6000
    B = targets()
    prob = P.quadratic(B, noise_std=sigma)
    W = metropolis_graph()
    res = bluefog_sim.run(make(), prob, Topology(W, require="doubly"), steps, record_every=1, seed=3)
    h = res.history
    mean_sq = h["distance_to_optimum"] ** 2 - h["consensus_distance"] ** 2  # ||xbar - x*||^2
    tail = mean_sq[steps // 4:]
    theory = D * lr * sigma ** 2 / (N * (2 - lr))
    assert abs(tail.mean() / theory - 1) < 0.2
    if make().name == "gradient_allreduce":
        assert np.all(h["consensus_distance"] < 1e-12)  # agents stay identical


def test_dsgd_momentum_and_local_steps_converge_on_noiseless_problem(x64):
    B = targets()
    prob = P.quadratic(B)
    topo = Topology(metropolis_graph(), require="doubly")
    bias = {}
    for J in (1, 4):
        res = bluefog_sim.run(A.dsgd(0.02, momentum=0.5, steps_per_communication=J), prob, topo,
                              3000, record_every=3000)
        bias[J] = res.history["distance_to_optimum"][-1] / np.linalg.norm(B.mean(axis=0))
        assert res.history["grad_norm"][-1] < 1e-8  # the mean iterate is exact on quadratics
    # more local steps, more client drift: the consensus bias grows with J
    assert bias[1] < bias[4]
