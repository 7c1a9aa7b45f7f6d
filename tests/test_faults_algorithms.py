"""Fault-robust and fault-sensitive methods against closed-form oracles (float64).

Oracles: the exact average of the initial values (``numpy.mean``); for a crash at step
``t_c``, the survivors' fault-free values at ``t_c`` computed as ``W^{t_c} X_0`` in NumPy
and their plain mean (rule ``absorb``) or the Perron-weighted mean of the renormalised
survivors' matrix (rule ``renormalise``). Which methods stay exact under loss, for every
deterministic method of ``algorithms.REGISTRY``: ``tests/test_faults_exactness.py``.
"""

import jax.numpy as jnp
import numpy as np

import algorithms as A
import bluefog_sim
from algorithms import problems as P
from bluefog.faults import Faults, MessageLoss, NodeCrash
from bluefog.topology import exponential_graph, symmetric_exponential_graph


def _run(alg, X0, topo, steps, faults, x0=True):
    r = bluefog_sim.run(alg, P.quadratic(X0), topo, steps, x0=jnp.asarray(X0) if x0 else None,
                        faults=faults, record_every=steps)
    return np.asarray(r.params)


def test_robust_push_sum_is_exact_under_10pct_loss_and_plain_push_sum_is_not(x64):
    n = 64
    X0 = np.random.default_rng(0).normal(size=(n, 2))
    topo, f = exponential_graph(n), Faults(MessageLoss(0.1, seed=0))
    exact = X0.mean(0)
    robust = _run(A.robust_push_sum(), X0, topo, 300, f)
    plain = _run(A.push_sum(), X0, topo, 300, f)
    assert np.abs(robust - exact).max() < 1e-10
    assert np.abs(plain - exact).max() > 1e-3
    assert np.ptp(plain, axis=0).max() < 1e-10  # plain push-sum agrees, on the wrong value


def test_robust_push_sum_recovers_a_crashed_agents_mass_when_it_rejoins(x64):
    n = 16
    X0 = np.random.default_rng(1).normal(size=(n, 2))
    topo = exponential_graph(n)
    back = _run(A.robust_push_sum(), X0, topo, 250,
                Faults(MessageLoss(0.1, seed=2), NodeCrash(3, at=5, rejoin=60)))
    gone = _run(A.robust_push_sum(), X0, topo, 250, Faults(NodeCrash(3, at=5)))
    assert np.abs(back - X0.mean(0)).max() < 1e-10
    survivors = np.delete(gone, 3, axis=0)
    assert np.abs(survivors - X0.mean(0)).max() > 1e-3  # mass sent to a dead agent is gone


def _state_at(W, X0, t):
    return np.linalg.matrix_power(W, t) @ X0


def test_survivors_of_a_crash_reach_the_average_of_their_values_at_the_crash(x64):
    n, k, tc = 16, 5, 6
    topo = symmetric_exponential_graph(n)
    X0 = np.random.default_rng(3).normal(size=(n, 2))
    Xc = _state_at(topo.weights, X0, tc)
    alive = np.arange(n) != k
    out = _run(A.consensus(), X0, topo, 400, Faults(NodeCrash(k, at=tc), rule="absorb"))
    assert np.abs(out[alive] - Xc[alive].mean(0)).max() < 1e-10
    np.testing.assert_allclose(out[k], Xc[k], atol=1e-14)  # frozen at its crash-time value
    assert np.abs(Xc[alive].mean(0) - X0.mean(0)).max() > 1e-3  # a different average
    # renormalise: the survivors' rows renormalised are row- but not column-stochastic; the
    # limit is the Perron-weighted mean pi^T X(t_c) (pi^T M = pi^T, sum pi = 1)
    ren = _run(A.consensus(), X0, topo, 400, Faults(NodeCrash(k, at=tc)))
    M = topo.weights[np.ix_(alive, alive)]
    M = M / M.sum(1, keepdims=True)
    vals, vecs = np.linalg.eig(M.T)
    pi = np.real(vecs[:, np.argmax(np.real(vals))])
    pi = pi / pi.sum()
    assert np.abs(ren[alive] - pi @ Xc[alive]).max() < 1e-10
    assert np.abs(pi @ Xc[alive] - Xc[alive].mean(0)).max() > 1e-4
