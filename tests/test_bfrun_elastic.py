"""``bfrun -np 4 --max-restarts 1 --elastic bluefog-train ...``: ``kill -9`` of one of 4 ranks
after the first checkpoint; the job relaunches on 3 ranks by itself, redistributes the
4-shard checkpoint over 3 agents and finishes.

Oracle: the same 4-shard checkpoint continued by the simulator with ``--agents 3 --resume
--elastic`` (one process, dense mixing): the MPI run's final 3 shards equal the simulator's
final checkpoint to float32 round-off, and both report the same test accuracy.
"""

import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from bluefog_dist import heartbeat
from bluefog_train import sharded
from bluefog_train._manifest import read_verified
from mpi_support import end_job, process_alive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = ["-c", "import sys; from bluefog_train.cli import main; sys.exit(main())"]
STEPS, EVERY = 1200, 60
OPTIONS = ["--hidden", "8", "--no-progress", "--steps", str(STEPS), "--checkpoint-every",
           str(EVERY), "--record-every", "20", "--keep", "1000"]


def _beats(root):
    dirs = glob.glob(os.path.join(root, "bfrun-heartbeat-*", "launch-0"))
    return heartbeat.read_beats(dirs[0]) if dirs else {}


def _wait(predicate, timeout, what, lines):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout} s:\n" + "".join(lines)[-4000:])


@pytest.mark.mpi
@pytest.mark.timeout(900)
def test_kill_9_of_one_of_4_ranks_finishes_on_3_ranks_like_the_simulator(tmp_path):
    d, out = tmp_path / "ck", tmp_path / "r.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "bluefog_dist.launcher", "-np", "4", "--skip-check",
           "--max-restarts", "1", "--elastic", "--min-np", "3", "--heartbeat-timeout", "60",
           sys.executable, *CLI, "--backend", "mpi", *OPTIONS, "--checkpoint-dir", str(d),
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)
    lines, pids = [], []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        first = _wait(lambda: (b := _beats(tmp_path)) and len(b) == 4 and b, 300, "4 beats", lines)
        pids = [b["pid"] for b in first.values()]
        at_kill = _wait(lambda: [s for s, _ in sharded.list_sharded(d, complete_only=True)], 300,
                        "complete checkpoint", lines)[0]
        os.kill(first[1]["pid"], signal.SIGKILL)
        code = proc.wait(timeout=600)
        time.sleep(0.5)
    finally:
        end_job(proc, pids)
    text = "".join(lines)
    assert code == 0, text[-5000:]
    assert "relaunching from the newest complete checkpoint on 3 rank(s)" in text, text[-3000:]
    assert text.count("--elastic: the checkpoint holds 4 agents, this run has 3") == 1
    r = json.loads(out.read_text())
    resumed = r["resumed_from_step"]
    assert resumed >= at_kill and resumed % EVERY == 0, (resumed, at_kill)
    assert r["config"]["agents"] == 3 and len(r["per_agent_test_accuracy"]) == 3
    assert r["history"]["step"][-1] == STEPS
    final = sharded.step_dir(d, STEPS)
    assert sharded.read_manifest(final)["size"] == 3  # written by the 3 ranks
    assert [p for p in pids if process_alive(p)] == []

    # The oracle: the simulator continues the same 4-shard checkpoint on 3 agents.
    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    shutil.copytree(sharded.step_dir(d, resumed), sharded.step_dir(sim_dir, resumed))
    sim_out = tmp_path / "sim.json"
    sim = subprocess.run([sys.executable, *CLI, "--backend", "sim", "--agents", "3", *OPTIONS,
                          "--checkpoint-dir", str(sim_dir), "--resume", "--elastic",
                          "--out", str(sim_out)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    s = json.loads(sim_out.read_text())
    assert s["resumed_from_step"] == resumed
    body = sharded.read_manifest(final)
    rows = [read_verified(io.BytesIO(sharded.verify_shard(final, body, r)), "shard", None)[1]
            for r in range(3)]
    mpi_leaves = [np.stack(parts) for parts in zip(*rows)]
    with open(sim_dir / f"ckpt-{STEPS:08d}.npz", "rb") as f:
        sim_leaves = read_verified(f, "sim", None)[1]
    worst = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                for a, b in zip(mpi_leaves, sim_leaves) if np.issubdtype(a.dtype, np.floating))
    assert [a.shape for a in mpi_leaves] == [np.shape(b) for b in sim_leaves]
    print(f"MEASURED killed after checkpoint {at_kill}, resumed at {resumed} on 3 ranks, "
          f"MPI vs simulator max |diff| {worst:.2e}, test accuracy MPI "
          f"{r['final']['test_accuracy']:.4f} sim {s['final']['test_accuracy']:.4f}, "
          f"load {os.getloadavg()[0]:.1f}")
    assert len(mpi_leaves) == len(sim_leaves)
    assert worst < 1e-4
    assert abs(r["final"]["test_accuracy"] - s["final"]["test_accuracy"]) <= 2 / 360
