"""Bluefog's per-call ``neighbor_allreduce(x, self_weight, src_weights, dst_weights)`` in the
simulator, against the dense oracle built from the specs by their definition:
``W[i, i] = s_i``, ``W[i, j] = a^{(i)}_j * b^{(j)}_i`` (``b = 1`` where ``dst_weights`` is None).
The MPI side of the same op is tested in ``tests/mpi/test_ops.py`` with the same oracle.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bluefog_sim import spmd


def dense_from_specs(n, spec):
    """The oracle: ``spec(i) -> (s, {j: a}, {k: b} or list or None)``."""
    W = np.zeros((n, n))
    for i in range(n):
        s, src, _ = spec(i)
        W[i, i] = s
        for j, a in src.items():
            dst = spec(j)[2]
            b = 1.0 if dst is None or not isinstance(dst, dict) else dst[i]
            W[i, j] += a * b
    return W


def ring_scaled(n):  # receive from the left neighbor with 0.3; the sender scales by 2
    return lambda i: (0.4, {(i - 1) % n: 0.3} if n > 1 else {},
                      {(i + 1) % n: 2.0} if n > 1 else {})


def ring_inferred(n):  # same edges, dst_weights=None: the sender's weight is 1
    return lambda i: (0.4, {(i - 1) % n: 0.3} if n > 1 else {}, None)


def exponential_lists(n):  # Bluefog's avg test: in-neighbors i - 2^k, dst given as a list
    hops = [2 ** k for k in range(int(np.ceil(np.log2(n))))] if n > 1 else []
    w = 1.0 / (len(hops) + 1)
    return lambda i: (w, {(i - h) % n: w for h in hops}, [(i + h) % n for h in hops])


def uneven(n):  # agent-dependent self weights and fan-in, some agents silent
    def spec(i):
        src = {j: 0.1 * (j + 1) for j in range(n) if j != i and (i * j) % 3 == 1}
        dst = {k: 0.5 + k for k in range(n) if k != i and (k * i) % 3 == 1}
        return 1.0 - 0.05 * i, src, dst
    return spec


SPECS = [ring_scaled, ring_inferred, exponential_lists, uneven]


def run_dynamic(n, spec, X, plain_self=False):
    s = spec(0)[0] if plain_self else (lambda r: spec(r)[0])
    return spmd(lambda comm, x: comm.neighbor_allreduce(
        x, self_weight=s, src_weights=lambda r: spec(r)[1],
        dst_weights=lambda r: spec(r)[2]), n)(X)


@pytest.mark.parametrize("make", SPECS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n", [1, 4, 7])
def test_per_call_form_matches_dense_oracle(make, n):
    spec = make(n)
    X = np.random.default_rng(n).standard_normal((n, 3, 2))
    W = dense_from_specs(n, spec)
    got = np.asarray(run_dynamic(n, spec, X.astype(np.float32)), np.float64)
    expected = np.einsum("ij,jab->iab", W, X)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_plain_self_weight_is_the_same_on_every_agent():
    n = 5
    spec = ring_inferred(n)
    X = np.arange(2.0 * n, dtype=np.float32).reshape(n, 2)
    got = run_dynamic(n, spec, X, plain_self=True)
    np.testing.assert_allclose(np.asarray(got), dense_from_specs(n, spec) @ X, rtol=1e-6)


def test_per_call_form_in_a_jitted_loop_of_a_pytree():
    """100 steps inside one fori_loop with two leaves = the 100th power of the oracle."""
    n = 6
    spec = exponential_lists(n)
    W = dense_from_specs(n, spec)
    X = {"a": np.random.default_rng(0).standard_normal((n, 4)),
         "b": np.random.default_rng(1).standard_normal((n,))}

    def loop(comm, x):
        step = lambda _, v: comm.neighbor_allreduce(  # noqa: E731
            v, self_weight=lambda r: spec(r)[0], src_weights=lambda r: spec(r)[1],
            dst_weights=lambda r: spec(r)[2])
        return jax.lax.fori_loop(0, 100, step, x)

    got = spmd(loop, n)(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), X))
    P = np.linalg.matrix_power(W, 100)
    for k in X:
        np.testing.assert_allclose(np.asarray(got[k]), np.tensordot(P, X[k], axes=1), atol=1e-5)


def test_empty_plain_dicts_leave_every_agent_alone():
    X = np.arange(8.0, dtype=np.float32).reshape(4, 2)
    got = spmd(lambda c, x: c.neighbor_allreduce(x, self_weight=0.5, src_weights={}), 4)(X)
    np.testing.assert_array_equal(np.asarray(got), 0.5 * X)


def _call(n=4, **kw):
    return spmd(lambda c, x: c.neighbor_allreduce(x, **kw), n)(np.ones((n, 2), np.float32))


@pytest.mark.parametrize("kw,exc,match", [
    (dict(self_weight=0.5, src_weights={1: 0.5}), TypeError,
     r"neighbor_allreduce: in the simulator src_weights must be a callable rank -> weights .* "
     r"got \{1: 0.5\}. Pass e.g. src_weights=lambda r: \{\(r - 1\) % 4: 0.5\}"),
    (dict(self_weight=0.5, src_weights=lambda r: {}, dst_weights=[1]), TypeError,
     r"in the simulator dst_weights must be a callable .* dst_weights=lambda r: "
     r"\{\(r \+ 1\) % 4: 1.0\} \(or None\)"),
    (dict(self_weight=0.5, src_weights=lambda r: {(r + 1) % 4: 0.5}, dst_weights={}),
     ValueError, r"senders and receivers disagree: rank 0 lists rank 1 in src_weights but "
                 r"rank 1's dst_weights \[\] do not include 0"),
    (dict(self_weight=0.5, src_weights=lambda r: {r: 0.5} if r == 2 else {}), ValueError,
     r"^rank 2: neighbor_allreduce: src_weights keys must be other ranks in \[0, 4\) "
     r"\(not this rank 2; its weight is self_weight\); got 2\."),
    (dict(self_weight="half", src_weights={}), TypeError,
     r"rank 0: neighbor_allreduce: self_weight must be a finite real number .* got 'half'"),
    (dict(self_weight=float("nan"), src_weights={}), ValueError,
     r"self_weight must be a finite real number in \[-inf, inf\]; got nan"),
    (dict(self_weight=0.5, src_weights=lambda r: [(r + 1) % 4]), TypeError,
     r"src_weights must be a dict \{rank: weight\} \(or a callable rank -> dict\); got list"),
    (dict(self_weight=0.5, src_weights=lambda r: {"left": 0.5}), TypeError,
     r"src_weights keys must be int ranks; got 'left' of type str"),
    (dict(src_weights={}), ValueError,
     r"needs both self_weight and src_weights on every rank .* Example: self_weight=0.5, "
     r"src_weights=lambda r: \{\(r - 1\) % 4: 0.5\}"),
])
def test_per_call_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        _call(**kw)


def test_many_failing_agents_are_summarised():
    with pytest.raises(ValueError, match=r"rank 3: .*; \(and 4 more ranks\)"):
        _call(n=8, self_weight=0.5, src_weights=lambda r: {r: 0.5})


def test_topology_and_per_call_weights_are_exclusive():
    from bluefog.topology import ring_graph

    with pytest.raises(TypeError, match=r"the dynamic form .* replaces the topology for one call"):
        _call(topology=ring_graph(4), self_weight=1.0, src_weights={})
    with pytest.raises(TypeError, match=r"pass a topology, neighbor_allreduce\(x, topology, t\)"):
        _call()
