"""The engine under MPI: the same compiled programs on every rank whatever the display,
segment callbacks and divergence handled on every rank at once (never a hang).

Written in terms of ``rank`` and ``size``; launched by ``tests/test_dist_mpi.py`` under
``mpiexec`` with a timeout, so a rank left waiting fails the test instead of blocking CI.
The oracle for trajectories is the dense iteration ``X <- W X - lr (X - B)``.
"""

import numpy as np
import pytest

import bluefog_dist
from bluefog.engine import CallbackError, NonFiniteError
from bluefog.topology import ring_graph
from bluefog_dist.agreement import AgreementError
from test_run import LR, local_dgd, make_problem


def _dense_dgd(topology, B, steps, lr=LR):
    X = np.zeros_like(B)
    for _ in range(steps):
        X = topology.weights @ X - lr * (X - B)
    return X


def test_progress_on_rank_zero_only_with_many_records(rank, size):
    """The README's crash: the progress bar (shown on rank 0 only) used to split rank 0's
    run into more dispatches than the others', and a compiled MPI program failed when called
    twice. 200 records, progress on rank 0 only: every rank finishes with the dense oracle."""
    topology, problem = ring_graph(size), make_problem("quadratic", size)
    res = bluefog_dist.run(local_dgd(), problem, topology, 200, record_every=1,
                           progress=rank == 0)
    assert len(res.history["step"]) == 201
    B = np.asarray(problem.data, np.float64)
    np.testing.assert_allclose(res.params, _dense_dgd(topology, B, 200)[rank], rtol=1e-4,
                               atol=1e-5)


def test_rank_dependent_segmenting_errors_on_every_rank(rank, size):
    """An option that changes the compiled programs, given differently on one rank, is
    refused by the start-up agreement on every rank (no rank runs ahead and waits)."""
    if size < 2:
        pytest.skip("needs two ranks to disagree")
    with pytest.raises(AgreementError, match=r"field 'segment_every'"):
        bluefog_dist.run(local_dgd(), make_problem("quadratic", size), ring_graph(size), 20,
                         record_every=5, segment_every=10 if rank == 0 else 20, progress=False)


def test_on_segment_called_with_each_ranks_state(rank, size):
    topology, problem = ring_graph(size), make_problem("quadratic", size)
    seen = []
    res = bluefog_dist.run(local_dgd(), problem, topology, 30, record_every=5, segment_every=10,
                           progress=False,
                           on_segment=lambda step, state, hist: seen.append(
                               (step, np.asarray(state.x).copy(), int(hist["step"][-1]))))
    assert [s for s, _, _ in seen] == [10, 20, 30]
    assert [h for _, _, h in seen] == [10, 20, 30]
    B = np.asarray(problem.data, np.float64)
    for step, x, _ in seen:
        np.testing.assert_allclose(x, _dense_dgd(topology, B, step)[rank], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.params, seen[-1][1])


def test_callback_failing_on_one_rank_raises_on_every_rank(rank, size):
    def on_segment(step, state, history):
        if rank == size - 1 and step == 10:
            raise OSError("disk full")

    with pytest.raises(CallbackError, match=rf"on_segment failed on rank\(s\) {size - 1}: "
                                            rf"rank {size - 1}: OSError: disk full"):
        bluefog_dist.run(local_dgd(), make_problem("quadratic", size), ring_graph(size), 20,
                         record_every=5, segment_every=10, progress=False, on_segment=on_segment)


def test_divergence_raises_on_every_rank_with_the_step(rank, size):
    """lr = 5 makes x <- W x - 5 (x - b) grow like 4^t: float32 overflows near step 64. Every
    rank raises the same NonFiniteError; no segment after the divergence is reported."""
    segments = []
    with pytest.raises(NonFiniteError, match="the run diverged") as info:
        bluefog_dist.run(local_dgd(lr=5.0), make_problem("quadratic", size), ring_graph(size),
                         400, record_every=1, segment_every=20, progress=False,
                         on_segment=lambda step, s, h: segments.append(step))
    err = info.value
    assert 10 < err.step < 200
    assert err.last_finite_step == err.step - 1
    assert np.all(np.isfinite(err.history["loss"]))
    assert segments == list(range(20, err.step, 20))
    from mpi4py import MPI

    steps = MPI.COMM_WORLD.allgather((err.step, err.agent))
    assert len(set(steps)) == 1


def test_world_size_one_says_a_single_agent_runs(size):
    """`python script.py --backend mpi` without bfrun runs one agent: say so."""
    import warnings

    problem = make_problem("quadratic", size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bluefog_dist.run(local_dgd(), problem, ring_graph(size), 5, progress=False)
    single = [w for w in caught if "the MPI world size is 1" in str(w.message)]
    assert len(single) == (1 if size == 1 else 0)
    if single:
        assert single[0].category is RuntimeWarning
        assert "bfrun -np N" in str(single[0].message)


@pytest.mark.parametrize("agents_per_rank", [1, 2])
def test_second_run_reuses_the_compiled_programs(rank, size, agents_per_rank):
    """Runs on the same communicator with the same algorithm, problem and shapes (a sweep
    over seeds, or checkpoint segments continued with ``state=``) compile nothing; the
    continuation still follows the dense oracle. Compiles are counted with JAX's own
    monitoring event for backend compiles."""
    import jax

    from bluefog.engine import cache

    cache.clear_programs()
    n = size * agents_per_rank
    topology, problem, alg = ring_graph(n), make_problem("quadratic", n), local_dgd()
    kw = dict(record_every=5, progress=False, agents_per_rank=agents_per_rank)
    first = bluefog_dist.run(alg, problem, topology, 20, **kw)
    assert first.compile_seconds > 0
    compiles = []

    def listener(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        again = bluefog_dist.run(alg, problem, ring_graph(n), 20, seed=3, **kw)
        cont = bluefog_dist.run(alg, problem, topology, 20, state=again.state, **kw)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert again.compile_seconds == 0.0 and cont.compile_seconds == 0.0
    # nothing but the eager copies of the given state's leaves (one per shape and dtype)
    kinds = {(np.shape(a), np.asarray(a).dtype) for a in jax.tree_util.tree_leaves(again.state)}
    assert len(compiles) <= len(kinds), (agents_per_rank, compiles)
    B = np.asarray(problem.data, np.float64)
    mine = slice(rank * agents_per_rank, (rank + 1) * agents_per_rank)
    got = np.reshape(np.asarray(cont.params), B[mine].shape)
    np.testing.assert_allclose(got, _dense_dgd(topology, B, 40)[mine], rtol=1e-4, atol=1e-5)
