"""The engine shared by both backends (``bluefog.engine``), tested in the simulator.

Oracles: the dense iteration ``X <- W X - lr (X - B)`` for trajectories, the dispatch plan's
arithmetic for the plan, and the closed form of DGD's divergence on a quadratic.
"""

from unittest import mock

import jax.numpy as jnp
import numpy as np
import pytest

import bluefog_sim
from algorithms import dgd
from algorithms.problems import quadratic
from bluefog.engine import CallbackError, NonFiniteError, plan_run
from bluefog.engine import loop as engine_loop
from bluefog.topology import ring_graph

N = 6


def _problem(n=N, dtype=np.float32):
    b = np.random.default_rng(0).normal(size=(n, 3)).astype(dtype)
    return quadratic(b), b.astype(np.float64)


def _dense(topology, B, steps, lr):
    X = np.zeros_like(B)
    for _ in range(steps):
        X = topology.weights @ X - lr * (X - B)
    return X


@pytest.mark.parametrize("steps,record_every,segment_every", [
    (200, 1, None), (1000, 7, None), (400, 8, 96), (37, 5, 10), (10, 10, None), (3, 1, 2)])
def test_plan_covers_every_step_and_hits_every_segment_end(steps, record_every, segment_every):
    plan = plan_run(steps, record_every, segment_every)
    assert sum(d.records * d.chunk_steps for d in plan) == steps
    ends, done = [], 0
    for d in plan:
        done += d.records * d.chunk_steps
        if d.segment_end:
            ends.append(done)
    seg = segment_every or steps
    assert ends == sorted(set(list(range(seg, steps, seg)) + [steps]))
    assert len({(d.records, d.chunk_steps) for d in plan}) <= 3  # programs compiled per run


def test_plan_does_not_depend_on_progress():
    """The README crash: rank 0 (progress on) split the run differently from the others."""
    import inspect

    assert "progress" not in inspect.signature(plan_run).parameters


def test_segments_compile_once_and_match_the_dense_oracle():
    problem, B = _problem()
    topo = ring_graph(N)
    seen = []
    with mock.patch.object(engine_loop, "make_segment", wraps=engine_loop.make_segment) as ms:
        res = bluefog_sim.run(dgd(lr=0.1), problem, topo, 120, record_every=4, segment_every=40,
                              progress=True,
                              on_segment=lambda step, state, h: seen.append(
                                  (step, np.asarray(state.x).copy(), h["step"][-1])))
    assert ms.call_count == 1  # three segments, one compiled program
    assert [(s, h) for s, _, h in seen] == [(40, 40), (80, 80), (120, 120)]
    for step, X, _ in seen:
        np.testing.assert_allclose(X, _dense(topo, B, step, 0.1), rtol=1e-5, atol=1e-5)
    assert list(res.history["step"]) == list(range(0, 121, 4))


def test_callback_error_is_wrapped_with_the_cause():
    problem, _ = _problem()
    with pytest.raises(CallbackError, match="on_segment raised OSError: disk full") as info:
        bluefog_sim.run(dgd(lr=0.1), problem, ring_graph(N), 20, record_every=5,
                        segment_every=10, progress=False,
                        on_segment=lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    assert isinstance(info.value.__cause__, OSError)


def test_divergence_stops_with_step_agent_and_last_finite_history():
    """DGD on f_i = |x - b_i|^2 / 2 with lr = 5: x <- (W - 5 I) x + 5 b grows like 4^t or
    faster, so float32 overflows within ~70 steps. The run must stop there (not at 400),
    report the step, and keep only finite records."""
    problem, _ = _problem()
    segments = []
    with pytest.raises(NonFiniteError, match=r"the run diverged: .* at step \d+ \(last finite "
                                             r"record: step \d+\)\. Likely cause: the step size"
                       ) as info:
        bluefog_sim.run(dgd(lr=5.0), problem, ring_graph(N), 400, record_every=1,
                        segment_every=10, progress=False,
                        on_segment=lambda step, s, h: segments.append(step))
    err = info.value
    assert 5 < err.step < 100
    assert err.last_finite_step == err.step - 1
    assert err.history["step"][-1] == err.last_finite_step
    assert all(np.all(np.isfinite(v)) for v in err.history.values())
    assert segments == list(range(10, err.step, 10))


def test_first_diverging_agent_is_named():
    """Agent 3's loss is scaled by 1e38: its gradient overflows at its second step while
    every other agent's state is still finite, so the error names agent 3."""
    from bluefog.algorithm import Problem

    b = np.random.default_rng(0).normal(size=(N, 3)).astype(np.float32)
    scale = np.ones(N, np.float32)
    scale[3] = 1e38
    problem = Problem(lambda x, d: 0.5 * d["s"] * jnp.sum((x - d["b"]) ** 2),
                      {"b": jnp.asarray(b), "s": jnp.asarray(scale)}, jnp.zeros(3, jnp.float32),
                      name="scaled")
    agent0 = lambda p, ctx: {"x00": ctx.comm.broadcast(p, 0)[0]}  # noqa: E731
    with pytest.raises(NonFiniteError, match=r"agent 3's state is not finite at step \d") as info:
        bluefog_sim.run(dgd(lr=0.1), problem, ring_graph(N), 50, record_every=1, progress=False,
                        metrics=agent0)
    assert info.value.agent == 3


def test_nonfinite_start_points_at_the_inputs():
    problem, _ = _problem()
    x0 = np.zeros((N, 3), np.float32)
    x0[2, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"agent 2's state is not finite at step 0 .* the "
                                             r"initial state or the data"):
        bluefog_sim.run(dgd(lr=0.1), problem, ring_graph(N), 5, x0=jnp.asarray(x0))


def test_continue_records_nan():
    problem, _ = _problem()
    res = bluefog_sim.run(dgd(lr=5.0), problem, ring_graph(N), 200, record_every=10,
                          progress=False, on_nonfinite="continue")
    assert len(res.history["step"]) == 21
    assert not np.isfinite(res.history["loss"][-1])


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"segment_every": 15, "record_every": 10}, ValueError,
     r"segment_every must be a multiple of record_every .* got segment_every=15, record_every=10"),
    ({"on_nonfinite": "ignore"}, ValueError, r"on_nonfinite must be one of 'raise', 'continue'"),
    ({"on_segment": 3}, TypeError, r"on_segment must be a callable \(step, state, history\)"),
    ({"steps": 2**31}, ValueError, r"steps must be an integer <= 2147483647 \(the step counter "
                                   r"is an int32\)"),
    ({"seed": -1}, ValueError, r"seed must be an int in \[0, 4294967295\]"),
])
def test_bad_engine_arguments(kwargs, exc, match):
    problem, _ = _problem()
    args = dict(steps=30)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        bluefog_sim.run(dgd(lr=0.1), problem, ring_graph(N), progress=False, **args)


def test_state_of_another_run_is_refused():
    problem, _ = _problem()
    small, _ = _problem(n=4)
    other = bluefog_sim.run(dgd(lr=0.1), small, ring_graph(4), 5, progress=False)
    with pytest.raises(ValueError, match=r"state has a leaf of shape \(4, 3\) .* where this "
                                         r"algorithm, topology and problem give \(6, 3\)"):
        bluefog_sim.run(dgd(lr=0.1), problem, ring_graph(N), 5, state=other.state)
    with pytest.raises(ValueError, match="state does not have the structure of this algorithm"):
        bluefog_sim.run(dgd(lr=0.1), problem, ring_graph(N), 5, state={"x": other.state.x})


def test_both_backends_run_the_one_engine():
    """bluefog_sim.run and bluefog_dist.run are adapters around bluefog.engine.execute."""
    import bluefog_dist.runner as dist_runner
    import bluefog_sim.runner as sim_runner

    assert sim_runner.execute is engine_loop.execute
    assert dist_runner.execute is engine_loop.execute
    problem, _ = _problem()
    with mock.patch.object(sim_runner, "execute", wraps=engine_loop.execute) as ex:
        bluefog_sim.run(dgd(lr=0.1), problem, ring_graph(N), 3, progress=False)
    assert ex.call_count == 1


@pytest.mark.parametrize("metrics,exc,match", [
    (lambda p, ctx: {"x": ctx.comm.allreduce(p)}, ValueError,
     r"metrics must return real scalars \(one value per record\); .* returned 'x' with shape "
     r"\(3,\)"),
    (lambda p, ctx: ctx.comm.allreduce(p)[0], TypeError,
     r"metrics must return a non-empty dict \{name: scalar\}; .* returned ShapeDtypeStruct"),
    (lambda p, ctx: {}, TypeError, r"metrics must return a non-empty dict"),
])
def test_metric_function_returning_non_scalars_is_refused(metrics, exc, match):
    problem, _ = _problem()
    with pytest.raises(exc, match=match):
        bluefog_sim.run(dgd(lr=0.1), problem, ring_graph(N), 5, metrics=metrics)
