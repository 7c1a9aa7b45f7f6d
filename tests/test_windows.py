"""Window ops (bluefog.comm.window) against dense oracles, clock semantics, bad input.

Oracles: the dense products ``D @ X``, ``diag(a) X + (A * D) @ X`` computed in NumPy from the
weight matrices; for the clock, the hand-computed times at which a message must be visible.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bluefog.comm import Clock, ClockedComm
from bluefog.topology import erdos_renyi_graph, exponential_graph
from bluefog_sim import SimComm, spmd

N = 8


def _edge_weights(topo, seed):
    """A random matrix supported on the off-diagonal edges of ``topo``."""
    W = np.asarray(topo.weights)
    mask = (W != 0) & ~np.eye(topo.size, dtype=bool)
    return np.where(mask, np.random.default_rng(seed).uniform(0.1, 1.0, W.shape), 0.0)


@pytest.mark.parametrize("topo", [exponential_graph(N), erdos_renyi_graph(N, 0.4, seed=3)],
                         ids=["exponential", "erdos_renyi"])
def test_put_accumulate_get_update_match_dense_oracle(x64, topo):
    X = np.random.default_rng(0).normal(size=(N, 3, 2))
    D, A = _edge_weights(topo, 1), _edge_weights(topo, 2)
    a_self = np.random.default_rng(4).uniform(0.1, 1.0, N)

    def f(comm, x):
        wins = comm.win_create(None, x, "p", topo)
        wins = comm.win_create(wins, x, "a", topo, zero_init=True)
        wins = comm.win_create(wins, x, "g", topo)
        wins = comm.win_put(wins, x, "p", dst_weights=D)
        put, wins = comm.win_update(wins, "p", self_weight=a_self, neighbor_weights=A)
        wins = comm.win_accumulate(wins, x, "a", dst_weights=D, self_weight=0.5)
        wins = comm.win_accumulate(wins, x, "a", dst_weights=D, self_weight=2.0)
        acc, wins = comm.win_update_then_collect(wins, "a")
        wins = comm.win_get(wins, "g", src_weights=D)
        got, wins = comm.win_update(wins, "g")
        return put, acc, got

    put, acc, got = spmd(f, N)(jnp.asarray(X))
    W = np.asarray(topo.weights)
    Xf = X.reshape(N, -1)
    expect_put = a_self[:, None] * Xf + (A * D) @ Xf
    np.testing.assert_allclose(np.asarray(put).reshape(N, -1), expect_put, atol=1e-13)
    # two accumulates of D x, own value 2x (the last self_weight), then collect
    np.testing.assert_allclose(np.asarray(acc).reshape(N, -1), 2 * Xf + 2 * D @ Xf, atol=1e-13)
    expect_get = np.diag(W)[:, None] * Xf + (W * D) @ Xf  # default update = topology weights
    np.testing.assert_allclose(np.asarray(got).reshape(N, -1), expect_get, atol=1e-13)


def test_versions_count_deliveries_and_reset_on_read():
    topo = exponential_graph(N)

    def f(comm, x):
        wins = comm.win_create(None, x, "x", topo)
        v0 = comm.win_info(wins, "x").versions
        wins = comm.win_put(wins, x, "x")
        wins = comm.win_put(wins, x, "x")
        v2 = comm.win_info(wins, "x")
        _, wins = comm.win_update(wins, "x")
        return v0, v2, comm.win_info(wins, "x").versions

    v0, info, v_after = spmd(f, N)(jnp.arange(N, dtype=jnp.float32))
    indeg = int(np.log2(N))
    assert np.all(np.asarray(v0) == 0)
    assert np.all(np.asarray(info.versions) == 2)  # two puts, every slot a real edge
    assert np.all(np.asarray(info.stamps) == 1)  # sender's second send (0-based)
    src = np.asarray(info.sources)
    W = np.asarray(topo.weights)
    for i in range(N):  # the slots are exactly i's in-neighbours (nonzero off-diagonal W[i])
        assert sorted(int(s) for s in src[i]) == sorted(np.flatnonzero(W[i] * (np.arange(N) != i)))
    assert src.shape == (N, indeg)
    assert np.all(np.asarray(v_after) == 0)


def test_messages_become_visible_only_after_their_latency():
    """Ring of 4, latency 1.0: sent at t=0, a put is invisible at t=0.5, visible at t=1.0;
    two accumulates in flight are both added, once."""
    topo = exponential_graph(4)  # in-neighbours of i: i-1, i-2 (mod 4)

    E = (np.asarray(topo.weights) != 0) & ~np.eye(4, dtype=bool)

    def f(comm, x):
        at = lambda t: ClockedComm(comm, Clock(jnp.asarray(t, jnp.float32), True,  # noqa: E731
                                               np.full((4, 4), 1.0), 2))
        wins = at(0.0).win_create(None, x, "p", topo, zero_init=True)
        wins = at(0.0).win_put(wins, x, "p")
        early = at(0.5).win_info(wins, "p")
        seen_early, _ = at(0.5).win_update(wins, "p", 0.0, E * 1.0)
        late, _ = at(1.0).win_update(wins, "p", 0.0, E * 1.0)
        wins = at(0.0).win_create(wins, x, "a", topo, zero_init=True)
        wins = at(0.0).win_accumulate(wins, x, "a")
        wins = at(0.25).win_accumulate(wins, x, "a")
        mid, _ = at(1.1).win_update_then_collect(wins, "a")
        both, wins = at(1.3).win_update_then_collect(wins, "a")
        return early.in_flight, seen_early, late, mid, both, wins["a"].overflow

    x = jnp.arange(4, dtype=jnp.float32) + 1.0
    flying, seen_early, late, mid, both, overflow = spmd(f, 4)(x)
    nbr_sum = np.array([(x[(i - 1) % 4] + x[(i - 2) % 4]) for i in range(4)])
    assert np.all(np.asarray(flying) == 1)
    np.testing.assert_allclose(seen_early, 0.0)
    np.testing.assert_allclose(late, nbr_sum)
    np.testing.assert_allclose(mid, np.asarray(x) + nbr_sum)  # only the t=0 accumulate
    np.testing.assert_allclose(both, np.asarray(x) + 2 * nbr_sum)
    assert np.all(np.asarray(overflow) == 0)


def test_a_full_queue_is_counted_not_lost_silently():
    topo = exponential_graph(4)

    def f(comm, x):
        c = ClockedComm(comm, Clock(jnp.zeros((), jnp.float32), True, np.full((4, 4), 1.0), 1))
        wins = c.win_create(None, x, "a", topo)
        wins = c.win_accumulate(wins, x, "a")
        wins = c.win_accumulate(wins, x, "a")  # the queue holds 1 per slot
        return wins["a"].overflow

    assert np.all(np.asarray(spmd(f, 4)(jnp.ones(4))) == 2)  # two slots each


# ---- bad input -------------------------------------------------------------------------

def _trace(fn, n=4):
    return jax.eval_shape(jax.vmap(lambda x: fn(SimComm(n), x), axis_name="agents"),
                          jnp.zeros((n, 3)))


def test_unknown_window_name_is_refused_with_the_existing_names():
    topo = exponential_graph(4)

    def f(comm, x):
        wins = comm.win_create(None, x, "x", topo)
        return comm.win_update(wins, "y")

    with pytest.raises(ValueError, match=r"win_update: no window named 'y'.*\['x'\].*win_create"):
        _trace(f)


def test_put_before_create_is_refused():
    with pytest.raises(ValueError, match=r"win_put: no window named 'x'; the windows that exist "
                                         r"are \[\]\. Create it first"):
        _trace(lambda comm, x: comm.win_put({}, x, "x"))
    with pytest.raises(TypeError, match="win_put: windows must be the dict"):
        _trace(lambda comm, x: comm.win_put(None, x, "x"))


def test_shape_and_dtype_mismatch_is_refused():
    topo = exponential_graph(4)

    def shape(comm, x):
        return comm.win_put(comm.win_create(None, x, "x", topo), x[:2], "x")

    def dtype(comm, x):
        return comm.win_accumulate(comm.win_create(None, x, "x", topo), x.astype(jnp.float16), "x")

    with pytest.raises(ValueError, match=r"win_put: x must match window 'x'.*shape \(3,\).*got shape \(2,\)"):
        _trace(shape)
    with pytest.raises(ValueError, match=r"win_accumulate: x must match.*float32.*float16"):
        _trace(dtype)


def test_bad_weights_and_duplicate_windows_are_refused():
    topo = exponential_graph(4)
    not_an_edge = np.zeros((4, 4))
    not_an_edge[0, 1] = 1.0  # exponential(4): 0 receives from 3 and 2 only

    def off_edge(comm, x):
        return comm.win_put(comm.win_create(None, x, "x", topo), x, "x", dst_weights=not_an_edge)

    def half(comm, x):
        return comm.win_update(comm.win_create(None, x, "x", topo), "x", self_weight=0.5)

    def twice(comm, x):
        return comm.win_create(comm.win_create(None, x, "x", topo), x, "x", topo)

    with pytest.raises(ValueError, match=r"dst_weights\[0, 1\].*no edge 1 -> 0"):
        _trace(off_edge)
    with pytest.raises(ValueError, match="pass self_weight and neighbor_weights together"):
        _trace(half)
    with pytest.raises(ValueError, match="a window named 'x' exists already; win_free it"):
        _trace(twice)
    with pytest.raises(ValueError, match="topology.size must equal the number of agents"):
        _trace(lambda comm, x: comm.win_create(None, x, "x", exponential_graph(8)))


def test_win_free_drops_one_or_all_windows():
    topo = exponential_graph(4)

    def f(comm, x):
        wins = comm.win_create(comm.win_create(None, x, "a", topo), x, "b", topo)
        one = comm.win_free(wins, "a")
        return sorted(one), comm.win_free(wins)

    out = {}

    def g(comm, x):
        names, none = f(comm, x)
        out["names"], out["none"] = names, none
        return x

    _trace(g)
    assert out["names"] == ["b"] and out["none"] == {}
    with pytest.raises(ValueError, match="win_free: no window named 'c'"):
        _trace(lambda comm, x: comm.win_free(comm.win_create(None, x, "a", topo), "c"))
