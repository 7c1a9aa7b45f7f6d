"""``bfrun --max-restarts``: a killed or stopped rank does not lose the run.

Unit part (no MPI): the relaunch loop and the watchdog, driven by small shell/Python
programs. MPI part (one ``bfrun -np 4`` launch): ``kill -9`` of one of 4 ranks mid-training,
then ``SIGSTOP`` of another after the relaunch; the job relaunches twice on its own and
finishes, and its final parameters equal, bit for bit, those of an uninterrupted run of the
same program (run afterwards in the same processes: the oracle). The stop is detected within
the configured heartbeat timeout.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from bluefog_dist import heartbeat
from bluefog_dist.restart import Watchdog, supervise_restarts
from bluefog_train import sharded
from mpi_support import end_job, process_alive, with_sigint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_relaunches_until_success_with_the_restart_count(tmp_path, capsys):
    log = tmp_path / "log"
    prog = f"echo $BLUEFOG_RESTART_COUNT/$BLUEFOG_MAX_RESTARTS >> {log}; " \
           "test $BLUEFOG_RESTART_COUNT -ge 2"
    code = supervise_restarts(lambda extra, size: ["sh", "-c", prog], dict(os.environ),
                              max_restarts=3, grace=1.0)
    assert code == 0
    assert log.read_text().split() == ["0/3", "1/3", "2/3"]
    err = capsys.readouterr().err
    assert err.count("relaunching from the newest complete checkpoint") == 2
    assert "launch 0 failed" in err and "exited with status 1" in err


def test_gives_up_after_max_restarts(tmp_path, capsys):
    code = supervise_restarts(lambda extra, size: ["sh", "-c", "exit 7"], dict(os.environ),
                              max_restarts=1, grace=1.0)
    assert code == 7
    assert "giving up after 1 restart(s)" in capsys.readouterr().err


def test_ctrl_c_stops_the_job_and_is_never_followed_by_a_relaunch(tmp_path):
    log = tmp_path / "log"
    code = textwrap.dedent(f"""
        import os, signal, sys
        from bluefog_dist.restart import supervise_restarts
        prog = "echo $BLUEFOG_RESTART_COUNT >> {log}; exec sleep 60"
        sys.exit(supervise_restarts(lambda extra, size: ["sh", "-c", prog], dict(os.environ),
                                    max_restarts=3, grace=1.0))
    """)
    proc = subprocess.Popen(with_sigint("SIG_DFL", [sys.executable, "-c", code]), cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 128 + signal.SIGINT
    assert time.monotonic() - t0 < 10
    time.sleep(0.5)
    assert log.read_text().split() == ["0"]  # launched once, not relaunched


def test_watchdog_sees_a_stopped_beat_and_a_stuck_step(tmp_path):
    d = tmp_path / "beats"
    d.mkdir()
    now = time.time()
    (d / "rank-0.json").write_text('{"rank": 0, "pid": 11, "step": 5, "checkpoint": 4}')
    (d / "rank-1.json").write_text('{"rank": 1, "pid": 12, "step": 7, "checkpoint": 4}')
    watch = Watchdog(d, timeout=2.0, progress_timeout=0.3, every=0.0)
    assert watch() is None
    assert watch.progress() == (7, 4)
    os.utime(d / "rank-1.json", (now - 5, now - 5))  # rank 1 stopped beating 5 s ago
    assert watch() == 12 and "rank 1 (pid 12) sent no heartbeat for 5" in watch.reason
    (d / "rank-1.json").write_text('{"rank": 1, "pid": 12, "step": 7, "done": true}')
    os.utime(d / "rank-1.json", (now - 5, now - 5))  # exiting (in MPI_Finalize): not judged
    assert Watchdog(d, timeout=2.0, every=0.0)() is None
    stuck = Watchdog(d, timeout=60.0, progress_timeout=0.3, every=0.0)
    assert stuck() is None
    time.sleep(0.4)  # both files still beat (fresh mtime) but the steps do not move
    os.utime(d / "rank-0.json")
    os.utime(d / "rank-1.json")
    assert stuck() == 11 and "stayed at step 5" in stuck.reason


SCRIPT = textwrap.dedent("""
    import os, sys, time
    import jax, numpy as np
    from mpi4py import MPI
    import bluefog_dist
    from bluefog_dist import heartbeat
    from algorithms import dsgd, problems
    from bluefog.engine import record_listener
    from bluefog.topology import exponential_graph
    from bluefog_train import store
    from bluefog_train.backends import MpiBackend
    from bluefog_train.training import state_template

    d, steps, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    backend = MpiBackend(1)
    rank, n = backend.rank, backend.size
    def say(text):  # one write per line: the 4 ranks share one pipe
        sys.stdout.write(text + "\\n")
        sys.stdout.flush()

    say(f"RANK-PID {os.environ['BLUEFOG_RESTART_COUNT']} {rank} {os.getpid()}")
    rng = np.random.default_rng(3)
    problem = problems.least_squares(rng.normal(size=(n, 12, 3)).astype(np.float32),
                                     rng.normal(size=(n, 12)).astype(np.float32), batch_size=4)
    algo, topo = dsgd(0.05), exponential_graph(n)
    start, state = 0, None
    if int(os.environ["BLUEFOG_RESTART_COUNT"]) > 0:   # the contract: resume on a relaunch
        path, state, manifest, skipped = store.restore(
            backend, d, state_template(algo, problem, topo, n))
        if path is not None:
            start = manifest["step"]
            if rank == 0:
                say(f"RESUMED {start} skipped {len(skipped)}")
    heartbeat.start()
    heartbeat.report(base=start)

    def on_segment(step, st, history):
        store.save(backend, d, st, step=start + step, metadata={}, replace=False)
        heartbeat.report(checkpoint=start + step)

    kw = dict(segment_every=every, record_every=2, progress=False, comm=backend.comm)
    pace = lambda steps, metrics: time.sleep(0.04)  # 5 paced dispatches per checkpoint interval
    with record_listener(pace):  # so that the test hits the run between two checkpoints
        res = bluefog_dist.run(algo, problem, topo, steps - start, state=state,
                               on_segment=on_segment, **kw)
    ref = bluefog_dist.run(algo, problem, topo, steps, **kw)  # uninterrupted: the oracle
    same = all(np.array_equal(np.asarray(a), np.asarray(b)) and a.dtype == b.dtype
               for a, b in zip(jax.tree_util.tree_leaves(res.params),
                               jax.tree_util.tree_leaves(ref.params)))
    say(f"FINAL {rank} {same}")
""")


def _reader(proc, lines):
    for line in proc.stdout:
        lines.append((time.monotonic(), line.rstrip("\n")))


def _wait(lines, pattern, count, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [(t, m) for t, ln in list(lines) if (m := re.search(pattern, ln))]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {count} x {pattern!r} within {timeout} s:\n" +
                         "\n".join(ln for _, ln in lines)[-4000:])


def _wait_checkpoint(d, beyond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [s for s, _ in sharded.list_sharded(d, complete_only=True)]
        if done and done[0] > beyond:
            return done[0]
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint beyond step {beyond} within {timeout} s")


@pytest.mark.mpi
@pytest.mark.timeout(600)
def test_kill_9_and_sigstop_of_a_rank_restart_and_finish_bit_for_bit(tmp_path):
    script, d, timeout = tmp_path / "train.py", tmp_path / "ck", 4.0
    script.write_text(SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "bluefog_dist.launcher", "-np", "4", "--skip-check",
           "--max-restarts", "2", "--heartbeat-timeout", str(timeout),
           "python", str(script), str(d), "200", "10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT)
    lines, pids = [], []
    threading.Thread(target=_reader, args=(proc, lines), daemon=True).start()
    try:
        first = {int(m[2]): int(m[3]) for _, m in _wait(lines, r"RANK-PID (0) (\d) (\d+)", 4, 300)}
        at_kill = _wait_checkpoint(d, 10, 300)
        os.kill(first[1], signal.SIGKILL)
        second = {int(m[2]): int(m[3]) for _, m in _wait(lines, r"RANK-PID (1) (\d) (\d+)", 4, 300)}
        resumed = int(_wait(lines, r"RESUMED (\d+)", 1, 300)[0][1][1])
        _wait_checkpoint(d, resumed + 10, 300)
        os.kill(second[2], signal.SIGSTOP)
        t_stop = time.monotonic()
        pids = list(first.values()) + list(second.values())
        code = proc.wait(timeout=400)
        time.sleep(0.5)
    finally:
        end_job(proc, pids)
    out = "\n".join(ln for _, ln in lines)
    assert code == 0, out[-5000:]
    assert at_kill <= resumed, (at_kill, resumed)  # resumed from the newest complete checkpoint
    assert "launch 0 failed" in out and "exited with status" in out
    detected = _wait(lines, r"launch 1 failed after [\d.]+ s: rank 2 \(pid \d+\) sent no "
                            r"heartbeat for ([\d.]+) s", 1, 1)[0]
    assert detected[0] - t_stop < timeout + 3, detected[0] - t_stop
    lost = [int(v) for v in re.findall(r"lost work: (\d+) steps", out)]
    assert len(lost) == 2 and all(0 <= v <= 20 for v in lost), lost  # <= 1 interval + 1 dispatch
    resumes = re.findall(r"RESUMED (\d+)", out)
    print(f"MEASURED kill after checkpoint {at_kill}, resumed {resumes}, stop detected "
          f"{detected[0] - t_stop:.1f} s after SIGSTOP (heartbeat age {detected[1][1]} s), "
          f"lost {lost}, load {os.getloadavg()[0]:.1f}")
    assert sorted(re.findall(r"FINAL (\d) (\w+)", out)) == [(str(r), "True") for r in range(4)]
    assert len(re.findall(r"RANK-PID 2 \d", out)) == 4
    assert [p for p in pids if process_alive(p)] == []  # the stopped rank and the others are gone


def test_bluefog_train_resumes_by_itself_on_a_relaunch(tmp_path, monkeypatch):
    """The contract's bluefog-train side: BLUEFOG_RESTART_COUNT >= 1 with --checkpoint-dir
    and --checkpoint-every means --resume once a complete checkpoint exists."""
    import numpy as np

    from bluefog_train.cli import build_parser
    from bluefog_train.startup import agreed_config

    d = tmp_path / "ck"
    raw = vars(build_parser().parse_args(["--checkpoint-dir", str(d), "--checkpoint-every",
                                          "10", "--steps", "40"]))
    monkeypatch.setenv("BLUEFOG_RESTART_COUNT", "1")
    assert agreed_config(dict(raw))["resume"] is False  # failed before its first checkpoint
    infos = [sharded.save_shard(d, 10, r, 2, {"w": np.ones(3, np.float32)}) for r in range(2)]
    assert agreed_config(dict(raw))["resume"] is False  # shards without manifest: not complete
    sharded.write_manifest(d, 10, infos, {})
    assert agreed_config(dict(raw))["resume"] is True
    monkeypatch.setenv("BLUEFOG_RESTART_COUNT", "0")  # a first launch never resumes by itself
    with pytest.raises(ValueError, match="already holds 1 checkpoint"):
        agreed_config(dict(raw))
