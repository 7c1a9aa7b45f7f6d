"""Non-blocking window ops (bluefog.comm.window_async) and SGP's overlap variant, simulator.

Oracles: the dense NumPy products of the blocking ops' semantics (``diag(a) X + (A*D) X``),
the hand-computed completion time ``t + max latency`` of each op, and a NumPy
re-implementation of 1-overlap SGP (Assran et al. 2019, Algorithm 3 with tau = 1):
``X <- diag(W) X_half + O X_half_prev`` with ``O`` the off-diagonal part of ``W``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algorithms as A
import bluefog_sim
from algorithms.problems import quadratic
from bluefog.asynchrony import asynchronous, check_windows, compute_model, drain, event_timeline
from bluefog.comm import Clock, ClockedComm, WinHandle, no_handle
from bluefog.topology import exponential_graph
from bluefog_sim import SimComm, spmd

N = 8


def test_nonblocking_ops_have_the_blocking_arithmetic(x64):
    topo = exponential_graph(N)
    X = np.random.default_rng(0).normal(size=(N, 3))
    W = np.asarray(topo.weights)
    D = np.where((W != 0) & ~np.eye(N, dtype=bool), 0.5 + np.arange(N)[None, :] / N, 0.0)

    def f(comm, x):
        wins = comm.win_create(None, x, "p", topo, zero_init=True)
        wins = comm.win_create(wins, x, "g", topo, zero_init=True)
        h1, wins = comm.win_accumulate_nonblocking(wins, x, "p", dst_weights=D)
        h2, wins = comm.win_accumulate_nonblocking(wins, 2 * x, "p", dst_weights=D,
                                                   self_weight=0.5)
        wins = comm.win_wait(wins, h1)
        acc, wins = comm.win_update_then_collect(wins, "p")
        hg, wins = comm.win_get_nonblocking(wins, "g", src_weights=D)
        got, wins = comm.win_update(comm.win_wait(wins, hg), "g")
        return acc, got, h1.ticket, h2.ticket, comm.win_poll(wins, h2), hg.ticket

    acc, got, t1, t2, done, tg = spmd(f, N)(jnp.asarray(X))
    np.testing.assert_allclose(acc, X + 3 * D @ X, atol=1e-13)  # own 0.5 * 2x, then D x + D 2x
    np.testing.assert_allclose(got, np.diag(W)[:, None] * X + (W * D) @ X, atol=1e-13)
    assert np.all(np.asarray(t1) == 0) and np.all(np.asarray(t2) == 1)  # the stamps
    assert np.all(np.asarray(tg) == -1) and np.all(np.asarray(done))


def test_handle_is_due_at_send_time_plus_the_largest_link_latency():
    """Latency L[i, j] on the link j -> i: a send of j completes at t + max_i L[i, j] over
    its out-neighbours, a get of i at t + max_j L[i, j] over its in-neighbours."""
    topo = exponential_graph(4)
    L = np.random.default_rng(3).uniform(0.1, 2.0, (4, 4))
    E = (np.asarray(topo.weights) != 0) & ~np.eye(4, dtype=bool)

    def f(comm, x):
        at = lambda t: ClockedComm(comm, Clock(jnp.asarray(t, jnp.float32), True, L, 4))  # noqa
        wins = at(1.0).win_create(None, x, "a", topo, zero_init=True)
        h, wins = at(1.0).win_put_nonblocking(wins, x, "a")
        hg, wins = at(1.0).win_get_nonblocking(wins, "a")
        before = at(1.0).win_poll(wins, h)
        return h.due, hg.due, before, at(h.due).win_poll(wins, h), at(h.due - 1e-3).win_poll(
            wins, h)

    due, due_get, before, at_due, just_before = spmd(f, 4)(jnp.ones(4))
    np.testing.assert_allclose(due, 1.0 + np.max(np.where(E, L, -np.inf), axis=0), rtol=1e-6)
    np.testing.assert_allclose(due_get, 1.0 + np.max(np.where(E, L, -np.inf), axis=1), rtol=1e-6)
    assert not np.any(before) and np.all(at_due) and not np.any(just_before)


def _trace(fn, n=4):
    return jax.eval_shape(jax.vmap(lambda x: fn(SimComm(n), x), axis_name="agents"),
                          jnp.zeros((n, 3)))


def test_bad_handles_are_refused():
    topo = exponential_graph(4)

    def unknown(comm, x):
        return comm.win_wait(comm.win_create(None, x, "x", topo), no_handle("y"))

    def not_a_handle(comm, x):
        return comm.win_poll(comm.win_create(None, x, "x", topo), 3)

    with pytest.raises(ValueError, match=r"win_wait: no window named 'y'; the windows that "
                                         r"exist are \['x'\]"):
        _trace(unknown)
    with pytest.raises(TypeError, match="win_poll: handle must be the WinHandle returned by a "
                                        r"\*_nonblocking op"):
        _trace(not_a_handle)
    with pytest.raises(ValueError, match="win_accumulate_nonblocking: no window named 'x'"):
        _trace(lambda comm, x: comm.win_accumulate_nonblocking({}, x, "x"))
    with pytest.raises(TypeError, match=r"async_sgp: overlap must be True or False; got .yes."):
        A.async_sgp(0.1, overlap="yes")
    assert isinstance(no_handle("x"), WinHandle)


def _osgp_oracle(W, B, lr, steps):
    """1-OSGP in NumPy, every agent every step; quadratic grads z - b."""
    Dg, O = np.diag(W), W - np.diag(np.diag(W))
    x, w = B.copy(), np.ones(N)
    mx, mw = np.zeros_like(B), np.zeros(N)            # the shares of the previous step
    for _ in range(steps):
        half = x - lr * (x / w[:, None] - B)
        x, w, mx, mw = Dg[:, None] * half + mx, Dg * w + mw, O @ half, O @ w
    return x / w[:, None], mx, mw


def test_overlap_sgp_is_the_one_step_stale_recursion(x64):
    topo, B, lr = exponential_graph(N), np.random.default_rng(0).normal(size=(N, 3)), 0.3
    W = np.asarray(topo.weights)
    prob = quadratic(jnp.asarray(B))
    res = bluefog_sim.run(A.async_sgp(lr, overlap=True), prob, topo, steps=20,
                          x0=jnp.asarray(B), record_every=20)
    want, mx, mw = _osgp_oracle(W, B, lr, 20)
    np.testing.assert_allclose(res.params, want, atol=1e-12)
    win = res.state.windows["push_sum"]  # the shares of step 20, still in the slots
    np.testing.assert_allclose(np.sum(np.asarray(win.buffers[1]), axis=1), mw, atol=1e-12)
    plain = bluefog_sim.run(A.async_sgp(lr), prob, topo, steps=20, x0=jnp.asarray(B),
                            record_every=20)
    assert np.abs(np.asarray(plain.params) - want).max() > 1e-3  # staleness is visible
    tl = event_timeline(compute_model(N), 20)  # equally fast agents, instant links
    sim = bluefog_sim.run(asynchronous(A.async_sgp(lr, overlap=True), tl), prob, topo,
                          steps=20, x0=jnp.asarray(B), record_every=20)
    np.testing.assert_allclose(sim.params, want, atol=1e-12)


def test_overlap_sgp_conserves_weight_under_random_delays(x64):
    """Jitter, a 4x straggler, latencies up to 2 steps: the push-sum weight held by the
    agents plus what is in their slots or in flight is n at every time."""
    topo, B = exponential_graph(N), np.random.default_rng(1).normal(size=(N, 3))
    model = compute_model(N, jitter=0.5, straggler=2, slowdown=4.0, seed=3)
    tl = event_timeline(model, 600, latency=np.random.default_rng(4).uniform(0, 2, (N, N)))
    res = bluefog_sim.run(asynchronous(A.async_sgp(0.05, overlap=True), tl),
                          quadratic(jnp.asarray(B)), topo, steps=tl.events,
                          record_every=tl.events)
    check_windows(res.state)
    win = res.state.inner.windows["push_sum"]
    assert int(np.sum(np.asarray(win.p_used))) > 0  # something is in flight at the end
    drained = drain(res.state).inner.windows["push_sum"]
    slots = np.sum(np.asarray(drained.buffers[1]))  # every padding slot stays 0
    assert abs(np.sum(np.asarray(res.state.inner.w)) + slots - N) < 1e-12
