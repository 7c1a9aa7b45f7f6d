"""Ctrl-C (``SIGINT``) to ``bfrun --max-restarts 2`` while ``bluefog-train --backend mpi``
trains on 4 ranks: every process of the job is gone within 10 s, none is orphaned, there is
no relaunch (a signal to ``bfrun`` itself is a stop, never a failure), and the newest
complete checkpoint is intact and loadable.

Oracles: the process table (``/proc``: every descendant of ``bfrun`` remembered before the
signal must be gone; no process carrying the job's checkpoint path remains), ``bfrun``'s
exit status ``128 + SIGINT`` and its output (no "relaunching"), every shard's SHA-256
against the manifest, and ``--resume`` continuing from that checkpoint.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bluefog_dist.supervise import job_processes
from bluefog_train import sharded
from bluefog_train.cli import main
from mpi_support import end_job, process_alive, with_sigint

pytestmark = [pytest.mark.mpi, pytest.mark.slow]


def _marked(marker: str) -> list[int]:
    """Pids of the processes whose command line contains ``marker`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and process_alive(int(entry)):
                found.append(int(entry))
    return found


def _ranks(marker: str) -> list[int]:
    """The rank processes: Python running bluefog-train with this job's checkpoint path."""
    out = []
    for pid in _marked(marker):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1].endswith(b"bluefog-train"):  # python <bluefog-train>
            out.append(pid)
    return out


def _wait(predicate, timeout: float, what: str, lines: list):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s; output:\n" + "".join(lines)[-4000:])


@pytest.mark.timeout(900)
def test_ctrl_c_to_bfrun_with_max_restarts_ends_every_rank_without_a_relaunch(tmp_path):
    d = tmp_path / "ck"
    bindir = os.path.dirname(sys.executable)
    marker = str(d)  # only this job's processes carry the checkpoint path on their command line
    cmd = [os.path.join(bindir, "bfrun"), "-np", "4", "--max-restarts", "2",
           os.path.join(bindir, "bluefog-train"), "--backend", "mpi", "--agents", "4",
           "--hidden", "8", "--no-progress", "--steps", "200000", "--record-every", "10",
           "--checkpoint-every", "50", "--checkpoint-dir", marker]
    # SIGINT at its default disposition whatever this process inherited (a background job
    # starts with SIGINT ignored, which exec would keep and bfrun would then keep ignored)
    proc = subprocess.Popen(with_sigint("SIG_DFL", cmd), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines, job = [], {}
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        ranks = _wait(lambda: (r := _ranks(marker)) and len(r) == 4 and r, 300,
                      "4 ranks did not start", lines)
        _wait(lambda: sharded.list_sharded(d, complete_only=True), 600,
              "no complete checkpoint appeared", lines)
        job = job_processes(proc.pid)  # mpiexec, its proxy, the ranks: what must end
        assert set(ranks) <= set(job) and len(job) >= 5, (ranks, job)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends to bfrun
        code = proc.wait(timeout=120)
        ended = _wait(lambda: not any(process_alive(p) for p in job) and time.monotonic(), 60,
                      "the job's processes did not end", lines)
        stopped_in = ended - t0
        time.sleep(2)  # a relaunch would have started new ranks by now
        left = _marked(marker)
    finally:
        end_job(proc, list(job) + _ranks(marker))
    out = "".join(lines)
    assert code == 128 + signal.SIGINT, out[-3000:]
    assert stopped_in < 10, f"the job took {stopped_in:.1f} s to end:\n{out[-3000:]}"
    assert left == [], f"orphaned processes of the job survived: {left}"
    assert "relaunching" not in out and "launch 0 failed" not in out, out[-3000:]
    step, newest = sharded.list_sharded(d, complete_only=True)[0]
    body = sharded.read_manifest(newest)  # manifest hash, every shard present with its size
    assert body["size"] == 4 and body["step"] == step
    for rank in range(4):
        sharded.verify_shard(newest, body, rank)  # SHA-256 of every shard
    print(f"MEASURED SIGINT: every process of the job ended {stopped_in:.1f} s after the "
          f"signal; newest checkpoint step {step}; load {os.getloadavg()[0]:.1f}")
    out_json = tmp_path / "r.json"  # loadable: the simulator resumes it and goes on
    assert main(["--agents", "4", "--hidden", "8", "--no-progress", "--steps", str(step + 20),
                 "--record-every", "10", "--checkpoint-every", "50", "--checkpoint-dir",
                 marker, "--resume", "--out", str(out_json)]) == 0
    r = json.loads(out_json.read_text())
    assert r["resumed_from_step"] == step and r["history"]["step"][-1] == step + 20
