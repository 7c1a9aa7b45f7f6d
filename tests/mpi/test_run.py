"""The key property: under MPI, rank i's trajectory equals row i of the simulator's.

For every (algorithm, topology) case, 100 steps are run with ``bluefog_dist.run`` (one agent
per rank) and with ``bluefog_sim.run`` (all agents in this process); the whole stacked
trajectory is recorded at every step through a metric that allgathers the parameters, and
the two must agree to 1e-6. A local DGD is also checked against a dense NumPy iteration
``X <- W(t) X - lr * grad(X)`` (the independent oracle). Start-up disagreements must raise
on every rank (the launching test has a timeout, so a hang fails).

Extend :data:`ALGORITHMS` to put more algorithms under test.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import bluefog_dist
import bluefog_sim
from bluefog.algorithm import Algorithm, Problem
from bluefog.topology import (exponential_graph, one_peer_exponential_graph, random_matching,
                              ring_graph, star_graph)
from bluefog_dist.agreement import AgreementError

STEPS = 100
LR = 0.1


class _DGDState(NamedTuple):
    x: jax.Array
    count: jax.Array


def local_dgd(lr=LR) -> Algorithm:
    """DGD written in the test (independent of the algorithms package):
    x <- sum_j W_ij(t) x_j - lr * g_i(x_i), with the stochastic gradient at step t."""

    def init(x, ctx):
        return _DGDState(jnp.asarray(x), jnp.zeros((), jnp.int32))

    def step(s, ctx):
        mixed = ctx.comm.neighbor_allreduce(s.x, ctx.topology, s.count)
        return _DGDState(mixed - lr * ctx.stochastic_grad(s.x, s.count), s.count + 1)

    return Algorithm(init, step, lambda s: s.x, name="test_dgd", config={"lr": lr})


def _library(name, *args):
    def make():
        import algorithms

        return algorithms.REGISTRY[name](*args)
    return make


STATIC_SYMMETRIC = ("ring", "star")
ANY = ("ring", "star", "exponential", "one_peer", "random_matching")

#: (name, algorithm factory, problem kind, topologies to run it on). Extend freely.
ALGORITHMS = [
    ("test_dgd", local_dgd, "noisy_quadratic", ANY),
    ("dgd", _library("dgd", LR), "quadratic", ("star", "one_peer")),
    ("gradient_tracking", _library("gradient_tracking", 0.05), "quadratic", ("exponential", "random_matching")),
    ("exact_diffusion", _library("exact_diffusion", LR), "quadratic", STATIC_SYMMETRIC),
    ("push_sum", _library("push_sum"), "quadratic", ("exponential", "one_peer")),
    ("dsgd", _library("dsgd", 0.05), "least_squares", ("star", "random_matching")),
]

def _choco_sgd():
    from algorithms import choco_sgd
    from bluefog.compression import top_k

    return choco_sgd(0.05, top_k(0.5), 0.3)  # k = 2 of 3 coordinates on the wire


ALGORITHMS.append(("choco_sgd", _choco_sgd, "quadratic", ("exponential",)))


def _beer():
    from algorithms import beer
    from bluefog.compression import top_k

    return beer(0.05, top_k(0.5), 0.3)  # compressed gradient tracking, 2 of 3 coordinates


ALGORITHMS.append(("beer", _beer, "quadratic", ("exponential",)))

CASES = [(name, topo) for name, _, _, topos in ALGORITHMS for topo in topos]


def make_topology(name, n):
    return {"ring": ring_graph, "star": star_graph, "exponential": exponential_graph,
            "one_peer": one_peer_exponential_graph,
            "random_matching": lambda n: random_matching(n, seed=11)}[name](n)


def make_problem(kind, n):
    rng = np.random.default_rng(42)
    if kind == "least_squares":
        from algorithms import problems

        A = rng.normal(size=(n, 12, 3)).astype(np.float32)
        y = rng.normal(size=(n, 12)).astype(np.float32)
        return problems.least_squares(A, y, batch_size=4)
    b = rng.normal(size=(n, 3)).astype(np.float32)
    if kind == "quadratic":
        from algorithms import problems

        return problems.quadratic(b)
    # noisy quadratic defined here: f_i(x) = 0.5 |x - b_i|^2, stochastic gradient + N(0, 0.1^2)
    return Problem(lambda x, d: 0.5 * jnp.sum((x - d) ** 2), jnp.asarray(b),
                   jnp.zeros(3, jnp.float32), optimum=jnp.asarray(b.mean(0)),
                   stochastic_loss=lambda x, d, key: 0.5 * jnp.sum((x - d) ** 2)
                   + 0.1 * jnp.dot(jax.random.normal(key, x.shape, x.dtype), x),
                   name="noisy_quadratic")


def trajectory_metrics(params, ctx):
    """Every agent's flattened parameters as scalars (identical on every agent)."""
    flat, _ = ravel_pytree(params)
    everyone = ctx.comm.allgather(flat)
    return {f"x{i:02d}_{k:02d}": everyone[i, k]
            for i in range(everyone.shape[0]) for k in range(everyone.shape[1])}


def stacked_trajectory(history, n):
    keys = sorted(k for k in history if k.startswith("x"))
    d = len(keys) // n
    return np.stack([history[k] for k in keys], axis=1).reshape(-1, n, d)


@pytest.mark.parametrize("name,topo_name", CASES)
def test_trajectory_equals_simulator(rank, size, name, topo_name):
    factory, kind = {a[0]: (a[1], a[2]) for a in ALGORITHMS}[name]
    algorithm = factory()
    topology = make_topology(topo_name, size)
    problem = make_problem(kind, size)
    kwargs = dict(seed=3, record_every=1, progress=False, metrics=trajectory_metrics)
    dist = bluefog_dist.run(algorithm, problem, topology, STEPS, **kwargs)
    sim = bluefog_sim.run(algorithm, problem, topology, STEPS, **kwargs)
    got, want = stacked_trajectory(dist.history, size), stacked_trajectory(sim.history, size)
    assert got.shape == (STEPS + 1, size, got.shape[2])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ravel_pytree(dist.params)[0],
                               ravel_pytree(jax.tree_util.tree_map(lambda a: a[rank], sim.params))[0],
                               rtol=1e-6, atol=1e-6)
    # the rank's own row of the trajectory is its own parameters at the end
    np.testing.assert_allclose(got[-1, rank], ravel_pytree(dist.params)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("topo_name", ["star", "one_peer"])
def test_dgd_against_dense_numpy_oracle(size, topo_name):
    topology = make_topology(topo_name, size)
    problem = make_problem("quadratic", size)
    kwargs = dict(seed=0, record_every=1, progress=False, metrics=trajectory_metrics)
    dist = bluefog_dist.run(local_dgd(), problem, topology, STEPS, **kwargs)
    B = np.asarray(problem.data, np.float64)
    X = np.zeros_like(B)
    for t in range(STEPS):
        X = topology.at(t).weights @ X - LR * (X - B)
    np.testing.assert_allclose(stacked_trajectory(dist.history, size)[-1], X, rtol=1e-4, atol=1e-5)


def test_default_metrics_and_continuation(rank, size):
    topology, problem, algorithm = ring_graph(size), make_problem("quadratic", size), local_dgd()
    full = bluefog_dist.run(algorithm, problem, topology, 60, progress=False)
    first = bluefog_dist.run(algorithm, problem, topology, 25, progress=False, record_every=5)
    rest = bluefog_dist.run(algorithm, problem, topology, 35, progress=False, record_every=5,
                            state=first.state)
    np.testing.assert_allclose(rest.params, full.params, rtol=1e-6, atol=1e-6)
    sim = bluefog_sim.run(algorithm, problem, topology, 60, progress=False)
    assert set(full.history) == set(sim.history)
    np.testing.assert_array_equal(full.history["step"], sim.history["step"])
    for k in sim.history:
        np.testing.assert_allclose(full.history[k], sim.history[k], rtol=1e-5, atol=1e-6)
    # x0: stacked, rank i starts from row i
    x0 = jnp.arange(size * 3, dtype=jnp.float32).reshape(size, 3)
    one = bluefog_dist.run(algorithm, problem, topology, 1, x0=x0, progress=False)
    W = topology.weights
    B = np.asarray(problem.data)
    np.testing.assert_allclose(one.params, (W @ np.asarray(x0) - LR * (np.asarray(x0) - B))[rank],
                               rtol=1e-5, atol=1e-5)


def test_topology_mismatch_raises_on_every_rank(rank, size):
    problem, algorithm = make_problem("quadratic", size), local_dgd()
    if size >= 3:
        topology = star_graph(size) if rank == size - 1 else ring_graph(size)
        with pytest.raises(AgreementError, match=rf"first differing rank: {size - 1}\); field "
                                                 r"'topology': rank 0 has ring\(n=\d+\) \w+, rank "
                                                 rf"{size - 1} has star"):
            bluefog_dist.run(algorithm, problem, topology, 10, progress=False)
    if size >= 2:
        with pytest.raises(AgreementError, match=r"first differing rank: 1\); field 'seed'"):
            bluefog_dist.run(algorithm, problem, ring_graph(size), 10, progress=False,
                             seed=0 if rank == 0 else 1)
    # an invalid argument on one rank only: shared, raised everywhere
    steps = 0 if rank == size - 1 else 10
    with pytest.raises(AgreementError, match=rf"start-up check failed on rank\(s\) {size - 1}: "
                                             rf"rank {size - 1}: ValueError: steps must be"):
        bluefog_dist.run(algorithm, problem, ring_graph(size), steps, progress=False)


def test_world_size_must_equal_topology_size(size):
    n = size + 1
    with pytest.raises(AgreementError, match=rf"the MPI world size must equal topology.size; got "
                                             rf"world size {size} and topology.size={n}. Launch "
                                             rf"with bfrun -np {n}"):
        bluefog_dist.run(local_dgd(), make_problem("quadratic", n), ring_graph(n), 10,
                         progress=False)
