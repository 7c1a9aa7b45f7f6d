"""Decentralized optax optimizers against dense NumPy oracles (float64)."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bluefog_sim
from algorithms.optim import (communication_bytes_per_step, decentralized, dmsgd, qg_dsgdm)
from bluefog import Problem
from bluefog.topology import Topology, one_peer_exponential_graph

N, D = 6, 3


def ring_W(n):
    W = np.zeros((n, n))
    for i in range(n):
        W[i, i] = W[i, (i + 1) % n] = W[i, (i - 1) % n] = 1 / 3
    return W


def quad_problem(B):
    """Non-isotropic quadratic f_i(x) = 1/2 (x - b_i)^T A (x - b_i); gradient A (x - b_i)."""
    A = np.diag(np.arange(1.0, D + 1))
    prob = Problem(lambda x, b: 0.5 * (x - b) @ jnp.asarray(A) @ (x - b),
                   jnp.asarray(B), jnp.zeros(D))
    return prob, A


def grads(X, B, A):
    return (X - B) @ A.T


def run_sim(alg, prob, topo, steps, X0, local_size=1):
    res = bluefog_sim.run(alg, prob, topo, steps, x0=jnp.asarray(X0), record_every=steps,
                          progress=False, local_size=local_size)
    return np.asarray(res.params), res


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, D)), rng.normal(size=(N, D))


@pytest.mark.parametrize("style", ["atc", "awc"])
def test_one_step_matches_dense_oracle(x64, style):
    B, X0 = data()
    prob, A = quad_problem(B)
    W = ring_W(N)
    lr = 0.1
    X, _ = run_sim(decentralized(optax.sgd(lr), style=style), prob, Topology(W), 1, X0)
    G = grads(X0, B, A)
    want = W @ (X0 - lr * G) if style == "atc" else W @ X0 - lr * G
    np.testing.assert_allclose(X, want, rtol=1e-12, atol=1e-12)


def test_many_steps_with_period_J(x64):
    B, X0 = data(1)
    prob, A = quad_problem(B)
    W = ring_W(N)
    lr, J, T = 0.05, 3, 10
    X, _ = run_sim(decentralized(optax.sgd(lr), steps_per_communication=J), prob, Topology(W), T, X0)
    Xo = X0.copy()
    for t in range(T):
        Xo = Xo - lr * grads(Xo, B, A)
        if (t + 1) % J == 0:
            Xo = W @ Xo
    np.testing.assert_allclose(X, Xo, rtol=1e-12, atol=1e-12)


def test_dynamic_topology_pattern_per_communication(x64):
    n = 8
    rng = np.random.default_rng(2)
    B, X0 = rng.normal(size=(n, D)), rng.normal(size=(n, D))
    prob, A = quad_problem(B)
    topo = one_peer_exponential_graph(n)
    lr, J, T = 0.1, 2, 9
    X, _ = run_sim(decentralized(optax.sgd(lr), steps_per_communication=J), prob, topo, T, X0)
    Xo = X0.copy()
    k = 0
    for t in range(T):
        Xo = Xo - lr * grads(Xo, B, A)
        if (t + 1) % J == 0:
            hop = 2 ** (k % 3)  # independent: agent i averages with i - 2^k (Bluefog's direction)
            Xo = 0.5 * (Xo + np.roll(Xo, hop, axis=0))
            k += 1
    np.testing.assert_allclose(X, Xo, rtol=1e-12, atol=1e-12)


def test_gradient_allreduce_is_centralized_momentum_sgd(x64):
    B, _ = data(3)
    prob, A = quad_problem(B)
    x0 = np.array([1.0, -2.0, 0.5])
    lr, beta, T = 0.05, 0.9, 12
    X, _ = run_sim(dmsgd(lr, beta, communication="gradient_allreduce"), prob, Topology(ring_W(N)),
                   T, np.tile(x0, (N, 1)))
    # centralized heavy ball on f = mean_i f_i (gradient A (x - mean b))
    x, m = x0.copy(), np.zeros(D)
    for _ in range(T):
        g = A @ (x - B.mean(0))
        m = beta * m + g
        x = x - lr * m
    np.testing.assert_allclose(X, np.tile(x, (N, 1)), rtol=1e-12, atol=1e-12)


def test_allreduce_and_none(x64):
    B, X0 = data(4)
    prob, A = quad_problem(B)
    lr = 0.2
    X, _ = run_sim(decentralized(optax.sgd(lr), communication="allreduce"), prob,
                   Topology(ring_W(N)), 1, X0)
    Y = X0 - lr * grads(X0, B, A)
    np.testing.assert_allclose(X, np.tile(Y.mean(0), (N, 1)), rtol=1e-12, atol=1e-12)
    X, _ = run_sim(decentralized(optax.sgd(lr), communication="none"), prob,
                   Topology(ring_W(N)), 1, X0)
    np.testing.assert_allclose(X, Y, rtol=1e-12, atol=1e-12)


def test_hierarchical(x64):
    B, X0 = data(5)
    prob, A = quad_problem(B)
    L = 2
    Wm = ring_W(3)
    lr = 0.1
    alg = decentralized(optax.sgd(lr), communication="hierarchical", machine_topology=Topology(Wm))
    X, _ = run_sim(alg, prob, Topology(ring_W(N)), 1, X0, local_size=L)
    H = np.kron(Wm, np.full((L, L), 1 / L))
    np.testing.assert_allclose(X, H @ (X0 - lr * grads(X0, B, A)), rtol=1e-12, atol=1e-12)


def test_dmsgd_matches_numpy(x64):
    B, X0 = data(6)
    prob, A = quad_problem(B)
    W = ring_W(N)
    lr, beta, T = 0.05, 0.8, 7
    X, _ = run_sim(dmsgd(lr, beta), prob, Topology(W), T, X0)
    Xo, M = X0.copy(), np.zeros_like(X0)
    for _ in range(T):
        M = beta * M + grads(Xo, B, A)
        Xo = W @ (Xo - lr * M)
    np.testing.assert_allclose(X, Xo, rtol=1e-12, atol=1e-12)


def test_qg_dsgdm_matches_numpy(x64):
    B, X0 = data(7)
    prob, A = quad_problem(B)
    W = ring_W(N)
    lr, beta, T = 0.05, 0.7, 8
    X, res = run_sim(qg_dsgdm(lr, beta), prob, Topology(W), T, X0)
    Xo, M = X0.copy(), np.zeros_like(X0)
    for _ in range(T):
        d = grads(Xo, B, A) + beta * M
        Xn = W @ (Xo - lr * d)
        M = beta * M + (1 - beta) * (Xo - Xn) / lr
        Xo = Xn
    np.testing.assert_allclose(X, Xo, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(res.state.momentum), M, rtol=1e-9, atol=1e-11)


def test_adam_inner_atc(x64):
    """Any optax transformation: ATC around Adam equals W @ (per-agent Adam step)."""
    B, X0 = data(8)
    prob, A = quad_problem(B)
    W = ring_W(N)
    lr, b1, b2, eps, T = 0.01, 0.9, 0.999, 1e-8, 3
    X, _ = run_sim(decentralized(optax.adam(lr, b1, b2, eps)), prob, Topology(W), T, X0)
    Xo, m, v = X0.copy(), np.zeros_like(X0), np.zeros_like(X0)
    for t in range(1, T + 1):
        g = grads(Xo, B, A)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mh, vh = m / (1 - b1 ** t), v / (1 - b2 ** t)
        Xo = W @ (Xo - lr * mh / (np.sqrt(vh) + eps))
    np.testing.assert_allclose(X, Xo, rtol=1e-10, atol=1e-12)


def test_bytes_per_step():
    params = {"w": jnp.zeros((10, 4), jnp.float32), "b": jnp.zeros(4, jnp.float32)}
    b = 44 * 4
    n = 8
    # exponential graph on 8 agents: in-neighbors i+1, i+2, i+4 -> three rounds
    W = np.eye(n)
    for k in (1, 2, 4):
        W[np.arange(n), (np.arange(n) + k) % n] = 1
    W /= W.sum(1, keepdims=True)
    topo = Topology(W)
    assert communication_bytes_per_step(params, communication="neighbor", topology=topo) == 3 * b
    assert communication_bytes_per_step(params, communication="neighbor", topology=topo,
                                        steps_per_communication=3) == b
    assert communication_bytes_per_step(params, communication="allreduce", topology=topo) == \
        pytest.approx(2 * 7 / 8 * b)
    assert communication_bytes_per_step(params, communication="none", topology=topo) == 0
    # one-peer exponential: one round per pattern
    assert communication_bytes_per_step(params, communication="neighbor",
                                        topology=one_peer_exponential_graph(n)) == b


def test_errors():
    with pytest.raises(TypeError, match="inner must be an optax.GradientTransformation"):
        decentralized(lambda g: g)
    with pytest.raises(ValueError, match="communication must be one of"):
        decentralized(optax.sgd(0.1), communication="gossip")
    with pytest.raises(ValueError, match="style must be one of 'atc', 'awc'; got 'cta'"):
        decentralized(optax.sgd(0.1), style="cta")
    with pytest.raises(ValueError, match="decentralized: steps_per_communication must be an integer >= 1"):
        decentralized(optax.sgd(0.1), steps_per_communication=0)
    with pytest.raises(ValueError, match="steps_per_communication must be 1 with communication="):
        decentralized(optax.sgd(0.1), communication="gradient_allreduce", steps_per_communication=2)
    with pytest.raises(TypeError, match="needs machine_topology"):
        decentralized(optax.sgd(0.1), communication="hierarchical")
    with pytest.raises(ValueError, match="machine_topology is only used"):
        decentralized(optax.sgd(0.1), machine_topology=Topology(ring_W(3)))
    with pytest.raises(ValueError, match=r"dmsgd: momentum must be in \[0, 1\); got 1.0"):
        dmsgd(0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"qg_dsgdm: lr must be a positive finite float; got -0.1"):
        qg_dsgdm(-0.1)
    with pytest.raises(TypeError, match=r"dmsgd: nesterov must be True or False; got 'yes'"):
        dmsgd(0.1, nesterov="yes")
    with pytest.raises(ValueError, match="use dmsgd"):
        qg_dsgdm(0.1, communication="gradient_allreduce")


@pytest.mark.parametrize("make", [dmsgd, qg_dsgdm])
@pytest.mark.parametrize("lr", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_lr_is_refused(make, lr):
    with pytest.raises(ValueError, match=rf"{make.__name__}: lr must be a positive finite float; "
                                         rf"got {lr}\. Pass e\.g\. {make.__name__}\(lr=0\.1\)"):
        make(lr)


def test_schedule_lr_is_accepted():
    alg = dmsgd(optax.constant_schedule(0.1))
    assert alg.config["lr"] == "schedule"
