"""Faulty runs against a dense NumPy reference of the faulty recursion.

Oracle: the receiver rules written as dense matrix recursions in NumPy (renormalise: masked
rows divided by their sums; absorb: missing weight added to the diagonal; keep_last: a
per-link memory matrix), with crashed rows frozen and reset rows restored, step by step. The
loss masks come from ``Faults.lost`` in NumPy, itself checked against plain-Python ints in
test_faults_models.py.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import algorithms as A
import bluefog_sim
from algorithms import problems as P
from bluefog.engine import cache
from bluefog.faults import Faults, LinkOutage, MessageLoss, NodeCrash, Partition
from bluefog.topology import exponential_graph, one_peer_exponential_graph
from test_engine_cache import compiles  # noqa: F401 - the fixture counting XLA compiles

N = 8


def _reference(W_of, X0, steps, f, rule):
    """Dense faulty consensus; ``W_of`` is ``W`` or a function ``t -> W(t)``."""
    n = len(X0)
    X, mem_v, mem_w = X0.copy(), np.zeros((n, n) + X0.shape[1:]), np.zeros((n, n))
    for t in range(steps):
        W = W_of(t) if callable(W_of) else W_of
        edge = (W != 0) & ~np.eye(n, dtype=bool)
        for k in range(n):
            if f.reset_now(t, k):
                X[k] = X0[k]
        ok = edge & ~np.array([[bool(f.lost(t, i, j)) for j in range(n)] for i in range(n)])
        M = np.where(ok, W, 0.0) + np.diag(np.diag(W))
        if rule == "renormalise":
            new = (M / M.sum(1, keepdims=True)) @ X
        elif rule == "absorb":
            new = M @ X + ((W - M).sum(1))[:, None] * X
        else:
            mem_w = np.where(ok, W, mem_w)
            mem_v = np.where(ok[..., None], W[..., None] * X[None, :, :], mem_v)
            new = (np.diag(W)[:, None] * X + mem_v.sum(1)) / (np.diag(W) + mem_w.sum(1))[:, None]
        down = np.array([bool(f.down(t, k)) for k in range(n)])
        X = np.where(down[:, None], X, new)
    return X


MODELS = (MessageLoss(0.2, seed=5), LinkOutage([(0, 1), (3, 4)], 2, 9),
          Partition([[0, 1, 2, 3]], 12, 16), NodeCrash(6, at=4), NodeCrash(2, at=5, rejoin=11,
                                                                         state="reset"))


@pytest.mark.parametrize("rule", ["renormalise", "absorb", "keep_last"])
def test_faulty_consensus_trajectory_equals_the_dense_reference(x64, rule):
    topo, steps = exponential_graph(N), 24
    X0 = np.random.default_rng(1).normal(size=(N, 3))
    f = Faults(*MODELS, rule=rule)
    r = bluefog_sim.run(A.consensus(), P.quadratic(X0), topo, steps, x0=jnp.asarray(X0),
                        faults=f, record_every=steps)
    ref = _reference(topo.weights, X0, steps, f.check_size(N), rule)
    np.testing.assert_allclose(np.asarray(r.params), ref, rtol=0, atol=1e-13)
    assert np.abs(ref - _reference(topo.weights, X0, steps, Faults(), rule)).max() > 1e-3
    if rule == "renormalise":  # the same objects without faults: no faulty program reused
        alg, prob = A.consensus(), P.quadratic(X0)
        for faults in (Faults(MODELS[0]), None):  # loss only: the algorithm is not wrapped
            r = bluefog_sim.run(alg, prob, topo, steps, x0=jnp.asarray(X0), faults=faults,
                                record_every=steps)
        np.testing.assert_allclose(np.asarray(r.params),
                                   np.linalg.matrix_power(topo.weights, steps) @ X0, atol=1e-13)


@pytest.mark.parametrize("rule", ["renormalise", "keep_last"])
def test_a_sweep_over_seeds_rates_windows_and_crash_steps_compiles_once(x64, compiles, rule):
    """The fault tables are inputs of the compiled program: a second run with another seed,
    loss rate, outage window and crash (same structure) compiles nothing and still follows
    the dense reference; a model of another structure compiles (the counter can fail)."""
    cache.clear_programs()
    topo, steps = exponential_graph(N), 20
    X0 = np.random.default_rng(7).normal(size=(N, 2))
    x0 = jnp.asarray(X0)
    alg, prob = A.consensus(), P.quadratic(X0)
    sweep = [Faults(MessageLoss(0.2, seed=5), LinkOutage([(0, 1)], 2, 9),
                    NodeCrash(2, at=5, rejoin=11, state="reset"), rule=rule),
             Faults(MessageLoss(0.45, seed=123456), LinkOutage([(3, 4)], 6, 15),
                    NodeCrash(6, at=1, rejoin=14, state="reset"), rule=rule)]
    other = Faults(MessageLoss(0.2, seed=5), LinkOutage([(0, 1), (5, 6)], 2, 9),
                   NodeCrash(2, at=5, rejoin=11, state="reset"), rule=rule)  # one outage more
    finals = []
    for k, f in enumerate(sweep + [other]):
        compiles.clear()
        r = bluefog_sim.run(alg, prob, topo, steps, x0=x0, faults=f, record_every=5)
        if k == 1:
            assert r.compile_seconds == 0.0 and compiles == [], (r.compile_seconds, compiles)
        else:
            assert r.compile_seconds > 0 and len(compiles) > 0
        ref = _reference(topo.weights, X0, steps, f.check_size(N), rule)
        np.testing.assert_allclose(np.asarray(r.params), ref, rtol=0, atol=1e-13)
        finals.append(ref)
    assert np.abs(finals[0] - finals[1]).max() > 1e-3  # the second model changed the run


def test_time_varying_topology_under_faults_equals_the_dense_reference(x64):
    topo, steps = one_peer_exponential_graph(N), 12
    X0 = np.random.default_rng(4).normal(size=(N, 2))
    f = Faults(MessageLoss(0.3, seed=2), NodeCrash(1, at=3, rejoin=7), rule="absorb")
    r = bluefog_sim.run(A.consensus(), P.quadratic(X0), topo, steps, x0=jnp.asarray(X0),
                        faults=f, record_every=steps)
    ref = _reference(lambda t: topo.at(t).weights, X0, steps, f.check_size(N), "absorb")
    np.testing.assert_allclose(np.asarray(r.params), ref, rtol=0, atol=1e-13)
    assert np.abs(ref - _reference(lambda t: topo.at(t).weights, X0, steps, Faults(),
                                   "absorb")).max() > 1e-3


def test_no_fault_models_give_the_fault_free_mix(x64):
    X = jnp.asarray(np.random.default_rng(2).normal(size=(N, 4)))
    topo = exponential_graph(N)
    for rule in ("renormalise", "absorb"):
        out = bluefog_sim.spmd(lambda c, x: c.with_faults(Faults(rule=rule)).neighbor_allreduce(
            x, topo, 3), N)(X)
        np.testing.assert_allclose(np.asarray(out), topo.weights @ np.asarray(X), atol=1e-15)


def test_faulty_ops_refuse_what_they_do_not_cover():
    f = Faults(MessageLoss(0.1))
    x = jnp.ones((N, 2))
    topo = exponential_graph(N)
    with pytest.raises(ValueError, match="needs the step counter"):
        bluefog_sim.spmd(lambda c, v: c.with_faults(f).neighbor_allreduce(v, topo), N)(x)
    with pytest.raises(ValueError, match="rule='keep_last' needs per-link memory"):
        bluefog_sim.spmd(lambda c, v: c.with_faults(Faults(rule="keep_last")).neighbor_allreduce(
            v, topo, 0), N)(x)
    prob = P.quadratic(np.zeros((N, 2)))
    with pytest.raises(ValueError, match="static topology"):
        bluefog_sim.run(A.consensus(), prob, one_peer_exponential_graph(N), 2,
                        faults=Faults(MessageLoss(0.1), rule="keep_last"))
    with pytest.raises(TypeError, match="bluefog.faults.Faults"):
        bluefog_sim.run(A.consensus(), prob, topo, 2, faults=0.1)
