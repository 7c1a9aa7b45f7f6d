"""One SGD family: ``dsgd``/``gradient_allreduce`` and ``dmsgd`` are one implementation
(bit-identical trajectories) with one check of the mixing weights (row-stochastic)."""

import re

import jax
import numpy as np
import optax
import pytest

import algorithms as A
import bluefog_sim
from algorithms import problems as P
from algorithms.optim import decentralized, dmsgd, qg_dsgdm
from bluefog.topology import Topology, one_peer_exponential_graph

N, D = 8, 3


def noisy_problem():
    B = np.random.default_rng(0).normal(size=(N, D))
    return P.quadratic(B, noise_std=0.5)


def column_only(n=N):
    """Directed ring plus one chord, out-degree weights: column- but not row-stochastic."""
    adj = np.eye(n)
    for j in range(n):
        adj[(j + 1) % n, j] = 1
    adj[2, 0] = 1
    return Topology(adj / adj.sum(axis=0, keepdims=True), require="column")


def assert_same_run(a, b):
    """Every recorded metric at every step, and the final state, bit for bit."""
    assert set(a.history) == set(b.history)
    for k in a.history:
        np.testing.assert_array_equal(np.asarray(a.history[k]), np.asarray(b.history[k]), err_msg=k)
    for la, lb in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state)):
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))


@pytest.mark.parametrize("momentum,J", [(0.0, 1), (0.5, 1), (0.9, 3)])
def test_dsgd_and_dmsgd_give_identical_trajectories(x64, momentum, J):
    prob, topo = noisy_problem(), one_peer_exponential_graph(N)
    run = lambda alg: bluefog_sim.run(alg, prob, topo, 30, record_every=1, seed=4)  # noqa: E731
    a = run(A.dsgd(0.1, momentum=momentum, steps_per_communication=J))
    b = run(dmsgd(0.1, momentum=momentum, steps_per_communication=J))
    assert_same_run(a, b)
    assert a.history["distance_to_optimum"][-1] > 0  # the runs moved (noise keeps them apart)


def test_gradient_allreduce_and_dmsgd_gradient_allreduce_give_identical_trajectories(x64):
    prob, topo = noisy_problem(), one_peer_exponential_graph(N)
    a = bluefog_sim.run(A.gradient_allreduce(0.1, momentum=0.5), prob, topo, 30, record_every=1, seed=4)
    b = bluefog_sim.run(dmsgd(0.1, momentum=0.5, communication="gradient_allreduce"), prob, topo, 30,
                        record_every=1, seed=4)
    assert_same_run(a, b)


def test_exact_gradient_allreduce_is_gradient_descent(x64):
    """stochastic=False: x+ = x - lr * mean_i grad f_i(x) = x - lr (x - mean b) (closed form)."""
    prob = noisy_problem()
    res = bluefog_sim.run(A.gradient_allreduce(0.1, stochastic=False), prob,
                          one_peer_exponential_graph(N), 20, record_every=20)
    bbar = np.asarray(prob.optimum)
    want = bbar * (1 - 0.9 ** 20)  # from x0 = 0
    np.testing.assert_allclose(np.asarray(res.params), np.broadcast_to(want, (N, D)), rtol=1e-12)


@pytest.mark.parametrize("name,make", [
    ("dsgd", lambda: A.dsgd(0.1)),
    ("dmsgd", lambda: dmsgd(0.1)),
    ("qg_dsgdm", lambda: qg_dsgdm(0.1)),
    ("decentralized", lambda: decentralized(optax.sgd(0.1), style="awc")),
])
def test_column_stochastic_topology_is_refused_for_neighbor_mixing(name, make):
    topo = column_only()
    # the oracle of the refusal: the weights really are column- and not row-stochastic
    assert np.allclose(topo.weights.sum(axis=0), 1) and not np.allclose(topo.weights.sum(axis=1), 1)
    s = topo.weights.sum(axis=1)
    sums = re.escape(f"[{s.min():.6g}, {s.max():.6g}]")
    with pytest.raises(ValueError, match=rf"{name} needs row-stochastic mixing weights; pattern "
                                         rf"'custom' has row sums in {sums} \(need W 1 = 1\)\. "
                                         r"Build it with Topology\(W, require='row'\)"):
        bluefog_sim.run(make(), noisy_problem(), topo, 5)


def test_column_stochastic_topology_is_fine_without_neighbor_mixing():
    """gradient_allreduce never reads W, so any topology of the right size runs."""
    res = bluefog_sim.run(A.gradient_allreduce(0.1), noisy_problem(), column_only(), 3, record_every=3)
    assert np.all(np.isfinite(np.asarray(res.params)))


def test_column_stochastic_machine_topology_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"dmsgd \(machine_topology\) needs row-stochastic mixing "
                                         r"weights.*row sums in"):
        dmsgd(0.1, communication="hierarchical", machine_topology=column_only(4))
