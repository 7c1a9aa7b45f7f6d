"""Dynamic topologies: pattern definitions, the index rule in NumPy and traced JAX, and
mixed-round-count patterns through neighbor_allgather.

Oracles: the one-peer exponential definition (Ying et al., NeurIPS 2021), the definition of
a matching, and the NumPy index rule evaluated independently of the traced one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bluefog.topology import (
    DynamicTopology,
    exponential_graph,
    fully_connected_graph,
    one_peer_exponential_graph,
    random_matching,
    ring_graph,
    star_graph,
)
from bluefog_sim import spmd


@pytest.mark.parametrize("n", [1, 2, 3, 6, 8, 13, 16])
def test_one_peer_exponential_patterns(n):
    d = one_peer_exponential_graph(n)
    tau = max(1, int(np.ceil(np.log2(n)))) if n > 1 else 1
    assert d.period == tau and len(d.patterns) == tau
    for t in range(2 * tau):
        W = d.at(t).weights
        if n == 1:
            np.testing.assert_array_equal(W, [[1.0]])
            continue
        hop = 2 ** (t % tau) % n
        want = 0.5 * np.eye(n)
        want[np.arange(n), (np.arange(n) - hop) % n] += 0.5  # receive from i - 2^k
        np.testing.assert_array_equal(W, want)
        assert d.at(t).is_doubly_stochastic and d.at(t).schedule.num_rounds == 1
    if n & (n - 1) == 0:  # exact averaging over one period for powers of two
        np.testing.assert_array_equal(d.mean_weights(tau), np.full((n, n), 1.0 / n))
    else:
        assert np.abs(d.mean_weights(tau) - 1.0 / n).max() > 1e-3


def test_random_matching_patterns_are_matchings():
    d = random_matching(9, seed=4, pool_size=10)
    assert d.period is None and len(d.patterns) == 10
    for p in d.patterns:
        W = p.weights
        assert p.is_doubly_stochastic and p.is_symmetric
        idle = [i for i in range(9) if W[i, i] == 1.0]
        assert len(idle) == 1  # odd n: one agent sits out
        for i in range(9):
            if i not in idle:
                (j,) = p.in_neighbors(i)
                assert W[i, i] == W[i, j] == W[j, i] == 0.5 and p.in_neighbors(j) == [i]
    # same seed, same pool (every MPI rank agrees); different seed, different pool
    assert random_matching(9, seed=4, pool_size=10).fingerprint == d.fingerprint
    assert random_matching(9, seed=5, pool_size=10).fingerprint != d.fingerprint


@pytest.mark.parametrize("d", [random_matching(8, seed=1, pool_size=7), one_peer_exponential_graph(12),
                               random_matching(5, seed=123456789, pool_size=3)],
                         ids=lambda d: d.name)
def test_traced_index_rule_equals_numpy_rule(d):
    ts = np.arange(0, 5000, 7)
    traced = np.asarray(jax.jit(jax.vmap(d.index_traced))(jnp.asarray(ts, jnp.int32)))
    numpy_rule = np.array([d.index(int(t)) for t in ts])
    np.testing.assert_array_equal(traced, numpy_rule)
    if d.period is None:  # the hash spreads over the whole pool
        counts = np.bincount(numpy_rule, minlength=len(d.patterns))
        assert counts.min() > 0.5 * len(ts) / len(d.patterns)


def _dense_rate(mats):
    """Oracle: (largest singular value of prod - J, its P-th root), by SVD of the explicit product."""
    n = mats[0].shape[0]
    prod = np.linalg.multi_dot(mats[::-1]) if len(mats) > 1 else mats[0]
    sv = np.linalg.svd(prod - np.full((n, n), 1.0 / n), compute_uv=False)[0]
    return sv, sv ** (1.0 / len(mats))


def _shift_half(n, hop):
    W = 0.5 * np.eye(n)
    W[np.arange(n), (np.arange(n) - hop) % n] += 0.5
    return W


@pytest.mark.parametrize("n", [3, 5, 6, 12, 24])
def test_dynamic_rho_is_per_step_rate_of_period_product(n):
    d = one_peer_exponential_graph(n)
    tau = int(np.ceil(np.log2(n)))
    period_rho, rho = _dense_rate([_shift_half(n, 2 ** k) for k in range(tau)])
    assert d.rho_horizon == d.period == tau
    assert d.period_rho == pytest.approx(period_rho, abs=1e-12)
    assert d.rho == pytest.approx(rho, abs=1e-12) and d.spectral_gap == pytest.approx(1 - rho)
    assert 0 < d.rho < 1 and f"rho={rho:.4f}" in repr(d)


def test_dynamic_rho_exact_averaging_and_mixed_patterns():
    assert one_peer_exponential_graph(16).period_rho == 0.0 == one_peer_exponential_graph(16).rho
    assert one_peer_exponential_graph(1).rho == 0.0
    d = DynamicTopology([ring_graph(6), exponential_graph(6)], period=2)
    period_rho, rho = _dense_rate([ring_graph(6).weights, exponential_graph(6).weights])
    assert d.period_rho == pytest.approx(period_rho, abs=1e-12) and d.rho == pytest.approx(rho, abs=1e-12)
    assert "period=2" in repr(d)


def test_non_periodic_rho_uses_the_horizon():
    from bluefog.topology.dynamic import RHO_HORIZON

    d = random_matching(10, seed=3, pool_size=8)
    assert d.rho_horizon == RHO_HORIZON == 64
    period_rho, rho = _dense_rate([d.at(t).weights for t in range(64)])
    assert d.period_rho == pytest.approx(period_rho, abs=1e-12) and d.rho == pytest.approx(rho, abs=1e-12)
    assert 0 < d.rho < 1


def test_neighbor_allgather_pads_patterns_with_fewer_rounds():
    """Patterns with 2, 5 and 3 rounds: slots are padded to 5 with source -1, weight 0."""
    n = 6
    d = DynamicTopology([ring_graph(n), star_graph(n, center=1), exponential_graph(n)], period=3,
                        name="mixed")
    R = max(p.schedule.num_rounds for p in d.patterns)
    assert R == 5
    x = np.random.default_rng(0).standard_normal((n, 2)).astype(np.float32)
    f = spmd(lambda comm, v, t: (comm.neighbor_allgather(v, d, t=t), comm.neighbor_allreduce(v, d, t=t)), n)
    for t in range(4):
        W = d.at(t).weights
        nb, mixed = f(x, jnp.full((n,), t, jnp.int32))
        vals, srcs, ws = np.asarray(nb.values), np.asarray(nb.sources), np.asarray(nb.weights)
        assert vals.shape == (n, R, 2) and srcs.shape == ws.shape == (n, R)
        rounds = d.at(t).schedule.num_rounds
        np.testing.assert_array_equal(srcs[:, rounds:], -1)
        np.testing.assert_array_equal(ws[:, rounds:], 0.0)
        np.testing.assert_array_equal(vals[:, rounds:], 0.0)
        recon = np.diag(W)[:, None] * x + np.einsum("ir,ird->id", ws, vals)
        np.testing.assert_allclose(recon, W @ x, atol=2e-6)
        np.testing.assert_allclose(np.asarray(mixed), W @ x, atol=2e-6)


def test_fully_connected_single_step_is_exact_in_sim():
    n = 7
    x = np.random.default_rng(3).standard_normal((n, 3)).astype(np.float32)
    out = spmd(lambda comm, v: comm.neighbor_allreduce(v, fully_connected_graph(n)), n)(x)
    np.testing.assert_allclose(np.asarray(out), np.tile(x.mean(0), (n, 1)), atol=2e-6)
