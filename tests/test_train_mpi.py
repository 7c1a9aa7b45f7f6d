"""bluefog-train under mpiexec: every rank refuses an unusable output together (no hang), and
--resume restores every rank's own shard of the checkpoint."""

import json

import pytest

from bluefog_train import checkpoint as ckpt
from bluefog_train import sharded

pytestmark = pytest.mark.mpi

CLI = ["-c", "import sys; from bluefog_train.cli import main; sys.exit(main())"]
SMALL = ["--backend", "mpi", "--agents", "2", "--hidden", "8", "--no-progress",
         "--record-every", "10"]


def test_mpi_refuses_outputs_on_every_rank(tmp_path):
    from mpi_support import run_mpi

    (tmp_path / "f").write_text("x")
    proc = run_mpi(2, [*CLI, *SMALL, "--steps", "20", "--out", str(tmp_path / "f" / "r.json")],
                   timeout=300)
    assert proc.returncode == 2, proc.stdout
    line = f"--out '{tmp_path}/f/r.json' cannot be created: '{tmp_path}/f' is not a directory"
    assert proc.stdout.count(line) == 1  # agreed by both ranks, printed once (rank 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_mpi_resume_continues_every_rank(tmp_path):
    from mpi_support import assert_mpi_ok, run_mpi

    d, out = tmp_path / "ck", tmp_path / "r.json"
    common = [*CLI, *SMALL, "--checkpoint-dir", str(d), "--checkpoint-every", "20", "--out", str(out)]
    assert_mpi_ok(run_mpi(2, [*common, "--steps", "20"], timeout=600))
    first = json.loads(out.read_text())
    proc = run_mpi(2, [*common, "--steps", "40", "--resume"], timeout=600)
    assert_mpi_ok(proc)
    assert proc.stdout.count("resuming from step 20 (checkpoint ") == 1  # rank 0 says it
    r = json.loads(out.read_text())
    assert r["history"]["step"] == [0, 10, 20, 30, 40]
    assert r["history"]["loss"][:3] == first["history"]["loss"]
    assert r["history"]["loss"][-1] < r["history"]["loss"][0]
    # one shard per rank, committed by a manifest (no single gathered file)
    assert [s for s, _ in sharded.list_sharded(d, complete_only=True)] == [40, 20]
    assert ckpt.list_checkpoints(d) == []


def test_relaunch_replaces_a_checkpoint_whose_write_a_crash_interrupted(tmp_path):
    """A rank killed while the ranks wrote checkpoint 40 leaves ``ckpt-00000040/`` without
    manifest (and, after an elastic shrink, shards of the old size): the relaunch by
    ``bfrun --max-restarts`` resumes from 20 and replaces it (it was never committed), instead
    of refusing it as a checkpoint "ahead" that it would overwrite."""
    import os

    from mpi_support import assert_mpi_ok, run_mpi

    d, out = tmp_path / "ck", tmp_path / "r.json"
    common = [*CLI, *SMALL, "--checkpoint-dir", str(d), "--checkpoint-every", "20", "--out", str(out)]
    assert_mpi_ok(run_mpi(2, [*common, "--steps", "40"], timeout=600))
    done = json.loads(out.read_text())
    leftover = sharded.step_dir(d, 40)
    os.remove(os.path.join(leftover, sharded.MANIFEST))  # the crash came before the commit
    stale = os.path.join(leftover, sharded.shard_name(2, 3))  # a 3-rank launch's shard
    with open(stale, "wb") as f:
        f.write(b"partial")
    proc = run_mpi(2, [*common, "--steps", "40"], timeout=600, env={"BLUEFOG_RESTART_COUNT": "1"})
    assert_mpi_ok(proc)
    assert proc.stdout.count("resuming from step 20 (checkpoint ") == 1
    assert f"skipping checkpoint {leftover}: " in proc.stdout and "incomplete" in proc.stdout
    assert [s for s, _ in sharded.list_sharded(d, complete_only=True)] == [40, 20]
    assert sorted(os.listdir(leftover)) == [sharded.MANIFEST, sharded.shard_name(0, 2),
                                            sharded.shard_name(1, 2)]
    assert json.loads(out.read_text())["history"]["loss"] == done["history"]["loss"]
