"""Time-varying topologies as data in the simulator (``bluefog.comm.patterns``).

Oracle: the dense matrix of the pattern in force, ``W(t) @ X``, with ``W(t)`` taken from
``topology.at(t).weights`` (the NumPy index rule), for every step ``t`` of a traced counter;
and the traced program's size, which must not depend on the number of patterns.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bluefog.topology import (DynamicTopology, Topology, exponential_graph,
                              one_peer_exponential_graph, random_matching, ring_graph,
                              star_graph)
from bluefog_sim import SimComm, spmd


def weighted_pool(n, k, seed):
    """Non-uniform row-stochastic patterns with different degrees (so different round
    counts): the weighted, non-sum-then-divide path."""
    rng = np.random.default_rng(seed)
    pats = []
    for _ in range(k):
        A = (rng.random((n, n)) < rng.uniform(0.1, 0.6)).astype(float) * rng.random((n, n))
        np.fill_diagonal(A, 1.0 + rng.random(n))
        pats.append(Topology(A / A.sum(1, keepdims=True), check_connected=False))
    return DynamicTopology(pats, period=None, seed=seed, name="weighted pool")


CASES = {
    "matching": lambda: random_matching(10, seed=3, pool_size=9),
    "one_peer": lambda: one_peer_exponential_graph(12),
    "weighted": lambda: weighted_pool(7, 5, seed=1),
    "mixed_rounds": lambda: DynamicTopology(
        [ring_graph(6), star_graph(6, center=1), exponential_graph(6)], period=3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_traced_step_equals_dense_oracle_every_step(case):
    topo = CASES[case]()
    n = topo.size
    X = np.random.default_rng(0).standard_normal((n, 3))
    with jax.enable_x64(True):
        mix = spmd(lambda c, x, t: c.neighbor_allreduce({"a": x, "b": 2 * x}, topo, t=t), n,
                   in_axes=(0, None))
        for t in range(14):
            out = mix(jnp.asarray(X), jnp.int32(t))
            want = topo.at(t).weights @ X
            np.testing.assert_allclose(np.asarray(out["a"]), want, rtol=0, atol=1e-14)
            np.testing.assert_allclose(np.asarray(out["b"]), 2 * want, rtol=0, atol=1e-14)


def test_batched_counter_inside_scan_matches_product_of_patterns():
    """The engine's shape: the counter is per-agent state, advanced in a scan."""
    topo = weighted_pool(8, 6, seed=4)
    X = np.random.default_rng(1).standard_normal((8, 2))

    def agent(comm, x):
        def body(carry, _):
            v, t = carry
            return (comm.neighbor_allreduce(v, topo, t=t), t + 1), None
        return jax.lax.scan(body, (x, jnp.int32(0)), None, length=11)[0][0]

    with jax.enable_x64(True):
        out = spmd(agent, 8)(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(out), topo.mean_weights(11) @ X, rtol=0, atol=1e-13)


def test_hierarchical_with_time_varying_machine_graph():
    L, m = 2, 4
    machines = one_peer_exponential_graph(m)
    X = np.random.default_rng(2).standard_normal((L * m, 3))
    J = np.kron(np.eye(m), np.full((L, L), 1.0 / L))
    with jax.enable_x64(True):
        f = spmd(lambda c, x, t: c.hierarchical_neighbor_allreduce(x, machines, t=t), L * m,
                 local_size=L, in_axes=(0, None))
        for t in range(4):
            lifted = np.kron(machines.at(t).weights, np.eye(L))
            np.testing.assert_allclose(np.asarray(f(jnp.asarray(X), jnp.int32(t))),
                                       lifted @ J @ X, rtol=0, atol=1e-14)


def _equations(topo):
    comm = SimComm(topo.size)
    fn = jax.vmap(lambda x, t: comm.neighbor_allreduce(x, topo, t=t), in_axes=(0, None),
                  axis_name="agents")
    jaxpr = jax.make_jaxpr(fn)(jnp.ones((topo.size, 4)), jnp.int32(0))
    return sum(1 for _ in jaxpr.jaxpr.eqns), str(jaxpr).count("cond[branches")


def test_traced_program_does_not_grow_with_the_number_of_patterns():
    small, large = (_equations(random_matching(16, seed=0, pool_size=k)) for k in (2, 64))
    assert small == large and small[1] == 0


def test_static_peer_backend_keeps_one_branch_per_pattern():
    """A backend without traced sources (MPI) still gets static peers: lax.switch."""
    class StaticPeers(SimComm):
        _traced_patterns = False

    topo = random_matching(8, seed=0, pool_size=5)
    comm = StaticPeers(8)
    fn = jax.vmap(lambda x, t: comm.neighbor_allreduce(x, topo, t=t), in_axes=(0, None),
                  axis_name="agents")
    jaxpr = str(jax.make_jaxpr(fn)(jnp.ones((8, 2)), jnp.int32(0)))
    assert jaxpr.count("cond[branches") == 1 and "all_gather" not in jaxpr
    X = np.random.default_rng(5).standard_normal((8, 2)).astype(np.float32)
    for t in range(6):
        np.testing.assert_allclose(np.asarray(jax.jit(fn)(jnp.asarray(X), jnp.int32(t))),
                                   topo.at(t).weights @ X, atol=2e-6)
