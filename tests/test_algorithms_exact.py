"""Exact methods reach the centralized optimum (float64, relative error <= 1e-8).

Oracles: ``numpy.linalg.lstsq`` for (ridge) least squares and ``scipy.optimize.minimize``
(trust-exact Newton) for logistic regression, both on scikit-learn's breast-cancer data split
label-sorted across 8 agents, plus synthetic least squares on time-varying topologies; none
uses the library's own optimum.
"""

import numpy as np
import pytest
import scipy.optimize

import algorithms as A
import bluefog_sim
from algorithms import problems as P
from bluefog.topology import Topology, one_peer_exponential_graph, random_matching

N_AGENTS = 8


def ring_weights(n):
    """Symmetric doubly stochastic ring, 1/3 on self and both neighbors."""
    W = np.zeros((n, n))
    for i in range(n):
        for j in (i - 1, i, i + 1):
            W[i, j % n] = 1 / 3
    return W


def directed_column_stochastic(n):
    """A strongly connected, directed, non-regular graph with out-degree weights
    ``A[i, j] = 1 / (outdeg(j) + 1)`` for ``j -> i`` (and the diagonal): column stochastic,
    not row stochastic."""
    edges = {(j, (j + 1) % n) for j in range(n)} | {(0, 2), (0, 4), (0, 5), (3, 6), (5, 1)}
    A_ = np.eye(n)
    for j, i in edges:
        A_[i, j] = 1.0
    return A_ / A_.sum(axis=0, keepdims=True)


def relerr(params, xstar):
    return np.sqrt(np.mean(np.sum((np.asarray(params) - xstar) ** 2, axis=1))) / np.linalg.norm(xstar)


@pytest.fixture(scope="module")
def lsq_data():
    rng = np.random.default_rng(0)
    # heterogeneous agents: different feature means and targets
    A_ = rng.normal(size=(N_AGENTS, 12, 5)) + rng.normal(size=(N_AGENTS, 1, 5))
    y = rng.normal(size=(N_AGENTS, 12)) + 3 * rng.normal(size=(N_AGENTS, 1))
    xstar, *_ = np.linalg.lstsq(A_.reshape(-1, 5), y.reshape(-1), rcond=None)
    return A_, y, xstar


@pytest.fixture(scope="module")
def logistic_data():
    X, y = P.breast_cancer()
    Xs, ys = P.split_dataset(X, y, N_AGENTS, method="label_sorted", seed=0)
    lam = 5e-2  # condition number ~ 70
    Z, s = Xs.reshape(-1, X.shape[1]), 2.0 * ys.reshape(-1) - 1.0

    def f(w):
        return np.mean(np.logaddexp(0, -s * (Z @ w))) + 0.5 * lam * w @ w

    def g(w):
        return -(Z.T @ (s * 0.5 * (1 - np.tanh(0.5 * s * (Z @ w))))) / len(s) + lam * w

    def h(w):
        p = 0.5 * (1 + np.tanh(0.5 * s * (Z @ w)))
        return (Z.T * (p * (1 - p))) @ Z / len(s) + lam * np.eye(Z.shape[1])

    ref = scipy.optimize.minimize(f, np.zeros(Z.shape[1]), jac=g, hess=h, method="trust-exact",
                                  options={"gtol": 1e-13})
    return Xs, ys, lam, ref.x


EXACT = ["exact_diffusion", "extra", "nids", "gradient_tracking", "gradient_tracking_atc",
         "push_diging"]


def make(name, lr):
    if name == "gradient_tracking_atc":
        return A.gradient_tracking(lr, style="atc")
    return A.REGISTRY[name](lr)


@pytest.fixture(scope="module")
def ridge_data():
    """Ridge regression of the +-1 labels on the breast-cancer features, label-sorted split.
    The features are nearly collinear (lambda_min(A^T A / N) ~ 1e-4), hence the ridge term."""
    X, y = P.breast_cancer()
    Xs, ys = P.split_dataset(X, 2.0 * y - 1.0, N_AGENTS, method="label_sorted", seed=0)
    lam = 0.5
    N = Xs.shape[0] * Xs.shape[1]
    # oracle: the stacked least-squares system [A; sqrt(N lam) I] x = [y; 0]
    Aa = np.vstack([Xs.reshape(N, -1), np.sqrt(N * lam) * np.eye(Xs.shape[2])])
    ya = np.concatenate([ys.reshape(N), np.zeros(Xs.shape[2])])
    xstar, *_ = np.linalg.lstsq(Aa, ya, rcond=None)
    return Xs, ys, lam, xstar


@pytest.mark.parametrize("name", EXACT)
def test_exact_methods_reach_ridge_optimum_on_breast_cancer(x64, ridge_data, name):
    Xs, ys, lam, xstar = ridge_data
    prob = P.least_squares(Xs, ys, l2=lam)
    W = directed_column_stochastic(N_AGENTS) if name == "push_diging" else ring_weights(N_AGENTS)
    topo = Topology(W, require="column" if name == "push_diging" else "doubly")
    # local smoothness constants reach 30 (label-sorted shards); DIGing (AWC) needs a smaller
    # step than the others (it diverges at 0.015 here, as does a dense NumPy run of it)
    lr, steps = (0.01, 4000) if name == "gradient_tracking" else (0.03, 1500)
    res = bluefog_sim.run(make(name, lr), prob, topo, steps, record_every=steps)
    assert relerr(res.params, xstar) <= 1e-8


@pytest.mark.parametrize("name", EXACT)
def test_exact_methods_reach_logistic_optimum_on_breast_cancer(x64, logistic_data, name):
    lr = 0.3
    Xs, ys, lam, xstar = logistic_data
    prob = P.logistic_regression(Xs, ys, l2=lam)
    W = directed_column_stochastic(N_AGENTS) if name == "push_diging" else ring_weights(N_AGENTS)
    topo = Topology(W, require="column" if name == "push_diging" else "doubly")
    res = bluefog_sim.run(make(name, lr), prob, topo, 1200, record_every=1200)
    assert relerr(res.params, xstar) <= 1e-8


@pytest.mark.parametrize("name,topology", [
    ("gradient_tracking", "one_peer_exponential"),
    ("gradient_tracking_atc", "random_matching"),
    ("exact_diffusion", "random_matching"),
    ("push_diging", "one_peer_exponential"),
])
def test_exact_methods_on_time_varying_topologies(x64, lsq_data, name, topology):
    A_, y, xstar = lsq_data
    prob = P.least_squares(A_, y)
    topo = one_peer_exponential_graph(N_AGENTS) if topology == "one_peer_exponential" \
        else random_matching(N_AGENTS, seed=3)
    lr = 0.03 if name == "gradient_tracking" else 0.1
    res = bluefog_sim.run(make(name, lr), prob, topo, 2000, record_every=2000)
    assert relerr(res.params, xstar) <= 1e-8


def test_dgd_is_not_exact_on_the_same_problem(x64, lsq_data):
    """The contrast the exact methods exist for: DGD with the same step stalls at a bias."""
    A_, y, xstar = lsq_data
    prob = P.least_squares(A_, y)
    res = bluefog_sim.run(A.dgd(0.1), prob, Topology(ring_weights(N_AGENTS)), 1500, record_every=1500)
    assert relerr(res.params, xstar) > 1e-3


def test_push_diging_on_time_varying_directed_graphs(x64, lsq_data):
    """Push-DIGing over a periodic sequence of directed, non-regular, column-stochastic
    (not row-stochastic) graphs: hops j -> j+1 and j -> j+3 alternate, plus chords from
    agent 0 (Nedic, Olshevsky & Shi 2017 allow time-varying directed graphs)."""
    from bluefog.topology import DynamicTopology

    A_, y, xstar = lsq_data
    prob = P.least_squares(A_, y)
    patterns = []
    for hop, chord in ((1, 4), (3, 2)):
        C = np.eye(N_AGENTS)
        for j in range(N_AGENTS):
            C[(j + hop) % N_AGENTS, j] = 1.0
        C[chord, 0] = 1.0
        C = C / C.sum(axis=0, keepdims=True)
        assert not np.allclose(C.sum(axis=1), 1)  # not row stochastic
        patterns.append(Topology(C, require="column", name=f"hop{hop}"))
    topo = DynamicTopology(patterns, period=2, name="alternating_directed")
    res = bluefog_sim.run(A.push_diging(0.05), prob, topo, 2000, record_every=2000)
    assert relerr(res.params, xstar) <= 1e-8
