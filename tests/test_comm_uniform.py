"""Two kinds of "uniform" in the communicator.

* ``comm.uniform(value)``: control flow on a rank-independent value runs one branch under vmap.
* Uniform weights: a schedule whose rows all average uniformly (``1/c_i`` on itself and each
  in-neighbor) is mixed by summing, then dividing once by ``c_i`` (Bluefog's default
  averaging). Checked in float32 against the float64 dense oracle ``W @ X`` on Bluefog's own
  test (``test_neighbor_allreduce_fusion_alot`` in ``test/torch_ops_test.py``: 50 tensors
  filled with ``k + rank``, ``|(out - k) (d + 1) - sum of ranks| < 1e-5``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import algorithms
from algorithms.problems import quadratic
import bluefog.comm.base
from bluefog.comm.mixing import uniform_counts
from bluefog.topology import exponential_graph, from_matrix, from_networkx, ring_graph
from bluefog_sim import run, spmd


def _cond_step(use_uniform):
    topo = exponential_graph(4)

    def fn(comm, x, count):
        pred = (count + 1) % 3 == 0
        if use_uniform:
            pred = comm.uniform(pred)
        return lax.cond(pred, lambda v: comm.neighbor_allreduce(v, topo), lambda v: v, x)

    return jax.make_jaxpr(spmd(fn, 4, jit=False))(jnp.ones((4, 2)), jnp.zeros(4, jnp.int32))


def test_uniform_predicate_keeps_a_real_cond_under_vmap():
    text = str(_cond_step(True))
    assert "cond[" in text
    # Negative control: a batched predicate turns the cond into a select of both branches.
    assert "cond[" not in str(_cond_step(False))


def test_uniform_is_identity_on_values_and_bools():
    out = spmd(lambda comm, c: (comm.uniform(c), comm.uniform(c == 2)), 4)(jnp.full(4, 2))
    np.testing.assert_array_equal(np.asarray(out[0]), [2, 2, 2, 2])
    np.testing.assert_array_equal(np.asarray(out[1]), [True] * 4)


def test_local_sgd_communicates_only_every_J_steps_in_the_simulator():
    # J = 3: steps 0 and 1 are local, step 2 mixes. Oracle: x after three exact-gradient steps
    # on f_i = 1/2 ||x - b_i||^2 from x0 = 0 is W @ (b - (1 - lr)^3 b) (local steps never mix).
    b = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)))
    topo = exponential_graph(4)
    lr = 0.1
    alg = algorithms.dsgd(lr, steps_per_communication=3)
    problem = quadratic(b)
    res = run(alg, problem, topo, 3, record_every=3)
    local = np.asarray(b) * (1 - (1 - lr) ** 3)
    np.testing.assert_allclose(np.asarray(res.params), topo.weights @ local, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- uniform weights
def bluefog_error(topo, out, X):
    """Bluefog's measure: ``(d_i + 1) |out_i - (W @ X)_i|``, with the float64 oracle."""
    W = topo.weights
    c = (W != 0).sum(axis=1).reshape((-1,) + (1,) * (X.ndim - 1))
    oracle = np.tensordot(W, np.asarray(X, np.float64), axes=1)
    return float(np.max(np.abs(np.asarray(out, np.float64) - oracle) * c))


def fifty_tensors(n):
    """Bluefog's data: tensor k of rank r is filled with k + r (50 tensors of 23 values)."""
    return (np.arange(50.0)[None, :, None] + np.arange(n)[:, None, None]
            + np.zeros((1, 1, 23))).astype(np.float32)


# (topology, weight): 1/3 and 1/5 are not dyadic, so their float32 rounding shows.
NON_DYADIC = [(ring_graph(8), 1 / 3), (ring_graph(5), 1 / 3), (exponential_graph(12), 1 / 5),
              (exponential_graph(16), 1 / 5)]
IDS = lambda v: v.name if hasattr(v, "name") else f"w={v:.3f}"  # noqa: E731


@pytest.mark.parametrize("topo,w", NON_DYADIC, ids=IDS)
def test_uniform_averaging_meets_bluefogs_float32_tolerance(topo, w):
    assert np.allclose(topo.weights[topo.weights != 0], w)
    X = fifty_tensors(topo.size)
    out = spmd(lambda comm, x: comm.neighbor_allreduce(x, topo), topo.size)(X)
    # sum of integers is exact; one correctly rounded division: <= ulp(64)/2 * (d + 1)
    assert bluefog_error(topo, out, X) <= 1e-5


def many_draws(topo, iterations=100, seed=0):
    """Bluefog's check repeated ``iterations`` times in one compiled scan, each iteration on
    fresh integer-valued data in [0, 60) (50 tensors of 23 values per agent)."""
    n = topo.size
    X = np.random.default_rng(seed).integers(0, 60, (n, iterations, 50, 23)).astype(np.float32)

    def calls(comm, xs):
        return jax.lax.scan(lambda c, x: (c, comm.neighbor_allreduce(x, topo)), None, xs)[1]

    out = np.asarray(spmd(calls, n)(X))
    return max(bluefog_error(topo, out[:, t], X[:, t]) for t in range(iterations))


@pytest.mark.parametrize("topo,w", NON_DYADIC, ids=IDS)
def test_uniform_averaging_stays_within_tolerance_over_many_iterations(topo, w):
    assert many_draws(topo) <= 1e-5


def test_multiply_then_sum_misses_the_tolerance(monkeypatch):
    """Negative control: the weighted form (round 1/5, multiply, sum) exceeds 1e-5 on the same
    checks, so the two tests above can fail."""
    topo = exponential_graph(16)
    monkeypatch.setattr(bluefog.comm.base, "uniform_counts", lambda schedule: None)
    X = fifty_tensors(16)
    out = spmd(lambda comm, x: comm.neighbor_allreduce(x, topo), 16)(X)
    assert bluefog_error(topo, out, X) > 2e-5
    assert many_draws(topo) > 2e-5


def test_uniform_counts_detects_uniform_rows_only():
    import networkx as nx

    np.testing.assert_array_equal(uniform_counts(ring_graph(6).schedule), np.full(6, 3.0))
    np.testing.assert_array_equal(uniform_counts(exponential_graph(12).schedule), np.full(12, 5.0))
    lollipop = from_networkx(nx.lollipop_graph(4, 3), weights="uniform")  # uneven degrees
    degrees = np.asarray([d for _, d in sorted(nx.lollipop_graph(4, 3).degree())], float)
    np.testing.assert_array_equal(uniform_counts(lollipop.schedule), degrees + 1)
    two = from_matrix(np.asarray([[1 / 3, 2 / 3], [2 / 3, 1 / 3]]))  # self 1/3, neighbor 2/3
    assert uniform_counts(two.schedule) is None
    W = np.full((3, 3), 0.25) + np.diag([0.25, 0.25, 0.25])       # self 1/2, others 1/4
    assert uniform_counts(from_matrix(W).schedule) is None
    col = np.asarray([[0.2, 0.5, 0.0], [0.4, 0.0, 0.5], [0.4, 0.5, 0.5]])  # columns sum to 1
    assert uniform_counts(from_matrix(col, require="column").schedule) is None


def test_uneven_uniform_rows_with_padding_match_the_oracle():
    """Uniform rows of different lengths need padding rounds (weight 0), which must add
    nothing to the sum."""
    import networkx as nx

    topo = from_networkx(nx.lollipop_graph(4, 3), weights="uniform")
    assert any(not r.active.all() for r in topo.schedule.rounds)
    X = np.random.default_rng(2).standard_normal((topo.size, 5)).astype(np.float32)
    out = spmd(lambda comm, x: comm.neighbor_allreduce(x, topo), topo.size)(X)
    np.testing.assert_allclose(np.asarray(out), topo.weights @ X.astype(np.float64), atol=2e-6)
