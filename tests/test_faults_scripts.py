"""Smoke tests of the fault-injection example and the fault compile benchmark at a tiny size.

Oracles: for the example, the error of push-sum without loss on the doubly stochastic
``exponential_graph(8)`` is the fault-free recursion ``x(t) = W^t b`` computed in NumPy
(``w = 1``), its RMS distance to ``mean(b)``; robust push-sum equals push-sum without loss
(the paper's remark). For the benchmark, how many runs of each sweep compiled: exactly one
with one program, one per setting with a program per setting (a count, not a timing).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bluefog.topology import exponential_graph

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

pytestmark = pytest.mark.slow


def _run(args, timeout=600):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_fault_injection_example_runs_at_a_tiny_size():
    out = _run(["examples/fault_injection.py", "--agents", "8", "--steps", "10",
                "--record-every", "5", "--out", ""])
    err = {(m[0].strip(), float(m[1])): float(m[2]) for m in re.findall(
        r"^\s+(push_sum \(renormalise\)|robust_push_sum)\s+loss\s+(\d+)%: (\S+)$", out, re.M)}
    assert len(err) == 8, out
    b = np.random.default_rng(0).normal(size=(8, 4))  # the example's data (seed 0)
    x = np.linalg.matrix_power(exponential_graph(8).weights, 10) @ b
    want = np.sqrt(np.mean(np.sum((x - b.mean(0)) ** 2, axis=1)))
    for method in ("push_sum (renormalise)", "robust_push_sum"):
        assert err[method, 0] == pytest.approx(want, rel=1e-2), (err, want)
    assert err["push_sum (renormalise)", 30] > 2 * want  # loss changed the result
    assert re.search(r"robust_push_sum: [\d.]+ s of compile for its 4 loss rates", out)
    bad = _run_refused(["examples/fault_injection.py", "--agents", "1"])
    assert "need --agents >= 2" in bad


def _run_refused(args):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    return proc.stderr


def test_fault_compile_benchmark_runs_at_a_tiny_size(tmp_path):
    out_json = tmp_path / "fc.json"
    out = _run(["-m", "benchmarks.fault_compile", "--agents", "8", "--dim", "2", "--steps", "5",
                "--windows", "1", "--sweep", "2", "--reps", "1", "--json", str(out_json)])
    res = json.loads(out_json.read_text())
    assert set(res["rows"]) == {"none", "1"} and "load average" in res["load"]
    assert all(row["min_s"] > 0 for row in res["rows"].values())
    assert res["sweep"]["one"]["runs_compiled"] == [1]  # the tables are program inputs
    assert res["sweep"]["each"]["runs_compiled"] == [2]
    assert "sweep wall time, a program per setting / one program" in out
    assert "need --agents >= 2" in _run_refused(["-m", "benchmarks.fault_compile", "--agents", "1"])
