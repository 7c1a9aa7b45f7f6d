"""Compiled programs are reused across ``run()`` calls (``bluefog.engine.cache``).

Compilations are counted with JAX's own monitoring event for backend compiles; the results
are checked against the NumPy DGD recursion ``x+ = W x - lr (x - b)`` (the gradient of the
quadratic ``f_i = |x - b_i|^2 / 2``).
"""

import jax
import numpy as np
import pytest

import algorithms
import bluefog_sim
from bluefog.engine import cache
from bluefog.topology import exponential_graph, ring_graph


#: JAX's monitoring event for one XLA backend compile (jax._src.BACKEND_COMPILE_EVENT).
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@pytest.fixture
def compiles():
    count = []

    def listener(event, duration, **_):
        if event == BACKEND_COMPILE_EVENT:
            count.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield count
    jax.monitoring.unregister_event_duration_listener(listener)


def dgd_oracle(W, b, x0, lr, steps):
    x = np.array(x0, dtype=np.float64)
    for _ in range(steps):
        x = W @ x - lr * (x - b)
    return x


def test_second_run_with_same_shapes_compiles_nothing(compiles):
    cache.clear_programs()
    topo = exponential_graph(8)
    b = np.random.default_rng(0).standard_normal((8, 3))
    x0 = [np.random.default_rng(k).standard_normal((8, 3)) for k in (1, 2)]
    with jax.enable_x64(True):
        alg, prob = algorithms.dgd(0.1), algorithms.problems.quadratic(b)
        first = bluefog_sim.run(alg, prob, topo, 30, record_every=10, x0=x0[0], progress=False)
        assert first.compile_seconds > 0 and len(compiles) > 0
        compiles.clear()
        # another seed, x0 and an equal (not the same) topology: no compile at all
        again = bluefog_sim.run(alg, prob, exponential_graph(8), 30, record_every=10, seed=4,
                                x0=x0[1], progress=False)
        assert compiles == [] and again.compile_seconds == 0.0
        # continuations from the state (checkpoint segments): the scan program is reused
        # (compile_seconds 0); the first one compiles only the eager copy of the given state
        # (jnp.array per leaf), the second nothing at all; both follow the trajectory
        state = again.state
        for total in (60, 90):
            compiles.clear()
            cont = bluefog_sim.run(alg, prob, topo, 30, record_every=10, state=state,
                                   progress=False)
            assert cont.compile_seconds == 0.0 and (total == 60 or compiles == [])
            np.testing.assert_allclose(np.asarray(cont.params),
                                       dgd_oracle(topo.weights, b, x0[1], 0.1, total),
                                       rtol=0, atol=1e-12)
            state = cont.state


def test_what_changes_the_program_recompiles(compiles):
    cache.clear_programs()
    b = np.random.default_rng(2).standard_normal((6, 2))
    alg, prob = algorithms.dgd(0.2), algorithms.problems.quadratic(b)
    bluefog_sim.run(alg, prob, ring_graph(6), 10, record_every=5, progress=False)
    for changed in (dict(topology=exponential_graph(6)), dict(alg=algorithms.dgd(0.2)),
                    dict(prob=algorithms.problems.quadratic(b[:, :1]))):
        compiles.clear()
        a, p, t = changed.get("alg", alg), changed.get("prob", prob), changed.get(
            "topology", ring_graph(6))
        res = bluefog_sim.run(a, p, t, 10, record_every=5, progress=False)
        assert len(compiles) > 0 and res.compile_seconds > 0, changed
        want = dgd_oracle(t.weights, np.asarray(p.data), np.zeros(p.data.shape), 0.2, 10)
        np.testing.assert_allclose(np.asarray(res.params), want, atol=1e-5)
