"""The straggler study's bookkeeping (examples/straggler_study.py), without its long runs.

Oracles: hand-made loss curves (first crossing of the target) and hand-computed ratios.
"""

import importlib.util

import numpy as np

from mpi_support import ROOT

spec = importlib.util.spec_from_file_location("straggler_study",
                                              ROOT / "examples" / "straggler_study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def test_time_to_target_is_the_first_crossing_or_inf():
    t = np.array([0.0, 1.0, 2.5, 4.0])
    assert study.time_to_target(t, [1.0, 0.5, 0.09, 0.01], 0.1) == 2.5
    assert study.time_to_target(t, [1.0, 0.5, 0.2, 0.11], 0.1) == float("inf")


def test_summary_reports_min_and_median_of_per_seed_ratios():
    rows = [{"scenario": s, "ratio_sync_over_sgp": r, "ratio_sync_over_adpsgd": 2 * r}
            for s, r in [("straggler_10x", 9.0), ("straggler_10x", 11.0), ("straggler_10x", 10.0),
                         ("no_straggler", 1.2), ("no_straggler", 1.3), ("no_straggler", 1.1)]]
    out = study.summarize({"rows": rows})
    assert out["straggler_10x:ratio_sync_over_sgp"] == {"min": 9.0, "median": 10.0}
    assert out["no_straggler:ratio_sync_over_adpsgd"]["min"] == 2.2


def test_the_problem_has_exact_gradients_and_a_known_optimum():
    prob = study.make_problem(4)
    assert prob.stochastic_loss is None and prob.optimum is not None and prob.size == 4
