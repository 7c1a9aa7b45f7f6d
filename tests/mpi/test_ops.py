"""Every MpiComm op against the dense NumPy oracle, written for any world size.

Run under mpiexec (see conftest.py). Every rank builds the same stacked data ``X`` (n rows),
holds row ``rank`` and checks its result against row ``rank`` of the dense computation
(``W @ X``, ``X.mean(0)``, ...).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from bluefog.topology import (Topology, exponential_graph, one_peer_exponential_graph,
                              random_matching, ring_graph, star_graph)


def _random_row_stochastic(n, seed=7):
    """A non-circulant directed graph with uneven degrees (exercises Konig rounds + padding)."""
    rng = np.random.default_rng(seed)
    A = (rng.random((n, n)) < 0.5) | np.eye(n, dtype=bool)
    A[np.arange(n), (np.arange(n) + 1) % n] = True  # strongly connected via a ring
    W = A * rng.uniform(0.5, 1.5, (n, n))
    return Topology(W / W.sum(1, keepdims=True), name="random_directed", require="row")


def topologies(n):
    return [ring_graph(n), exponential_graph(n), star_graph(n), _random_row_stochastic(n),
            one_peer_exponential_graph(n), random_matching(n, seed=3)]


def stacked(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(size=(n, 3)).astype(np.float32),
            "b": rng.normal(size=(n, 2, 2)).astype(np.float32)}


def row(tree, i):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a[i]), tree)


def steps_to_check(topology):
    if len(topology.patterns) == 1:
        return [None]
    return list(range(4))


@pytest.mark.parametrize("topo_index", range(6))
def test_neighbor_allreduce_matches_dense_oracle(comm, rank, size, topo_index):
    topology = topologies(size)[topo_index]
    X = stacked(size)
    mix = jax.jit(lambda x, t: comm.neighbor_allreduce(x, topology, t))
    for t in steps_to_check(topology):
        W = (topology.patterns[0] if t is None else topology.at(t)).weights
        # traced step counter (lax.switch), and the static one where the topology varies
        outs = [mix(row(X, rank), t if t is None else jnp.asarray(t, jnp.int32))]
        if t is not None:
            outs.append(comm.neighbor_allreduce(row(X, rank), topology, t))  # eager, static t
        for out in outs:
            for k in X:
                np.testing.assert_allclose(out[k], np.tensordot(W, X[k], axes=1)[rank],
                                           rtol=1e-5, atol=1e-6, err_msg=f"{topology.name} t={t} {k}")


def test_neighbor_allreduce_in_a_jitted_loop(comm, rank, size):
    """100 mixing steps with a time-varying topology inside one fori_loop = prod of W(t)."""
    topology = one_peer_exponential_graph(size)
    X = stacked(size, seed=1)["a"].astype(np.float64)
    body = lambda t, x: comm.neighbor_allreduce(x, topology, t)  # noqa: E731
    out = jax.jit(lambda x: lax.fori_loop(0, 100, body, x))(jnp.asarray(X[rank], jnp.float32))
    expected = X
    for t in range(100):
        expected = topology.at(t).weights @ expected
    np.testing.assert_allclose(out, expected[rank], rtol=1e-4, atol=1e-5)


def test_pytree_with_two_dtypes_is_packed_per_dtype(comm, rank, size):
    topology = ring_graph(size)
    rng = np.random.default_rng(3)
    X16 = rng.normal(size=(size, 4)).astype(np.float16)
    X32 = rng.normal(size=(size, 5)).astype(np.float32)
    out = jax.jit(lambda x: comm.neighbor_allreduce(x, topology))((jnp.asarray(X16[rank]),
                                                                  jnp.asarray(X32[rank])))
    assert out[0].dtype == jnp.float16 and out[1].dtype == jnp.float32
    W = topology.weights
    np.testing.assert_allclose(out[0].astype(np.float32), (W @ X16.astype(np.float64))[rank],
                               rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(out[1], (W @ X32.astype(np.float64))[rank], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("topo_index", [2, 3, 4])
def test_neighbor_allgather(comm, rank, size, topo_index):
    topology = topologies(size)[topo_index]
    X = stacked(size)["a"]
    gather = jax.jit(lambda x, t: comm.neighbor_allgather(x, topology, t))
    for t in steps_to_check(topology):
        W = (topology.patterns[0] if t is None else topology.at(t)).weights
        nv = gather(jnp.asarray(X[rank]), t if t is None else jnp.asarray(t, jnp.int32))
        sources, weights = np.asarray(nv.sources), np.asarray(nv.weights)
        real = weights != 0
        expected_in = {j for j in range(size) if j != rank and W[rank, j] != 0}
        assert set(sources[real].tolist()) == expected_in
        for r in np.flatnonzero(real):
            np.testing.assert_array_equal(nv.values[r], X[sources[r]])
            np.testing.assert_allclose(weights[r], W[rank, sources[r]], rtol=1e-6)
        combined = W[rank, rank] * X[rank] + np.tensordot(weights, np.asarray(nv.values), axes=1)
        np.testing.assert_allclose(combined, (W @ X)[rank], rtol=1e-5, atol=1e-6)


def test_allreduce_allgather_broadcast_barrier(comm, rank, size):
    X = stacked(size)
    mean = jax.jit(lambda x: comm.allreduce(x))(row(X, rank))
    total = comm.allreduce(row(X, rank), average=False)  # eager
    gathered = jax.jit(comm.allgather)(row(X, rank))
    for k in X:
        np.testing.assert_allclose(mean[k], X[k].astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(total[k], X[k].astype(np.float64).sum(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(gathered[k], X[k])
    for root in range(size):
        value = {"f": jnp.full((3,), 10.0 * rank + 1), "i": jnp.arange(2, dtype=jnp.int32) + rank}
        got = jax.jit(lambda v: comm.broadcast(v, root))(value)
        np.testing.assert_array_equal(got["f"], np.full((3,), 10.0 * root + 1))
        np.testing.assert_array_equal(got["i"], np.arange(2) + root)
    comm.barrier()
    jax.jit(lambda x: (comm.barrier(), x)[1])(jnp.zeros(1))


def test_hierarchical_neighbor_allreduce(rank, size):
    from bluefog_dist import MpiComm

    L = 2 if size % 2 == 0 else 1
    hcomm = MpiComm(local_size=L)
    assert hcomm.local_size == L
    machines = size // L
    machine_topology = ring_graph(machines)
    X = stacked(size)["a"].astype(np.float64)
    out = jax.jit(lambda x: hcomm.hierarchical_neighbor_allreduce(x, machine_topology))(
        jnp.asarray(X[rank], jnp.float32))
    means = X.reshape(machines, L, -1).mean(1)           # machine averages
    expected = (machine_topology.weights @ means)[rank // L]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_default_local_size_is_the_shared_memory_split(comm, size):
    from mpi4py import MPI

    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        assert comm.local_size in (node.Get_size(), 1) and size % comm.local_size == 0
    finally:
        node.Free()


def test_local_size_errors_are_raised_on_every_rank(size, monkeypatch):
    from bluefog_dist import MpiComm

    with pytest.raises(ValueError, match=f"positive divisor of the world size {size}; got {size + 1}"):
        MpiComm(local_size=size + 1)
    monkeypatch.setenv("BLUEFOG_LOCAL_SIZE", "two")
    with pytest.raises(ValueError, match="BLUEFOG_LOCAL_SIZE must be a positive integer"):
        MpiComm()


def _dense_from_dynamic(n, spec):
    W = np.zeros((n, n))
    for i in range(n):
        s, src, dst = spec(i)
        W[i, i] = s
        for j, a in src.items():
            b = spec(j)[2]
            W[i, j] += a * (1.0 if b is None else b[i])
    return W


@pytest.mark.parametrize("infer_dst", [False, True])
def test_dynamic_form_matches_dense_oracle(comm, rank, size, infer_dst):
    def spec(i):  # receive from the left neighbor with 0.3; sender scales by 2 (or 1)
        src = {} if size == 1 else {(i - 1) % size: 0.3}
        dst = None if infer_dst else ({} if size == 1 else {(i + 1) % size: 2.0})
        return 0.4, src, dst

    X = stacked(size)["a"]
    s, src, dst = spec(rank)
    out = jax.jit(lambda x: comm.neighbor_allreduce(
        x, self_weight=s, src_weights=src, dst_weights=dst))(jnp.asarray(X[rank]))
    W = _dense_from_dynamic(size, spec)
    np.testing.assert_allclose(out, (W @ X)[rank], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["plain", "callable"])
def test_dynamic_form_callables_match_dense_oracle(comm, rank, size, form):
    """Bluefog's averaging test: in-neighbors rank - 2^k with 1/(d+1), dst_weights a list; the
    callable form (rank -> value, as the simulator needs) is evaluated at this rank."""
    hops = [2 ** k for k in range(int(np.ceil(np.log2(size))))] if size > 1 else []
    w = 1.0 / (len(hops) + 1)

    def spec(i):
        return w, {(i - h) % size: w for h in hops}, [(i + h) % size for h in hops]

    if form == "plain":
        args = dict(zip(("self_weight", "src_weights", "dst_weights"), spec(rank)))
    else:
        args = dict(self_weight=lambda r: spec(r)[0], src_weights=lambda r: spec(r)[1],
                    dst_weights=lambda r: spec(r)[2])
    X = stacked(size, seed=4)["b"]
    out = jax.jit(lambda x: comm.neighbor_allreduce(x, **args))(jnp.asarray(X[rank]))
    W = _dense_from_dynamic(size, lambda i: (spec(i)[0], spec(i)[1], None))
    np.testing.assert_allclose(out, np.tensordot(W, X, axes=1)[rank], rtol=1e-5, atol=1e-6)


def test_uniform_averaging_meets_bluefogs_float32_tolerance(comm, rank, size):
    """Bluefog's 50-tensor check (tensor k of rank r filled with k + r): uniform weights are
    summed then divided once, so (d + 1) |out - W @ X| <= 1e-5 in float32 (1/3 at -n 3, 4)."""
    topology = exponential_graph(size)
    X = np.arange(50.0)[None, :, None] + np.arange(size)[:, None, None] + np.zeros((1, 1, 23))
    out = jax.jit(lambda x: comm.neighbor_allreduce(x, topology))(jnp.asarray(X[rank], jnp.float32))
    W = topology.weights
    error = np.abs(np.asarray(out, np.float64) - np.tensordot(W, X, axes=1)[rank]).max()
    assert error * np.count_nonzero(W[rank]) <= 1e-5


def test_dynamic_form_disagreement_raises_on_every_rank(comm, rank, size):
    X = jnp.asarray(stacked(size)["a"][rank])
    if size >= 2:
        # rank 0 claims to receive from rank 1, but rank 1 sends to nobody.
        src = {1: 0.5} if rank == 0 else {}
        with pytest.raises(ValueError, match=r"senders and receivers disagree: rank 0 lists rank 1 "
                                             r"in src_weights but rank 1's dst_weights \[\]"):
            comm.neighbor_allreduce(X, self_weight=0.5, src_weights=src, dst_weights={})
    bad = {rank: 0.5} if rank == size - 1 else {}
    with pytest.raises(ValueError, match=rf"rank {size - 1}: neighbor_allreduce: src_weights keys "
                                         rf"must be other ranks in \[0, {size}\) \(not this rank"):
        comm.neighbor_allreduce(X, self_weight=0.5, src_weights=bad)


def test_argument_errors(comm, size):
    x = jnp.zeros(3)
    with pytest.raises(ValueError, match=f"topology.size must equal the number of agents \\({size}\\)"):
        comm.neighbor_allreduce(x, ring_graph(size + 1))
    with pytest.raises(TypeError, match="every leaf of x must be a floating-point array"):
        comm.neighbor_allreduce(jnp.zeros(3, jnp.int32), ring_graph(size))
    with pytest.raises(TypeError, match="pass a topology"):
        comm.neighbor_allreduce(x)
    with pytest.raises(TypeError, match="the dynamic form .* replaces the topology"):
        comm.neighbor_allreduce(x, ring_graph(size), self_weight=1.0, src_weights={})
    with pytest.raises(ValueError, match=f"root must be in \\[0, {size}\\); got {size}"):
        comm.broadcast(x, size)
    dynamic = random_matching(size, seed=1)
    if len(dynamic.patterns) > 1:
        with pytest.raises(ValueError, match="is time-varying; pass the step counter"):
            comm.neighbor_allreduce(x, dynamic)


def test_timeline_records_every_message(rank, size, tmp_path_factory):
    """jax.profiler timeline: every sendrecv of a jitted loop of neighbor_allreduce is one
    event named by its op, with the message size; eager ops are recorded too."""
    from mpi4py import MPI

    from bluefog_dist import MpiComm

    directory = MPI.COMM_WORLD.bcast(str(tmp_path_factory.mktemp("tl")) if rank == 0 else None)
    tl_comm = MpiComm(timeline=directory)
    topology = ring_graph(size)
    d = 5
    loop = jax.jit(lambda x: lax.fori_loop(0, 3, lambda _, v: tl_comm.neighbor_allreduce(v, topology), x))
    loop(jnp.ones(d, jnp.float32)).block_until_ready()
    tl_comm.allreduce(jnp.ones(2, jnp.float32)).block_until_ready()  # eager
    path = tl_comm.timeline.close()
    assert path == f"{directory}/rank{rank}.json"
    doc = json.load(open(path))
    assert doc["otherData"]["rank"] == rank and doc["otherData"]["size"] == size
    events = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    sends = [e for e in events if e["name"] == "neighbor_allreduce/sendrecv"]
    rounds = sum(1 for r in topology.schedule.rounds if r.sources[rank] != rank)
    assert len(sends) == 3 * rounds
    assert all(e["args"]["bytes"] == 4 * d and e["pid"] == rank and e["dur"] >= 0 for e in sends)
    starts = [e["ts"] for e in sends]
    assert starts == sorted(starts)
    reduces = [e for e in events if e["cat"] == "mpi" and e["name"].endswith("/allreduce")
               and e["args"]["bytes"] == 8]
    assert len(reduces) == (1 if size > 1 else 0)


def test_half_precision_leaves_travel_bitcast(comm, rank, size):
    """mpi4jax has no float16/bfloat16 MPI type: copies go bit-cast (exact), sums via f32."""
    X = np.random.default_rng(5).normal(size=(size, 4))
    x = {"h": jnp.asarray(X[rank], jnp.bfloat16), "f": jnp.asarray(X[rank], jnp.float32)}
    gathered = jax.jit(comm.allgather)(x)
    np.testing.assert_array_equal(np.asarray(gathered["h"], np.float32),
                                  np.asarray(jnp.asarray(X, jnp.bfloat16), np.float32))
    mean = comm.allreduce(x)
    assert mean["h"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(mean["h"], np.float32), X.mean(0), rtol=2e-2, atol=2e-2)
