"""Sharded checkpoints (one shard per MPI rank, manifest last): never a partial or tampered one.

Oracles: the values written are a closed-form function of (step, rank), so whatever is
loaded is compared with that formula, not with the writer's output; "newest complete" is
checked against the steps the writer announced *after* each manifest was on disk.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from bluefog_train import sharded, store
from bluefog_train.backends import SimBackend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 4


def value(step: int, rank: int) -> dict:
    """The state rank ``rank`` writes at ``step`` (the oracle)."""
    return {"w": np.full((32, 32), 10.0 * step + rank, np.float32),
            "count": np.arange(257, dtype=np.int64) * step + rank}


def template(n=N):
    return {"count": jax.ShapeDtypeStruct((n, 257), np.int64),
            "w": jax.ShapeDtypeStruct((n, 32, 32), np.float32)}


def write(directory, step, n=N):
    infos = [sharded.save_shard(directory, step, r, n, value(step, r)) for r in range(n)]
    return sharded.write_manifest(directory, step, infos, {"step": step})


def assert_is_step(state, step, n=N):
    for r in range(n):
        want = value(step, r)
        assert np.array_equal(state["w"][r], want["w"]) and state["w"].dtype == np.float32
        assert np.array_equal(state["count"][r], want["count"])


def test_round_trip_each_rank_reads_its_own_shard(tmp_path):
    path = write(tmp_path, 3)
    assert sorted(os.listdir(path)) == ["manifest.json"] + [sharded.shard_name(r, N) for r in range(N)]
    for r in range(N):
        local = {"count": jax.ShapeDtypeStruct((257,), np.int64),
                 "w": jax.ShapeDtypeStruct((32, 32), np.float32)}
        got, manifest = sharded.load_shard(path, local, r)
        assert manifest["step"] == 3 and manifest["metadata"] == {"step": 3}
        assert np.array_equal(got["w"], value(3, r)["w"])
    stacked, _ = sharded.load_stacked(path, template())
    assert_is_step(stacked, 3)


def test_tampered_or_partial_checkpoints_are_refused_naming_the_file(tmp_path):
    for step in (1, 2, 3, 4):
        write(tmp_path, step)
    tampered = os.path.join(sharded.step_dir(tmp_path, 4), sharded.shard_name(1, N))
    with open(tampered, "r+b") as f:  # flip one byte inside the data, size unchanged
        f.seek(os.path.getsize(tampered) - 40)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    missing = os.path.join(sharded.step_dir(tmp_path, 3), sharded.shard_name(2, N))
    os.remove(missing)
    os.remove(os.path.join(sharded.step_dir(tmp_path, 2), sharded.MANIFEST))  # crash before commit
    path, state, manifest, skipped = store.restore(SimBackend(), tmp_path, template())
    assert path == sharded.step_dir(tmp_path, 1) and manifest["step"] == 1
    assert_is_step(state, 1)
    reasons = dict(skipped)
    assert [p for p, _ in skipped] == [sharded.step_dir(tmp_path, s) for s in (4, 3, 2)]
    assert tampered in reasons[sharded.step_dir(tmp_path, 4)]
    assert "SHA-256 does not match" in reasons[sharded.step_dir(tmp_path, 4)]
    assert missing in reasons[sharded.step_dir(tmp_path, 3)]
    assert "partial" in reasons[sharded.step_dir(tmp_path, 3)]
    assert "incomplete" in reasons[sharded.step_dir(tmp_path, 2)]


def test_manifest_edit_and_wrong_world_size_are_refused(tmp_path):
    path = write(tmp_path, 5)
    mpath = os.path.join(path, sharded.MANIFEST)
    text = open(mpath).read()
    with open(mpath, "w") as f:
        f.write(text.replace('"step": 5', '"step": 6', 1))
    with pytest.raises(sharded.CheckpointError, match="does not match its SHA-256"):
        sharded.read_manifest(path)
    path = write(tmp_path, 7)
    with pytest.raises(sharded.CheckpointError, match="has 4 shards but the run has \\[3\\] agents"):
        sharded.load_stacked(path, template(3))


def test_save_shard_refuses_bad_arguments_and_complete_checkpoints(tmp_path):
    write(tmp_path, 1)
    with pytest.raises(FileExistsError, match="complete checkpoint"):
        sharded.save_shard(tmp_path, 1, 0, N, value(1, 0))
    with pytest.raises(ValueError, match="rank and size"):
        sharded.save_shard(tmp_path, 2, 4, N, value(2, 0))
    with pytest.raises(ValueError, match="step must be a non-negative int"):
        sharded.save_shard(tmp_path, -1, 0, N, value(2, 0))


WRITER = textwrap.dedent("""
    import sys, types
    import numpy as np
    pkg = types.ModuleType("bluefog_train")       # the writer alone: no JAX, no CLI
    pkg.__path__ = [sys.argv[1] + "/bluefog_train"]
    sys.modules["bluefog_train"] = pkg
    from bluefog_train import sharded
    directory, step, n = sys.argv[2], int(sys.argv[3]), 4
    def value(step, rank):
        return {"w": np.full((32, 32), 10.0 * step + rank, np.float32),
                "count": np.arange(257, dtype=np.int64) * step + rank}
    print("READY", flush=True)
    while True:
        infos = [sharded.save_shard(directory, step, r, n, value(step, r)) for r in range(n)]
        sharded.write_manifest(directory, step, infos, {"step": step})
        print("COMMITTED", step, flush=True)
        for old, path in sharded.list_sharded(directory):
            if old < step - 1:
                sharded.remove(path)
        step += 1
""")


def _newest_complete(directory):
    """The newest checkpoint whose manifest exists, fully verified (raises if it does not
    verify: a manifest is only ever written after its shards)."""
    for step, path in sharded.list_sharded(directory, complete_only=True):
        stacked, manifest = sharded.load_stacked(path, template())
        return step, stacked
    return None, None


@pytest.mark.timeout(240)
def test_twenty_random_kills_during_writes_never_leave_a_bad_newest(tmp_path):
    assert "jax" not in subprocess.run(
        [sys.executable, "-c", WRITER.split("print(")[0] + "print(sorted(sys.modules))",
         ROOT, str(tmp_path), "1"], capture_output=True, text=True, timeout=60).stdout.split("'")
    rng = random.Random(11)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    d = tmp_path / "ck"
    committed, kills_mid_write = 0, 0
    for _ in range(20):
        start = (_newest_complete(d)[0] or 0) + 1
        proc = subprocess.Popen([sys.executable, str(script), ROOT, str(d), str(start)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        out = proc.stdout.read()
        proc.wait()
        steps = [int(line.split()[1]) for line in out.splitlines() if line.startswith("COMMITTED")]
        committed = max([committed] + steps)
        newest, stacked = _newest_complete(d)
        if committed == 0:
            assert newest in (None, 1)
        else:  # the manifest of committed + 1 may be on disk before its COMMITTED line
            assert newest in (committed, committed + 1), (newest, committed)
        if newest is not None:
            assert_is_step(stacked, newest)
        partial = [s for s, _ in sharded.list_sharded(d) if s > (newest or 0)]
        kills_mid_write += bool(partial) or any(n.startswith(".tmp-") for _, p in
                                                 sharded.list_sharded(d) for n in os.listdir(p))
    assert committed >= 5  # the writer made progress
    assert kills_mid_write >= 5, kills_mid_write  # and many kills hit a write in flight


def test_a_fresh_run_refuses_another_runs_committed_sharded_checkpoint(tmp_path):
    from bluefog_train.paths import output_problems

    cfg = {"out": None, "plot": None, "checkpoint_dir": str(tmp_path), "checkpoint_every": 5,
           "resume": False, "overwrite": False}
    infos = [sharded.save_shard(tmp_path, 10, r, N, value(10, r)) for r in range(N)]
    assert output_problems(cfg) == []  # shards without manifest: a crash's leftovers, reusable
    sharded.write_manifest(tmp_path, 10, infos, {})
    assert "already holds 1 checkpoint(s) of another run (ckpt-00000010)" in output_problems(cfg)[0]
