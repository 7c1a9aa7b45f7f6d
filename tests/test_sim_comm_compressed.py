"""Compressed neighbor_allreduce in the simulator against the dense oracle W @ X_hat.

X_hat's rows are rebuilt independently, agent by agent, with ``roundtrip`` and the agent's
key, so the test checks that every agent reconstructs exactly its neighbors' payloads.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bluefog_sim
from bluefog import compression as C
from bluefog import topology as T

N, D = 8, 300


@pytest.mark.parametrize("topology", [T.exponential_graph(N), T.ring_graph(N),
                                      T.one_peer_exponential_graph(N)], ids=lambda t: t.name)
@pytest.mark.parametrize("comp", [C.top_k(0.05), C.random_k(0.1), C.blockwise(4, 32),
                                  C.cast("bfloat16"), C.chain(C.top_k(0.1), C.qsgd(8))],
                         ids=lambda c: c.name)
def test_compressed_mixing_equals_dense_oracle(topology, comp):
    X = np.random.default_rng(0).normal(size=(N, D)).astype(np.float32)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(1), i))(jnp.arange(N))
    t = 3
    mix = bluefog_sim.spmd(
        lambda comm, x, k: comm.neighbor_allreduce(x, topology, t, compressor=comp, key=k), N)
    out = np.asarray(mix(jnp.asarray(X), keys), np.float64)
    X_hat = np.stack([np.asarray(C.roundtrip(comp, jnp.asarray(X[i]), keys[i]), np.float64)
                      for i in range(N)])
    np.testing.assert_allclose(out, topology.at(t).weights @ X_hat, rtol=1e-5, atol=1e-5)


def test_pytree_leaves_are_compressed_one_by_one():
    topology = T.ring_graph(N)
    tree = {"w": jnp.ones((N, 4, 5)) * jnp.arange(N)[:, None, None], "b": jnp.ones((N, 7))}
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(1), i))(jnp.arange(N))
    comp = C.top_k(0.5)
    out = bluefog_sim.spmd(lambda comm, x, k: comm.neighbor_allreduce(
        x, topology, compressor=comp, key=k), N)(tree, keys)
    assert out["w"].shape == (N, 4, 5) and out["b"].shape == (N, 7)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"compressor": "top_k", "key": 0}, TypeError,
     r"neighbor_allreduce: compressor must be a bluefog.compression.Compressor"),
    ({"compressor": C.top_k(0.1)}, TypeError,
     r"neighbor_allreduce: a compressor needs this agent's PRNG key"),
])
def test_bad_compression_arguments(kwargs, exc, match):
    topology = T.ring_graph(N)
    with pytest.raises(exc, match=match):
        bluefog_sim.spmd(lambda comm, x: comm.neighbor_allreduce(x, topology, **kwargs), N)(
            jnp.ones((N, 3)))


@pytest.mark.parametrize("comp", [None, C.top_k(0.3), C.blockwise(8, 8)],
                         ids=lambda c: "plain" if c is None else c.name)
def test_a_pytree_mixing_every_float_dtype_equals_the_dense_oracle(comp):
    """float32, float64, bfloat16 and float16 leaves in one exchange keep their dtypes and
    equal W @ X (plain) or W @ X_hat (compressed; X_hat rebuilt here agent by agent)."""
    topology = T.exponential_graph(N)
    dtypes = {"f32": ("float32", (5, 4)), "f64": ("float64", (7,)),
              "bf16": ("bfloat16", (3, 6)), "f16": ("float16", (9,))}
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        tree = {k: jnp.asarray(rng.normal(size=(N,) + s), d) for k, (d, s) in dtypes.items()}
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(1), i))(jnp.arange(N))
        kw = {} if comp is None else {"compressor": comp}
        out = bluefog_sim.spmd(lambda comm, x, k: comm.neighbor_allreduce(
            x, topology, **({} if comp is None else {"key": k}), **kw), N)(tree, keys)
        for name, (dtype, shape) in dtypes.items():
            rows = [jax.tree_util.tree_map(lambda a: a[i], tree) for i in range(N)]
            if comp is not None:
                rows = [C.roundtrip(comp, r, keys[i]) for i, r in enumerate(rows)]
            X = np.stack([np.asarray(r[name], np.float64).ravel() for r in rows])
            assert out[name].dtype == jnp.dtype(dtype) and out[name].shape == (N,) + shape
            tol = {"float64": 1e-12, "float32": 1e-5}.get(dtype, 1e-2)
            np.testing.assert_allclose(np.asarray(out[name], np.float64).reshape(N, -1),
                                       topology.weights @ X, rtol=tol, atol=tol)
