"""The alpha-beta cost model against hand-derived closed forms and synthetic fits."""

import math

import numpy as np
import pytest

from bluefog.cost_model import (
    AlphaBeta,
    exponential_exchange_time,
    fit_alpha_beta,
    neighbor_allreduce_time,
    one_peer_exponential_time,
    recursive_doubling_allreduce_time,
    ring_allreduce_time,
    schedule_time,
)
from bluefog.topology import Topology, one_peer_exponential_graph, random_matching

MODEL = AlphaBeta(alpha=3e-6, beta=2e-10)


def _exponential_weights(n):
    """Base-2 exponential graph with uniform weights, written out by hand."""
    offsets = [2 ** k for k in range(64) if 2 ** k < n]
    W = np.eye(n)
    for i in range(n):
        for o in offsets:
            W[i, (i + o) % n] = 1.0
    return W / W.sum(axis=1, keepdims=True)


def _ring_weights(n):
    W = np.zeros((n, n))
    for i in range(n):
        W[i, [i, (i - 1) % n, (i + 1) % n]] = 1.0 / 3.0
    return W


# ---- closed forms -------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 8, 64, 100])
@pytest.mark.parametrize("m", [0, 8, 4096, 4_000_000])
def test_ring_allreduce_closed_form(n, m):
    # Hand derivation: n-1 reduce-scatter steps and n-1 allgather steps, each one message of
    # m/n bytes: 2(n-1) * (alpha + (m/n) beta).
    expected = 2 * (n - 1) * (3e-6 + (m / n) * 2e-10)
    assert ring_allreduce_time(MODEL, n, m) == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize("n,steps", [(1, 0), (2, 1), (4, 2), (8, 3), (64, 6)])
def test_recursive_doubling_closed_form(n, steps):
    # Hand derivation: log2(n) pairwise exchanges of the whole m-byte vector.
    assert recursive_doubling_allreduce_time(MODEL, n, 1000) == pytest.approx(
        steps * (3e-6 + 1000 * 2e-10))


@pytest.mark.parametrize("n,rounds", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4),
                                      (64, 6), (100, 7), (256, 8)])
def test_exponential_round_count_by_hand(n, rounds):
    m = 1 << 20
    assert exponential_exchange_time(MODEL, n, m) == pytest.approx(rounds * (3e-6 + m * 2e-10))
    if n > 1:
        # The schedule compiled from the hand-written matrix has the same number of rounds.
        topo = Topology(_exponential_weights(n))
        assert neighbor_allreduce_time(MODEL, topo, m) == pytest.approx(
            exponential_exchange_time(MODEL, n, m))


def test_one_peer_exponential_is_one_round():
    m = 12345
    for n in (2, 5, 16, 64):
        assert one_peer_exponential_time(MODEL, n, m) == pytest.approx(3e-6 + m * 2e-10)
        # Every pattern has exactly one round, so the period mean is one round too.
        dyn = one_peer_exponential_graph(n)
        assert neighbor_allreduce_time(MODEL, dyn, m) == pytest.approx(3e-6 + m * 2e-10)
    assert one_peer_exponential_time(MODEL, 1, m) == 0.0


def test_schedule_time_ring_and_array_sizes():
    topo = Topology(_ring_weights(10))
    m = np.array([0, 100, 1e6])
    # An undirected ring has two offsets (+1, -1): two rounds.
    np.testing.assert_allclose(schedule_time(MODEL, topo.schedule, m), 2 * (3e-6 + m * 2e-10))


def test_random_matching_is_one_round_on_average():
    dyn = random_matching(8, seed=1, pool_size=4)
    # A perfect matching is an involution: one round (odd n: the idle agent pads).
    assert neighbor_allreduce_time(MODEL, dyn, 800) == pytest.approx(3e-6 + 800 * 2e-10)


def test_allreduce_beats_exchange_only_when_bandwidth_dominates():
    # Sanity of the model's trade-off (hand algebra): for n = 64 the exponential exchange
    # moves 6 m bytes per agent versus ~2 m for the ring, but needs 6 latencies versus 126.
    n = 64
    small, large = 8, 1 << 26
    assert exponential_exchange_time(MODEL, n, small) < ring_allreduce_time(MODEL, n, small)
    assert exponential_exchange_time(MODEL, n, large) > ring_allreduce_time(MODEL, n, large)


# ---- fit -------------------------------------------------------------------------------
@pytest.mark.parametrize("relative", [True, False])
def test_fit_recovers_known_parameters_exactly(relative):
    m = np.array([8, 64, 1024, 65536, 1 << 20, 1 << 24], dtype=float)
    t = 5e-6 + 1.25e-10 * m
    fit = fit_alpha_beta(m, t, relative=relative)
    assert fit.alpha == pytest.approx(5e-6, rel=1e-9)
    assert fit.beta == pytest.approx(1.25e-10, rel=1e-9)
    assert fit.bandwidth == pytest.approx(8e9, rel=1e-9)


def test_fit_with_noise_matches_scipy_weighted_least_squares():
    scipy_opt = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    m = np.repeat(np.logspace(1, 7, 7), 5)
    t = (2e-6 + 3e-10 * m) * np.exp(rng.normal(0, 0.05, m.size))
    fit = fit_alpha_beta(m, t)
    # Independent oracle: scipy's bounded least squares on the relative residuals.
    res = scipy_opt.lsq_linear(np.stack([1 / t, m / t], axis=1), np.ones_like(t),
                               bounds=(0, np.inf), tol=1e-15, method="bvls")
    assert fit.alpha == pytest.approx(res.x[0], rel=1e-6)
    assert fit.beta == pytest.approx(res.x[1], rel=1e-6)
    assert fit.alpha == pytest.approx(2e-6, rel=0.2)
    assert fit.beta == pytest.approx(3e-10, rel=0.1)


def test_fit_clamps_to_nonnegative_like_bounded_least_squares():
    scipy_opt = pytest.importorskip("scipy.optimize")
    # Time that falls with size at the small end would give a negative alpha unconstrained.
    m = np.array([0.0, 1e6, 2e6])
    t = np.array([1e-9, 1e-4, 4e-4])
    unconstrained = np.linalg.lstsq(np.stack([np.ones_like(m), m], axis=1), t, rcond=None)[0]
    assert unconstrained[0] < 0  # the case the clamp exists for
    fit = fit_alpha_beta(m, t, relative=False)
    res = scipy_opt.lsq_linear(np.stack([np.ones_like(m), m], axis=1), t, bounds=(0, np.inf),
                               tol=1e-15, method="bvls")
    assert fit.alpha >= 0 and fit.beta >= 0
    np.testing.assert_allclose([fit.alpha, fit.beta], res.x, rtol=1e-6, atol=1e-15)


# ---- bad input ---------------------------------------------------------------------------
def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="at least two distinct message sizes"):
        fit_alpha_beta([8, 8, 8], [1e-6, 1e-6, 1e-6])
    with pytest.raises(ValueError, match="same length"):
        fit_alpha_beta([8, 16], [1e-6])
    with pytest.raises(ValueError, match=r"times must be finite and > 0"):
        fit_alpha_beta([8, 16], [1e-6, 0.0])
    with pytest.raises(ValueError, match=r"nbytes must be finite and >= 0"):
        fit_alpha_beta([-8, 16], [1e-6, 2e-6])
    with pytest.raises(TypeError, match="relative must be a bool"):
        fit_alpha_beta([8, 16], [1e-6, 2e-6], relative=1)


def test_predictions_reject_bad_input():
    with pytest.raises(TypeError, match=r"model must be an AlphaBeta"):
        ring_allreduce_time((1e-6, 1e-9), 4, 8)
    with pytest.raises(ValueError, match="model must have finite alpha >= 0"):
        ring_allreduce_time(AlphaBeta(-1.0, 0.0), 4, 8)
    with pytest.raises(ValueError, match="n"):
        ring_allreduce_time(MODEL, 0, 8)
    with pytest.raises(ValueError, match="nbytes must be a finite number >= 0"):
        exponential_exchange_time(MODEL, 4, -1)
    with pytest.raises(TypeError, match="nbytes must be a number of bytes"):
        exponential_exchange_time(MODEL, 4, True)
    with pytest.raises(TypeError, match="schedule must be a bluefog.topology.Schedule"):
        schedule_time(MODEL, np.eye(3), 8)
    with pytest.raises(TypeError, match="topology must be a Topology or DynamicTopology"):
        neighbor_allreduce_time(MODEL, np.eye(3), 8)
    assert math.isinf(AlphaBeta(1e-6, 0.0).bandwidth)
