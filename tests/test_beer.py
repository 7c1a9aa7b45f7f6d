"""BEER (Zhao et al. 2022) against the closed-form least-squares optimum.

Oracle: ``numpy.linalg.lstsq`` of the stacked system, computed here in float64,
independently of the library's problems. On heterogeneous local data with a biased
compressor (top-k, deterministic int8 blocks), BEER reaches the exact optimum where naive
compressed DGD and CHOCO-SGD (and DGD itself) stall at a constant-step bias.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bluefog_sim
from algorithms import COMPRESSED_REGISTRY, beer, choco_sgd, compressed_dgd
from bluefog import compression as C
from bluefog import topology as T
from bluefog.algorithm import Problem

N, M, D = 8, 12, 10


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def _problem():
    """f_i(x) = |A_i x - y_i|^2 / (2M); y_i has an agent-specific offset (heterogeneity)."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(N, M, D))
    y = rng.normal(size=(N, M)) + 3 * rng.normal(size=(N, 1))
    x_star = np.linalg.lstsq(A.reshape(-1, D), y.reshape(-1), rcond=None)[0]
    loss = lambda x, d: 0.5 * jnp.mean((d[0] @ x - d[1]) ** 2)  # noqa: E731
    return Problem(loss, (jnp.asarray(A), jnp.asarray(y)), jnp.zeros(D),
                   optimum=jnp.asarray(x_star), name="heterogeneous_lstsq"), x_star


def _run(alg, steps):
    problem, x_star = _problem()
    res = bluefog_sim.run(alg, problem, T.exponential_graph(N), steps, progress=False,
                          record_every=steps)
    err = np.linalg.norm(np.asarray(res.params) - x_star, axis=1).max()
    return err / np.linalg.norm(x_star)


@pytest.mark.parametrize("compressor", [C.top_k(0.2), C.blockwise(8, 10)], ids=lambda c: c.name)
def test_beer_reaches_the_exact_optimum_where_naive_compression_stalls(x64, compressor):
    assert _run(beer(0.1, compressor, gamma=0.2), 800) < 1e-10  # every agent
    assert _run(compressed_dgd(0.05, compressor), 400) > 1e-2
    assert _run(choco_sgd(0.05, compressor, gamma=0.2), 400) > 1e-2


def test_beer_is_in_the_compressed_registry():
    assert COMPRESSED_REGISTRY["beer"] is beer


@pytest.mark.parametrize("call,exc,match", [
    (lambda: beer(0.1, "topk", 0.2), TypeError,
     r"beer: compressor must be a bluefog.compression.Compressor"),
    (lambda: beer(0.1, C.top_k(0.1), 1.5), ValueError, r"beer: gamma must be"),
    (lambda: beer(-1.0, C.top_k(0.1), 0.2), ValueError, r"beer: lr must be a positive"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_beer_refuses_a_matrix_that_is_not_doubly_stochastic():
    W = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.25, 0.25, 0.5]])
    problem = Problem(lambda x, d: 0.5 * jnp.sum((x - d) ** 2), jnp.ones((3, 2)), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"beer needs doubly-stochastic mixing weights"):
        bluefog_sim.run(beer(0.1, C.top_k(0.5), 0.2), problem, T.from_matrix(W, require="row"), 5)
