"""SIGTERM to ``bfrun`` (what a batch scheduler sends) while ``bluefog-train`` trains under
MPI with checkpoints: every process of the job is gone within 10 s, none is orphaned, and the
newest checkpoint is complete and resumable.

Oracle: the process table (``ps``) for orphans, and ``--resume`` continuing from the newest
checkpoint that validates.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bluefog_train import sharded
from bluefog_train.cli import main

pytestmark = [pytest.mark.mpi, pytest.mark.slow]


def _job_pids(marker: str) -> list[int]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(ln.split()[0]) for ln in out.splitlines()[1:] if marker in ln and "ps -eo" not in ln]


@pytest.mark.timeout(900)
def test_sigterm_to_bfrun_ends_the_job_and_keeps_the_checkpoint(tmp_path):
    d = tmp_path / "ck"
    bindir = os.path.dirname(sys.executable)
    marker = str(d)  # only this job's processes carry the checkpoint path on their command line
    args = [os.path.join(bindir, "bfrun"), "-np", "2", os.path.join(bindir, "bluefog-train"),
            "--backend", "mpi", "--agents", "2", "--hidden", "8", "--no-progress",
            "--steps", "200000", "--record-every", "10", "--checkpoint-every", "50",
            "--checkpoint-dir", marker]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600
        while not sharded.list_sharded(d, complete_only=True) and time.time() < deadline \
                and proc.poll() is None:
            time.sleep(0.2)
        assert sharded.list_sharded(d, complete_only=True), "no checkpoint appeared"
        assert len(_job_pids(marker)) >= 2  # the ranks are running
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        stopped_in = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out[-3000:]
    assert stopped_in < 10, f"bfrun took {stopped_in:.1f} s:\n{out[-3000:]}"
    time.sleep(1)
    assert _job_pids(marker) == [], "orphaned processes of the job survived"
    complete = sharded.list_sharded(d, complete_only=True)  # one shard per rank + manifest
    assert complete, "no complete checkpoint survived"
    step, newest = complete[0]
    assert sharded.read_manifest(newest)["size"] == 2  # every shard present, sizes as recorded
    out_json = tmp_path / "r.json"
    assert main(["--agents", "2", "--hidden", "8", "--no-progress", "--steps", str(step + 20),
                 "--record-every", "10", "--checkpoint-every", "50", "--checkpoint-dir",
                 marker, "--resume", "--out", str(out_json)]) == 0
    r = json.loads(out_json.read_text())
    assert r["resumed_from_step"] == step and r["history"]["step"][-1] == step + 20
