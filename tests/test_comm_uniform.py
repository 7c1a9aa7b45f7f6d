"""``comm.uniform``: control flow on a rank-independent value runs one branch under vmap."""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import algorithms
from algorithms.problems import quadratic
from bluefog.topology import exponential_graph
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
