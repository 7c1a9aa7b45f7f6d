"""``bluefog-train`` streams its records: the CSV and the TensorBoard event file are read
while the run is still going; every row carries step, wall time and bytes sent; the run
records its command line, versions, git commit and topology fingerprint; ``--wandb``
without wandb is skipped with a warning."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mpi_support import ROOT

SMALL = ["--agents", "4", "--hidden", "8", "--no-progress"]


def _rows(path):
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


def test_csv_and_tensorboard_are_readable_mid_run(tmp_path):
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", "from bluefog_train.cli import main; main()",
                             *SMALL, "--steps", "4000", "--record-every", "10", "--out",
                             str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, rows = time.time() + 240, []
        while time.time() < deadline and proc.poll() is None:
            rows = _rows(tmp_path / "r.csv")
            if len(rows) > 1:
                break
            time.sleep(0.2)
        alive = proc.poll() is None
        tb_files = list((tmp_path / "r_tb").glob("events.out.tfevents.*"))
        tb_bytes = tb_files[0].read_bytes() if tb_files else b""
    finally:
        proc.kill()
        output = proc.communicate()[0]
    assert alive and len(rows) > 1, output[-2000:]  # records of a dispatch, run still going
    assert not out.exists()  # the end-of-run JSON is not there yet
    steps = [int(r["step"]) for r in rows]
    assert steps[:3] == [0, 10, 20] and float(rows[1]["wall_seconds"]) > 0
    assert int(rows[0]["bytes_sent_per_agent"]) == 0 < int(rows[1]["bytes_sent_per_agent"])
    if importlib.util.find_spec("tensorboardX") is not None:
        assert b"test_accuracy" in tb_bytes and b"loss" in tb_bytes


def test_records_match_history_and_run_metadata(tmp_path, recwarn):
    from bluefog.topology import exponential_graph
    from bluefog_train.cli import main

    out = tmp_path / "r.json"
    if importlib.util.find_spec("wandb") is None:
        with pytest.warns(RuntimeWarning, match="wandb package is not installed"):
            assert main([*SMALL, "--steps", "20", "--record-every", "5", "--out", str(out),
                         "--metrics-csv", str(tmp_path / "m" / "x.csv"), "--wandb"]) == 0
    else:  # pragma: no cover - wandb present: do not log to a real project from tests
        pytest.skip("wandb installed here; the no-wandb path is what this test checks")
    r = json.loads(out.read_text())
    rows = _rows(tmp_path / "m" / "x.csv")
    h = r["history"]
    assert [int(x["step"]) for x in rows] == h["step"] == [0, 5, 10, 15, 20]
    np.testing.assert_allclose([float(x["loss"]) for x in rows], h["loss"], rtol=1e-6)
    per_step = r["bytes_sent_per_agent_per_step"]
    assert [float(x["bytes_sent_per_agent"]) for x in rows] == pytest.approx(
        [s * per_step for s in h["step"]], abs=1)
    meta = r["run"]
    assert meta == json.loads((tmp_path / "m" / "x.csv.run.json").read_text())
    assert meta["command"][0] == "bluefog-train" and meta["command"][1:3] == ["--agents", "4"]
    assert meta["versions"]["jax"] and "mpi4jax" in meta["versions"]
    assert meta["topology"]["fingerprint"] == exponential_graph(4).fingerprint
    assert "git_commit" in meta
