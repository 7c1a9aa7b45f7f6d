"""Honest benchmarks (issue 13, item 8): the baselines do the same work in the same dtype,
the repetitions are interleaved and the tables report per-repetition ratios. Fast, no MPI.

Oracles: a fake clock and fake methods whose cost and per-repetition machine load are
known (the shared interleaving helper must rotate the order and pair the repetitions so
that the ratio of two methods is their cost ratio, whatever the load does); a dense
float64 ``W @ X`` (the raw baselines' hand-written weighted sum must equal it in
float32); a float64 ``einsum`` evaluation of the logistic gradient (the dense NumPy
baseline must compute the same numbers in float32 with BLAS matmuls); and hand-written
ratio cells for the markdown of synthetic measurements.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package sits, uninstalled, at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks import _workload as W  # noqa: E402
from benchmarks import _raw, _timing, block_ranks, cost_report, mpi_exchange  # noqa: E402


def test_dense_numpy_baseline_is_float32_and_exact():
    A, y = W.data(3, m=20, dim=50)
    X = np.random.default_rng(1).standard_normal((3, 50)).astype(np.float32)
    got = W.numpy_grads(X, A, y)
    assert got.dtype == np.float32  # no silent promotion to float64
    A64, y64, X64 = A.astype(np.float64), y.astype(np.float64), X.astype(np.float64)
    z = np.einsum("nmd,nd->nm", A64, X64)
    want = np.einsum("nmd,nm->nd", A64, -y64 / (1.0 + np.exp(y64 * z))) / 20 + W.LAM * X64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class FakeClock:
    """A clock that only moves when a fake method 'runs'."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_interleaved_rotates_order_pairs_repetitions_and_cancels_load():
    clock = FakeClock()
    cost = {"a": 3.0, "b": 1.0, "c": 2.0}
    load = [1.0, 5.0, 2.0, 10.0]  # machine load of each repetition (warm-up: 1)
    calls, rep = [], {"i": -1, "n": 0}

    def method(name):
        def run():
            calls.append(name)
            clock.t += cost[name] * (load[rep["i"]] if rep["i"] >= 0 else 1.0)
        return run

    def sample(fn):  # a new repetition starts every 3 samples
        rep["i"], rep["n"] = rep["n"] // 3, rep["n"] + 1
        return _timing.call_time(fn, clock=clock)

    times = _timing.interleaved({k: method(k) for k in "abc"}, 4, sample=sample)
    # one warm-up call each, then the order rotated left by one per repetition
    assert calls == list("abc") + list("abc") + list("bca") + list("cab") + list("abc")
    assert times["a"] == [3.0, 15.0, 6.0, 30.0]
    assert times["b"] == [1.0, 5.0, 2.0, 10.0]
    # paired repetitions: the load cancels, the ratio is the cost ratio in every repetition
    assert _timing.ratio_stats(times["a"], times["b"]) == (3.0, 3.0)
    assert _timing.ratio_stats(times["c"], times["a"]) == pytest.approx((2 / 3, 2 / 3))


def test_interleaved_refuses_bad_arguments():
    with pytest.raises(ValueError, match="interleaved: repeats must be an int >= 1, got 0"):
        _timing.interleaved({"a": lambda: None}, 0)
    with pytest.raises(ValueError, match="interleaved: fns must be a non-empty mapping"):
        _timing.interleaved({}, 3)
    with pytest.raises(ValueError, match="interleaved: warmup must be an int >= 0, got -1"):
        _timing.interleaved({"a": lambda: None}, 3, warmup=-1)


def test_call_time_loops_until_min_time():
    clock = FakeClock()
    n = {"calls": 0}

    def fn():
        n["calls"] += 1
        clock.t += 0.3

    assert _timing.call_time(fn, min_time=1.0, clock=clock) == pytest.approx(0.3)
    assert n["calls"] == 4  # 0.3, 0.6, 0.9 < 1.0 <= 1.2
    with pytest.raises(ValueError, match="call_time: min_time must be >= 0 seconds, got -1"):
        _timing.call_time(fn, min_time=-1)


def test_ratio_stats_min_and_median_of_paired_ratios():
    # by hand: 2/1, 1/2, 9/3, 4/4, 10/2 = 2, 0.5, 3, 1, 5 -> min 0.5, median 2
    assert _timing.ratio_stats([2, 1, 9, 4, 10], [1, 2, 3, 4, 2]) == (0.5, 2.0)
    with pytest.raises(ValueError, match="paired samples of the same non-empty length, got 2 and 3"):
        _timing.ratio_stats([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="den must hold positive times"):
        _timing.ratio_stats([1.0], [0.0])


def test_slowest_rank_sample_takes_the_max_over_ranks_after_a_barrier():
    class FakeComm:
        barriers, sent = 0, None

        def Barrier(self):
            self.barriers += 1

        def allgather(self, v):
            self.sent = v
            return [v, 7.0, 0.5]  # this rank, then two slower / faster ranks

    comm = FakeComm()
    assert _timing.slowest_rank_sample(comm, lambda: None, inner=2) == 7.0
    assert comm.barriers == 1 and 0 <= comm.sent < 1


@pytest.mark.parametrize("n", [4, 6])
def test_raw_weighted_sum_is_float32_and_equals_dense_mixing(n):
    from bluefog.topology import exponential_graph

    topo = exponential_graph(n)
    X = np.random.default_rng(n).standard_normal((n, 33)).astype(np.float32)
    want = topo.weights @ X.astype(np.float64)  # independent oracle: dense W @ X
    sched = topo.schedule
    for i in range(n):
        s_self, weights = _raw.round_weights(sched, i, X.dtype)
        assert all(type(w) is np.float32 for w in [s_self, *weights])  # no float64 scalar
        received = [X[int(r.sources[i])] for r in sched.rounds]
        out = _raw.weighted_sum(X[i], received, s_self, weights, np.empty_like(X[i]))
        assert out.dtype == np.float32  # the baseline keeps float32 (NumPy 2 would promote)
        np.testing.assert_allclose(out, want[i], rtol=1e-5, atol=1e-6)


def test_exchange_table_reports_min_and_median_of_per_repetition_ratios():
    results = [{"topology": "ring(n=2)", "method": m, "bytes": 1 << 20, "seconds": s}
               for m, s in [("bluefog_loop", 2e-3), ("raw_sendrecv", 1e-3),
                            ("raw_sendrecv_mix", 2.5e-3)]]
    ratios = [{"topology": "ring(n=2)", "bytes": 1 << 20, "method": "bluefog_loop",
               "vs": "raw_sendrecv_mix", "min": 0.7, "median": 0.8},
              {"topology": "ring(n=2)", "bytes": 1 << 20, "method": "bluefog_loop",
               "vs": "raw_sendrecv", "min": 1.5, "median": 2.0}]
    meta = {"ranks": 2, "cpus": 2, "load_before": "1 1 1", "load_after": "2 2 2",
            "mpi": "MPICH", "repeats": 5}
    text = mpi_exchange.markdown(results, meta, ratios)
    assert "5 interleaved repetitions (warm-up excluded, order rotated)" in text
    assert "load 1 1 1 -> 2 2 2" in text
    assert ("| 1 MiB | 2000.0 | - | 1000.0 | 2500.0 | - | - | 0.70, 0.80 | yes | 1.50, 2.00 "
            "| - |") in text
    ratios[0]["median"] = 1.12  # just under 0.9x the throughput of raw + sum
    assert "| 0.70, 1.12 | no |" in mpi_exchange.markdown(results, meta, ratios)


def test_compare_mpi_table_uses_per_repetition_samples():
    compare = pytest.importorskip("benchmarks.compare")
    rec = lambda m, ts: {"method": m, "bytes": 1024, "seconds": sorted(ts)[1],  # noqa: E731
                         "samples": ts}
    data = {"meta": {"repeats": 3, "load_before": "1 2 3", "load_after": "4 5 6"},
            "results": [rec("bluefog_loop", [2.0, 4.0, 6.0]),
                        rec("raw_sendrecv_mix", [1.0, 8.0, 3.0]),
                        rec("raw_sendrecv", [1.0, 1.0, 1.0])]}
    # by hand: loop / mix = 2, 0.5, 2 -> (0.5, 2); loop / raw = 2, 4, 6 -> (2, 4); the ratio of
    # medians (4 / 3 = 1.33) is NOT what the table reports
    assert compare.exchange_ratios(data)[("bluefog_loop", 1024)] == {
        "raw_sendrecv_mix": (0.5, 2.0), "raw_sendrecv": (2.0, 4.0)}
    text = compare.mpi_text(data, "no ping-pong run", 2)
    assert "| 1024 B | MpiComm.neighbor_allreduce, K per jitted loop | 4 s | 0.50, 2.00 | 2.00, 4.00 |" in text
    assert "3 interleaved repetitions, warm-up excluded; load 1 2 3 before, 4 5 6 after" in text


def test_cost_report_ratio_table_lists_same_work_pairs_with_load():
    res = {"size": 4, "repeats": 3, "load_before": "1 2 3", "load_after": "4 5 6",
           "ratios": {"bluefog_allreduce_loop / raw_allreduce": {"2": {"min": 0.5, "median": 0.9},
                                                                  "256": {"min": 1.0, "median": 1.25}}}}
    text = cost_report.ratio_table(res)
    assert "4 ranks, 3 interleaved repetitions (warm-up excluded), load 1 2 3 -> 4 5 6" in text
    assert "| comparison | 8 B | 1024 B |" in text
    assert "| MpiComm.allreduce in fori_loop / raw Allreduce | 0.50, 0.90 | 1.00, 1.25 |" in text
    assert cost_report.ratio_table({"size": 4, "ops": {}}) == ""


def test_block_table_lists_each_agents_per_rank_row():
    rows = [{"agents_per_rank": k, "agents": 4 * k, "min_s_per_step": 1e-3 * k,
             "median_s_per_step": 2e-3 * k, "median_s_per_agent_step": 2e-3 / 4}
            for k in (1, 16)]
    text = block_ranks.markdown(rows, 4, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0))
    assert "load 1.00 2.00 3.00 4.00 5.00 6.00" in text
    assert "| 16 | 64 | 16.000 | 32.000 | 500.00 |" in text


def test_asv_tracks_report_the_median_per_repetition_ratio(monkeypatch):
    from benchmarks.asv_bench import mpi_exchange_ratio, mpi_ops

    cache = {"ops": {}, "ratios": {"bluefog_allreduce_loop / raw_allreduce": {
        "4096": {"min": 0.8, "median": 1.3}}}}
    b = mpi_ops.MpiOps()
    assert b.track_ratio_allreduce_loop_over_raw_allreduce(cache, 4096) == 1.3
    assert b.track_ratio_allreduce_loop_over_raw_allreduce.unit == "ratio"
    assert b.track_raw_mpi4py_allreduce.unit == "seconds"
    with pytest.raises(NotImplementedError, match="skipped: mpi4jax_sendrecv_loop / raw_sendrecv_ring"):
        b.track_ratio_mpi4jax_sendrecv_loop_over_raw_sendrecv(cache, 4096)
    # the exchange track keeps bluefog_loop / raw_sendrecv_mix only, for all four sizes
    assert mpi_exchange_ratio.SIZES == [64 << 10, 1 << 20, 16 << 20, 64 << 20]
    data = {"results": [{"method": "bluefog_loop", "bytes": 1 << 20, "seconds": 2e-3}],
            "ratios": [{"method": "bluefog_loop", "vs": "raw_sendrecv", "bytes": 1 << 20,
                        "min": 1.5, "median": 2.0},
                       {"method": "bluefog_loop", "vs": "raw_sendrecv_mix", "bytes": 1 << 20,
                        "min": 0.7, "median": 0.8},
                       {"method": "gloo", "vs": "bluefog_loop", "bytes": 1 << 20,
                        "min": 3.0, "median": 4.0}]}
    monkeypatch.setattr(mpi_exchange_ratio, "run_module_json", lambda *a, **k: data)
    assert mpi_exchange_ratio.run_exchange(2) == {1 << 20: {"ratio_median": 0.8,
                                                            "seconds": 2e-3}}
