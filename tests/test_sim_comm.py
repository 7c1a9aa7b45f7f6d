"""SimComm: every op against its dense NumPy oracle, for every topology family.

Oracles: ``W @ X`` (neighbor_allreduce), ``J @ X`` / ``1^T X`` (allreduce), ``X`` itself
(allgather, broadcast), ``kron(W_machine, 11^T / L) @ X`` (hierarchical), and for dynamic
topologies the dense matrix of the pattern in force at step ``t`` computed from its
definition. One jit compile per (topology, dtype) serves all ops and all leaves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bluefog.topology import (
    DynamicTopology,
    Topology,
    erdos_renyi_graph,
    exponential_graph,
    from_matrix,
    from_networkx,
    fully_connected_graph,
    grid_2d_graph,
    hypercube_graph,
    one_peer_exponential_graph,
    random_matching,
    random_regular_graph,
    ring_graph,
    star_graph,
    symmetric_exponential_graph,
    torus_2d_graph,
)
from bluefog_sim import SimComm, spmd


def _random_row_stochastic(n, seed):
    rng = np.random.default_rng(seed)
    A = rng.random((n, n)) < 0.4
    A[np.arange(n), (np.arange(n) + 1) % n] = True
    W = np.where(A, rng.uniform(0.2, 1.0, (n, n)), 0.0)
    return W / W.sum(axis=1, keepdims=True)


def _families():
    import networkx as nx

    return [
        exponential_graph(1), exponential_graph(5), exponential_graph(8),
        exponential_graph(12, base=3), symmetric_exponential_graph(6),
        symmetric_exponential_graph(16), ring_graph(2), ring_graph(7),
        ring_graph(5, directed=True), star_graph(6, center=2), grid_2d_graph(2, 3),
        torus_2d_graph(3, 3), hypercube_graph(3), fully_connected_graph(5),
        random_regular_graph(10, 3, seed=0), erdos_renyi_graph(9, 0.7, seed=1),
        from_matrix(_random_row_stochastic(7, 0), name="random_row_stochastic(7)"),
        from_networkx(nx.lollipop_graph(4, 3), weights="uniform"),
        from_matrix(_random_row_stochastic(6, 1).T, require="column", name="column_stochastic(6)"),
    ]


FAMILIES = _families()


def _pytree(n, dtype, seed):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.standard_normal((n, 3)).astype(dtype),
        "b": (rng.standard_normal((n, 2, 2)).astype(dtype), rng.standard_normal((n,)).astype(dtype)),
    }


def _all_ops(topo):
    n = topo.size

    def f(comm, x):
        assert comm.barrier() is None
        return {
            "nar": comm.neighbor_allreduce(x, topo),
            "nag": comm.neighbor_allgather(x, topo),
            "avg": comm.allreduce(x),
            "sum": comm.allreduce(x, average=False),
            "gather": comm.allgather(x),
            "bcast": comm.broadcast(x, root=n - 1),
            "rank": comm.rank(),
        }

    return spmd(f, n)


def _flat(leaf):
    leaf = np.asarray(leaf, dtype=np.float64)
    return leaf.reshape(leaf.shape[0], -1)


def _check_all_ops(topo, X, out, atol, dtype):
    n = topo.size
    W = topo.weights
    leaves_in = jax.tree_util.tree_leaves(X)
    for name in ("nar", "avg", "sum", "bcast"):
        assert jax.tree_util.tree_structure(out[name]) == jax.tree_util.tree_structure(X)
    np.testing.assert_array_equal(np.asarray(out["rank"]), np.arange(n))
    for k, x in enumerate(leaves_in):
        xf = _flat(x)
        got = {name: jax.tree_util.tree_leaves(out[name])[k] for name in ("nar", "avg", "sum", "bcast", "gather")}
        for name, g in got.items():
            assert g.dtype == dtype, (name, g.dtype)
        np.testing.assert_allclose(_flat(got["nar"]), W @ xf, rtol=0, atol=atol)
        np.testing.assert_allclose(_flat(got["avg"]), np.tile(xf.mean(0), (n, 1)), rtol=0, atol=atol)
        np.testing.assert_allclose(_flat(got["sum"]), np.tile(xf.sum(0), (n, 1)), rtol=0, atol=atol * n)
        np.testing.assert_array_equal(_flat(got["bcast"]), np.tile(xf[n - 1], (n, 1)))
        gathered = np.asarray(got["gather"])
        assert gathered.shape == (n, n) + x.shape[1:]
        for i in range(n):
            np.testing.assert_array_equal(gathered[i], x)
        # neighbor_allgather: slots are (value, source, weight) of real in-neighbors or padding
        nag = out["nag"]
        vals = np.asarray(jax.tree_util.tree_leaves(nag.values)[k], dtype=np.float64)
        srcs, ws = np.asarray(nag.sources), np.asarray(nag.weights, dtype=np.float64)
        assert nag.weights.dtype == dtype
        R = srcs.shape[1]
        assert R == max(1, topo.schedule.num_rounds)
        for i in range(n):
            real = {int(s) for s, w in zip(srcs[i], ws[i]) if w != 0}
            assert real == {j for j in range(n) if j != i and W[i, j] > 0}
            recon = W[i, i] * xf[i]
            for r in range(R):
                if ws[i, r] != 0:
                    assert ws[i, r] == pytest.approx(W[i, srcs[i, r]], abs=atol)
                    np.testing.assert_array_equal(vals[i, r].reshape(-1), xf[srcs[i, r]])
                recon = recon + ws[i, r] * vals[i, r].reshape(-1)
            np.testing.assert_allclose(recon, (W @ xf)[i], rtol=0, atol=atol)


@pytest.mark.parametrize("topo", FAMILIES, ids=lambda t: t.name)
def test_all_ops_float32(topo):
    X = _pytree(topo.size, np.float32, seed=topo.size)
    out = _all_ops(topo)(X)
    _check_all_ops(topo, X, out, atol=2e-6, dtype=jnp.float32)


@pytest.mark.parametrize("topo", [FAMILIES[0], FAMILIES[3], FAMILIES[9], FAMILIES[14], FAMILIES[16]],
                         ids=lambda t: t.name)
def test_all_ops_float64_preserved_and_exact(topo):
    with jax.enable_x64(True):
        X = _pytree(topo.size, np.float64, seed=1)
        out = _all_ops(topo)(X)
        _check_all_ops(topo, X, out, atol=1e-13, dtype=jnp.float64)


def test_float32_stays_float32_under_x64():
    topo = exponential_graph(6)
    with jax.enable_x64(True):
        X = _pytree(6, np.float32, seed=3)
        out = _all_ops(topo)(X)
        _check_all_ops(topo, X, out, atol=2e-6, dtype=jnp.float32)


def test_bfloat16_dtype_preserved():
    topo = ring_graph(4)
    x = jnp.asarray(np.arange(8.0).reshape(4, 2), dtype=jnp.bfloat16)
    y = spmd(lambda comm, v: comm.neighbor_allreduce(v, topo), 4)(x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float64), topo.weights @ np.arange(8.0).reshape(4, 2), rtol=1e-2)


# ---------------------------------------------------------------- dynamic topologies
def _dense_one_peer(n, t):
    tau = int(np.ceil(np.log2(n)))
    hop = 2 ** (t % tau)
    W = 0.5 * np.eye(n)
    for i in range(n):
        W[i, (i - hop) % n] += 0.5  # agent i receives from i - 2^k (Bluefog)
    return W


@pytest.mark.parametrize("n", [6, 8])
def test_one_peer_exponential_traced_step_counter(n):
    d = one_peer_exponential_graph(n)
    x = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)
    # the step counter is batched (one copy per agent, as in an algorithm state), traced in jit
    f = spmd(lambda comm, v, t: comm.neighbor_allreduce(v, d, t=t), n)
    for t in range(2 * d.period + 1):
        got = f(x, jnp.full((n,), t, jnp.int32))
        np.testing.assert_allclose(np.asarray(got), _dense_one_peer(n, t) @ x, rtol=0, atol=2e-6)
    # also unbatched (in_axes=None)
    g = spmd(lambda comm, v, t: comm.neighbor_allreduce(v, d, t=t), n, in_axes=(0, None))
    np.testing.assert_allclose(np.asarray(g(x, jnp.int32(4))), _dense_one_peer(n, 4) @ x, atol=2e-6)


def test_one_peer_exponential_period_product_is_exact_average():
    n = 8
    d = one_peer_exponential_graph(n)
    M = np.eye(n)
    for t in range(d.period):
        M = _dense_one_peer(n, t) @ M
    np.testing.assert_array_equal(M, np.full((n, n), 1 / n))  # exact in binary floating point
    with jax.enable_x64(True):
        x = np.random.default_rng(0).standard_normal((n, 4))

        def loop(comm, v):
            return jax.lax.fori_loop(0, d.period, lambda t, u: comm.neighbor_allreduce(u, d, t=t), v)

        got = np.asarray(spmd(loop, n)(x))
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, np.tile(x.mean(0), (n, 1)), rtol=0, atol=1e-15)


def test_random_matching_traced_matches_numpy_rule():
    n = 7
    d = random_matching(n, seed=5, pool_size=6)
    x = np.random.default_rng(1).standard_normal((n, 2)).astype(np.float32)
    f = spmd(lambda comm, v, t: comm.neighbor_allreduce(v, d, t=t), n)
    seen = set()
    for t in range(12):
        W = d.at(t).weights
        seen.add(d.index(t))
        # the oracle: a perfect matching on 6 of 7 agents, each pair averaging
        assert sorted(np.diag(W).tolist()) == [0.5] * 6 + [1.0]
        np.testing.assert_allclose(np.asarray(f(x, jnp.full((n,), t))), W @ x, atol=2e-6)
    assert len(seen) > 1


def test_dynamic_without_step_counter_is_refused():
    d = one_peer_exponential_graph(4)
    with pytest.raises(ValueError, match=r"is time-varying; pass the step counter, e.g. neighbor_allreduce\(x, topology, t=state.count\)"):
        spmd(lambda comm, v: comm.neighbor_allreduce(v, d), 4)(np.ones((4, 1), np.float32))


def _primitive_names(jaxpr, acc=None):
    acc = [] if acc is None else acc
    for eqn in jaxpr.eqns:
        acc.append((eqn.primitive.name, eqn))
        for p in eqn.params.values():
            subs = p if isinstance(p, (list, tuple)) else [p]
            for s in subs:
                inner = getattr(s, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    _primitive_names(inner, acc)
                elif hasattr(s, "eqns"):
                    _primitive_names(s, acc)
    return acc


def _switch_branch_counts(fn, *args):
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return [len(e.params["branches"]) for name, e in _primitive_names(jaxpr) if name == "cond"]


def test_dynamic_topology_executes_one_branch_under_vmap():
    """A batched step counter must not turn lax.switch into 'run every branch and select':
    on a static-peer backend (the switch is what MPI runs; the simulator's default runs
    patterns as data, tests/test_sim_patterns.py) the vmapped program keeps one `cond` with
    `period` branches (whose index is unbatched)."""
    n = 8
    d = one_peer_exponential_graph(n)
    x = jnp.ones((n, 2), jnp.float32)
    t = jnp.zeros((n,), jnp.int32)

    class StaticPeers(SimComm):
        _traced_patterns = False

    comm = StaticPeers(n)
    fn = jax.vmap(lambda v, s: comm.neighbor_allreduce(v, d, t=s), axis_name=comm.axis_name)
    assert _switch_branch_counts(fn, x, t) == [d.period]

    class NoUniform(StaticPeers):  # negative control: a backend that forgets to unbatch t
        def _uniform(self, value):
            return value

    comm = NoUniform(n)
    bad = jax.vmap(lambda v, s: comm.neighbor_allreduce(v, d, t=s), axis_name=comm.axis_name)
    assert _switch_branch_counts(bad, x, t) == []  # vmap turned the switch into a select


# ---------------------------------------------------------------- hierarchical
@pytest.mark.parametrize("machine,L", [(ring_graph(3), 2), (exponential_graph(4), 3),
                                        (fully_connected_graph(1), 4), (ring_graph(5), 1)],
                         ids=lambda v: getattr(v, "name", str(v)))
def test_hierarchical_neighbor_allreduce(machine, L):
    n = machine.size * L
    x = np.random.default_rng(L).standard_normal((n, 3)).astype(np.float32)
    f = spmd(lambda comm, v: comm.hierarchical_neighbor_allreduce(v, machine), n, local_size=L)
    oracle = np.kron(machine.weights, np.full((L, L), 1.0 / L))
    np.testing.assert_allclose(np.asarray(f(x)), oracle @ x, atol=2e-6)


def test_hierarchical_dynamic_machine_topology():
    machine = one_peer_exponential_graph(4)
    L, n = 2, 8
    x = np.random.default_rng(0).standard_normal((n, 2)).astype(np.float32)
    f = spmd(lambda comm, v, t: comm.hierarchical_neighbor_allreduce(v, machine, t=t), n, local_size=L)
    for t in range(3):
        oracle = np.kron(_dense_one_peer(4, t), np.full((L, L), 1.0 / L))
        np.testing.assert_allclose(np.asarray(f(x, jnp.full((n,), t))), oracle @ x, atol=2e-6)


# ---------------------------------------------------------------- bad inputs
def _trace(fn, n, *args, **kw):
    return spmd(fn, n, **kw)(*args)


@pytest.mark.parametrize("fn,exc,match", [
    (lambda c, v: c.neighbor_allreduce(v, ring_graph(5)), ValueError,
     r"neighbor_allreduce: topology.size must equal the number of agents \(4\); got 5"),
    (lambda c, v: c.neighbor_allreduce(v, np.full((4, 4), 0.25)), TypeError,
     r"neighbor_allreduce: topology must be a bluefog.topology.Topology or DynamicTopology; got ndarray"),
    (lambda c, v: c.neighbor_allgather(v, ring_graph(3)), ValueError, r"neighbor_allgather: topology.size must equal"),
    (lambda c, v: c.neighbor_allreduce(v.astype(jnp.int32), ring_graph(4)), TypeError,
     r"every leaf of x must be a floating-point array .* got dtype int32. Cast with x.astype"),
    (lambda c, v: c.allreduce({}), ValueError, r"allreduce: x must contain at least one array; got an empty pytree"),
    (lambda c, v: c.allreduce(v, average=1), TypeError, r"allreduce: average must be a bool; got 1"),
    (lambda c, v: c.broadcast(v, root=4), ValueError, r"broadcast: root must be in \[0, 4\); got 4"),
    (lambda c, v: c.broadcast(v, root=c.rank()), TypeError, r"broadcast: root must be a static int"),
    (lambda c, v: c.hierarchical_neighbor_allreduce(v, ring_graph(4)), ValueError,
     r"machine_topology.size must be size / local_size = 4 / 2 = 2; got 4"),
    (lambda c, v: c.hierarchical_neighbor_allreduce(v, "ring"), TypeError,
     r"machine_topology must be a Topology or DynamicTopology over machines; got str"),
])
def test_op_errors(fn, exc, match):
    with pytest.raises(exc, match=match):
        _trace(fn, 4, np.ones((4, 2), np.float32), local_size=2)


def test_simcomm_constructor_errors():
    with pytest.raises(ValueError, match=r"size must be an integer >= 1; got 0"):
        SimComm(0)
    with pytest.raises(ValueError, match=r"local_size must divide size; got size=6, local_size=4"):
        SimComm(6, local_size=4)
    with pytest.raises(TypeError, match=r"axis_name must be a non-empty str; got ''"):
        SimComm(4, axis_name="")
    assert repr(SimComm(4, local_size=2)) == "SimComm(size=4, axis_name='agents', local_size=2)"
