"""Compressed neighbor_allreduce under MPI: the payload crosses the wire, and the result is
the dense oracle W @ X_hat with X_hat's rows reconstructed from each rank's own payload.

Transport check: with the timeline on (``jax.profiler``, sizes read from the compiled HLO),
the ``sendrecv`` messages of the op carry exactly the bytes of the payload arrays
(``bluefog.compression.payload_bits`` in total per round).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bluefog import compression as C
from bluefog.topology import exponential_graph, ring_graph

D = 1000
COMPRESSORS = [C.top_k(0.01), C.blockwise(8, 128), C.chain(C.random_k(0.05), C.qsgd(8)),
               C.scaled_sign()]


def _x(rank_):
    return jnp.asarray(np.random.default_rng(rank_).normal(size=D), jnp.float32)


def _key(rank_):
    return jax.random.fold_in(jax.random.PRNGKey(5), rank_)


@pytest.mark.parametrize("comp", COMPRESSORS, ids=lambda c: c.name)
def test_compressed_neighbor_allreduce_equals_dense_oracle(comm, rank, size, comp):
    topology = exponential_graph(size)
    out = jax.jit(lambda x, k: comm.neighbor_allreduce(x, topology, compressor=comp, key=k))(
        _x(rank), _key(rank))
    X_hat = np.stack([np.asarray(C.roundtrip(comp, _x(j), _key(j)), np.float64)
                      for j in range(size)])
    np.testing.assert_allclose(np.asarray(out), (topology.weights @ X_hat)[rank], rtol=1e-5,
                               atol=1e-5)


def test_transport_carries_the_payload_bytes(rank, size, tmp_path_factory):
    from mpi4py import MPI

    from bluefog_dist import MpiComm

    comp = C.top_k(0.01)
    directory = MPI.COMM_WORLD.bcast(str(tmp_path_factory.mktemp("tl")) if rank == 0 else None)
    tl_comm = MpiComm(timeline=directory)
    topology = ring_graph(size)
    jax.jit(lambda x, k: tl_comm.neighbor_allreduce(x, topology, compressor=comp, key=k))(
        _x(rank), _key(rank)).block_until_ready()
    events = json.load(open(tl_comm.timeline.close()))["traceEvents"]
    sends = [e for e in events if e.get("ph") == "X" and e["name"].endswith("/sendrecv")]
    rounds = sum(1 for r in topology.schedule.rounds if r.sources[rank] != rank)
    assert sum(e["args"]["bytes"] for e in sends) == rounds * C.payload_bits(comp, D) // 8
    dense_bytes = rounds * 4 * D
    if rounds:
        assert sum(e["args"]["bytes"] for e in sends) * 10 < dense_bytes  # 10 values + 10 indices


#: one leaf of each floating dtype the wire packs (float16/bfloat16 travel bit-cast)
MIXED = {"f32": ("float32", (5, 4)), "f64": ("float64", (7,)), "bf16": ("bfloat16", (3, 6)),
         "f16": ("float16", (9,))}


def _mixed_tree(rank_):
    rng = np.random.default_rng(100 + rank_)
    return {name: jnp.asarray(rng.normal(size=shape), dtype)
            for name, (dtype, shape) in MIXED.items()}


@pytest.mark.parametrize("comp", [None, C.top_k(0.3), C.blockwise(8, 8)],
                         ids=lambda c: "plain" if c is None else c.name)
def test_a_pytree_mixing_every_float_dtype_equals_the_dense_oracle(comm, rank, size, comp):
    """float32, float64, bfloat16 and float16 leaves in ONE exchange (one buffer per dtype
    per round): each leaf keeps its dtype and equals W @ X (plain) or W @ X_hat
    (compressed, X_hat rebuilt here leaf by leaf with each rank's key)."""
    topology = exponential_graph(size)
    with jax.enable_x64(True):
        kw = {} if comp is None else {"compressor": comp}
        out = jax.jit(lambda x, k: comm.neighbor_allreduce(
            x, topology, **({} if comp is None else {"key": k}), **kw))(
                _mixed_tree(rank), _key(rank))
        trees = [_mixed_tree(j) for j in range(size)]
        if comp is not None:
            trees = [C.roundtrip(comp, t, _key(j)) for j, t in enumerate(trees)]
        for name, (dtype, shape) in MIXED.items():
            assert out[name].dtype == jnp.dtype(dtype) and out[name].shape == shape
            X = np.stack([np.asarray(t[name], np.float64).ravel() for t in trees])
            tol = {"float64": 1e-12, "float32": 1e-5}.get(dtype, 1e-2)
            np.testing.assert_allclose(np.asarray(out[name], np.float64).ravel(),
                                       (topology.weights @ X)[rank], rtol=tol, atol=tol)
