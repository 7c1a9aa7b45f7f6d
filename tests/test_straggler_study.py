"""The straggler studies' bookkeeping (examples/straggler_study.py, straggler_mlp.py,
straggler_train_mpi.py), without their long runs.

Oracles: hand-made loss curves (first crossing of the target), hand-computed ratios and
medians, the closed-form synchronous clock of the MLP study's scenarios.
"""

import importlib.util
import sys

import numpy as np
import pytest

from mpi_support import ROOT


def load(name):
    sys.path.insert(0, str(ROOT / "examples"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


study = load("straggler_study")


def test_time_to_target_is_the_first_crossing_or_inf():
    t = np.array([0.0, 1.0, 2.5, 4.0])
    assert study.time_to_target(t, [1.0, 0.5, 0.09, 0.01], 0.1) == 2.5
    assert study.time_to_target(t, [1.0, 0.5, 0.2, 0.11], 0.1) == float("inf")


def test_ratios_pair_every_sync_method_with_every_async_one():
    t = {"sync_dgd": 100.0, "sync_atc": 50.0, "sync_allreduce": 40.0, "async_sgp": 10.0,
         "ad_psgd": 20.0}
    r = study.ratios(t)
    assert len(r) == 6 and r["ratio_sync_dgd_over_async_sgp"] == 10.0
    assert r["ratio_sync_allreduce_over_ad_psgd"] == 2.0


def test_summary_reports_min_and_median_of_per_seed_ratios():
    rows = [{"scenario": s, "ratio_sync_dgd_over_async_sgp": r,
             "ratio_sync_dgd_over_ad_psgd": 2 * r}
            for s, r in [("straggler_10x", 9.0), ("straggler_10x", 11.0), ("straggler_10x", 10.0),
                         ("no_straggler", 1.2), ("no_straggler", 1.3), ("no_straggler", 1.1)]]
    out = study.summarize({"rows": rows})
    assert out["straggler_10x:ratio_sync_dgd_over_async_sgp"] == {"min": 9.0, "median": 10.0}
    assert out["no_straggler:ratio_sync_dgd_over_ad_psgd"]["min"] == 2.2


def test_the_problem_has_exact_gradients_and_a_known_optimum():
    prob = study.make_problem(4)
    assert prob.stochastic_loss is None and prob.optimum is not None and prob.size == 4


def test_mlp_study_clocks_each_scenario_on_its_own_compute_model():
    """With no jitter the synchronous clock is closed-form: (slowdown + latency) per step."""
    from bluefog_train.cli import build_parser
    from bluefog_train.config import validate_config
    from bluefog_train.stragglers import synchronous_clock

    mlp = load("straggler_mlp")
    args = [a if a != "0.1" else "0" for a in mlp.args_of(["--agents", "8"], 3, "--steps", "5")]
    assert args[args.index("--seed") + 1] == "3"
    for scen, per_step in (("straggler_10x", 10.0), ("no_straggler", 1.0)):
        cfg = validate_config(vars(build_parser().parse_args(
            args + ["--latency", "0.25"] + mlp.SCENARIO_FLAGS[scen])))
        np.testing.assert_allclose(synchronous_clock(cfg), (per_step + 0.25) * np.arange(1, 6))
    assert set(mlp.SYNC_FLAGS) == set(study.SYNC) and set(mlp.ASYNC_FLAGS) == set(study.ASYNC)


def test_mpi_study_reads_wall_seconds():
    mpi = load("straggler_train_mpi")
    h = {"wall_seconds": [0.0, 1.5, 3.0, 4.5], "loss": [2.5, 1.0, 0.4, 0.3]}
    assert mpi.time_to_target(h, 0.5) == 3.0
    assert mpi.time_to_target(h, 0.1) == float("inf")
    with pytest.raises(RuntimeError, match="failed"):
        mpi.launch(2, ["--bogus-flag"], ROOT / "nowhere.json", timeout=300)


def test_mpi_study_plots_both_curves(tmp_path):
    mpi = load("straggler_train_mpi")
    result = {"curves": {"sync": ([0.0, 2.0, 4.0], [2.5, 1.0, 0.4]),
                         "async": ([0.0, 1.0, 2.0], [2.5, 0.9, 0.3])},
              "seconds_to_target": {"sync": [4.0], "async": [2.0]}, "target_loss": 0.5,
              "ranks": 4, "slowdown": 5.0, "compute_time": 0.2}
    mpi.plot(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
