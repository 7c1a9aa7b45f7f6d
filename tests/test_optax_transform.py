"""``algorithms.optax_decentralized`` in a user's own vmapped step, against NumPy oracles.

The oracle re-implements the inner optimizer (SGD, AdamW with a linear schedule) in NumPy,
agent by agent, and mixes with the dense matrix: ATC ``X+ = W (X + U)``, AWC
``X+ = W X + U``. The simulator's run must match it to float32 tolerance.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bluefog_sim
from algorithms import DecentralizedMixState, mix_state, optax_decentralized
from bluefog.topology import (Topology, exponential_graph, one_peer_exponential_graph,
                              ring_graph)

N, STEPS = 8, 6
LR0, LR1, WD = 0.1, 0.02, 0.01


def _targets(seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((N, 3)), "b": rng.standard_normal((N, 2, 2))}


def _grad(x, b):  # loss_i(x) = 1/2 ||x - b_i||^2 per leaf
    return {k: x[k] - b[k] for k in x}


def _lr(t):  # optax.linear_schedule(LR0, LR1, 4) in closed form
    return LR0 + (LR1 - LR0) * min(t, 4) / 4


def _numpy_run(kind, style, weights_at, J=1):
    b = _targets()
    x = {k: np.zeros_like(v) for k, v in b.items()}
    m = {k: np.zeros_like(v) for k, v in b.items()}
    v = {k: np.zeros_like(v) for k, v in b.items()}
    for t in range(STEPS):
        g = _grad(x, b)
        u = {}
        for k in x:
            if kind == "sgd":
                u[k] = -_lr(t) * g[k]
            else:  # AdamW (Loshchilov & Hutter 2019), optax's eps placement
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
                mh, vh = m[k] / (1 - 0.9 ** (t + 1)), v[k] / (1 - 0.999 ** (t + 1))
                u[k] = -_lr(t) * (mh / (np.sqrt(vh) + 1e-8) + WD * x[k])
        talk = (t + 1) % J == 0
        W = weights_at(t // J) if talk else np.eye(N)
        mix = lambda a: np.einsum("ij,j...->i...", W, a)  # noqa: E731
        x = {k: mix(x[k] + u[k]) if style == "atc" else mix(x[k]) + u[k] for k in x}
    return x


def _sim_run(inner, style, topology, J=1):
    b = {k: jnp.asarray(a, jnp.float32) for k, a in _targets().items()}
    comm = bluefog_sim.SimComm(N)
    tx = optax_decentralized(comm, topology, style=style, inner=inner,
                             steps_per_communication=J)

    def agent(comm_, b_i):
        x = {k: jnp.zeros_like(a) for k, a in b_i.items()}
        state = tx.init(x)

        def body(carry, _):
            x, state = carry
            updates, state = tx.update(_grad(x, b_i), state, x)
            return (optax.apply_updates(x, updates), state), None

        (x, state), _ = jax.lax.scan(body, (x, state), None, length=STEPS)
        return x, state

    return bluefog_sim.spmd(agent, N)(b)


SCHED = optax.linear_schedule(LR0, LR1, 4)


@pytest.mark.parametrize("kind,style,dynamic", [("sgd", "atc", False), ("sgd", "awc", True),
                                                ("adamw", "atc", True), ("adamw", "awc", False)])
def test_matches_dense_oracle(kind, style, dynamic):
    topo = one_peer_exponential_graph(N) if dynamic else exponential_graph(N)
    weights_at = (lambda k: topo.at(k).weights) if dynamic else (lambda k: topo.weights)
    inner = optax.sgd(SCHED) if kind == "sgd" else optax.adamw(SCHED, weight_decay=WD)
    x, state = _sim_run(inner, style, topo)
    want = _numpy_run(kind, style, weights_at)
    for k in want:
        np.testing.assert_allclose(np.asarray(x[k]), want[k], rtol=2e-5, atol=2e-6)
    assert isinstance(state[-1], DecentralizedMixState)
    np.testing.assert_array_equal(np.asarray(state[-1].count), np.full(N, STEPS))


def test_periodic_communication_is_local_sgd_between_exchanges():
    topo = ring_graph(N)
    x, _ = _sim_run(optax.sgd(SCHED), "atc", topo, J=3)
    want = _numpy_run("sgd", "atc", lambda k: topo.weights, J=3)
    for k in want:
        np.testing.assert_allclose(np.asarray(x[k]), want[k], rtol=2e-5, atol=2e-6)


def test_mix_state_averages_floats_with_w_and_keeps_integers():
    topo = exponential_graph(N)
    rng = np.random.default_rng(1)
    stats = {"mean": jnp.asarray(rng.standard_normal((N, 4)), jnp.float32),
             "n": jnp.arange(N, dtype=jnp.int32)}
    out = bluefog_sim.spmd(lambda c, s: mix_state(c, topo, s), N)(stats)
    np.testing.assert_allclose(np.asarray(out["mean"]), topo.weights @ np.asarray(stats["mean"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out["n"]), np.arange(N))


def test_refuses_bad_inputs_with_the_fix():
    comm = bluefog_sim.SimComm(N)
    with pytest.raises(ValueError, match="topology.size must equal"):
        optax_decentralized(comm, ring_graph(4))
    with pytest.raises(TypeError, match="comm must be a bluefog Communicator"):
        optax_decentralized("comm", ring_graph(N))
    with pytest.raises(ValueError, match="style"):
        optax_decentralized(comm, ring_graph(N), style="cta")
    with pytest.raises(TypeError, match="inner must be an optax"):
        optax_decentralized(comm, ring_graph(N), inner=lambda g: g)
    a = np.linspace(0.3, 0.7, N)  # column j keeps a_j, sends 1 - a_j to j + 1
    col = np.diag(a) + np.roll(np.diag(1 - a), 1, axis=0)  # columns sum to 1, rows do not
    with pytest.raises(ValueError, match="row sums"):
        optax_decentralized(comm, Topology(col, require="column"))
    tx = optax_decentralized(comm, ring_graph(N))
    with pytest.raises(ValueError, match="update needs params"):
        tx.update({"a": jnp.zeros(2)}, tx.init(None))
