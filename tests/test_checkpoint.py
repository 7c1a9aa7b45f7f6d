"""Atomic checkpoints: round trip, pruning, crashes mid-write, damaged files, bitwise resume."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from bluefog_train import checkpoint as ckpt
from bluefog.engine import CallbackError
from bluefog_train.cli import build_parser
from bluefog_train.training import train


def state(seed=0):
    rng = np.random.default_rng(seed)
    return {"params": {"w": rng.normal(size=(4, 3, 2)).astype(np.float32),
                       "b": rng.normal(size=(4, 2)).astype(np.float32)},
            "count": np.full((4,), seed, np.int32)}


def assert_tree_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)


def test_round_trip_bitwise_and_manifest(tmp_path):
    s = state(1)
    path = ckpt.save(tmp_path, s, step=7, metadata={"note": "hi"})
    assert os.path.basename(path) == "ckpt-00000007.npz"
    got, manifest = ckpt.load(path, state(2))
    assert_tree_equal(got, s)
    assert manifest["step"] == 7 and manifest["metadata"] == {"note": "hi"}
    assert [leaf["path"] for leaf in manifest["leaves"]] == ["['count']", "['params']['b']", "['params']['w']"]
    # a ShapeDtypeStruct template works as well (what --resume uses)
    spec = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), s)
    assert_tree_equal(ckpt.load(path, spec)[0], s)
    # the file is a plain zip of .npy members: readable with pickle disabled
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(bytes(z["__manifest__"]).decode())["format"] == ckpt.FORMAT


def test_prunable_keeps_the_newest_and_the_newest_finite():
    w = [("a", True), ("b", True), ("c", False), ("d", False)]
    assert ckpt.prunable(w, 2) == ["a"]  # b is the newest finite one: never pruned
    assert ckpt.prunable(w[:2], 2) == [] and ckpt.prunable(w[:2], 1) == ["a"]
    assert ckpt.prunable([("a", True), ("b", True), ("c", True)], 2) == ["a"]
    assert ckpt.prunable([("a", False), ("b", False)], 1) == ["a"]  # no finite one to protect


def test_save_never_replaces_an_existing_checkpoint(tmp_path):
    path = ckpt.save(tmp_path, state(1), step=10)
    before = open(path, "rb").read()
    with pytest.raises(FileExistsError, match="already exists and was not written by this run"):
        ckpt.save(tmp_path, state(2), step=10)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt-00000010.npz"]  # its temp file removed
    ckpt.save(tmp_path, state(2), step=10, replace=True)
    assert_tree_equal(ckpt.load(path, state(0))[0], state(2))


def test_exception_mid_write_keeps_previous(tmp_path, monkeypatch):
    ckpt.save(tmp_path, state(1), step=10)

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(tmp_path, state(2), step=20)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-00000010.npz"]  # temp file removed too
    got, m = ckpt.load(ckpt.latest(tmp_path), state(0))
    assert m["step"] == 10
    assert_tree_equal(got, state(1))


def test_process_killed_before_rename_keeps_previous(tmp_path):
    """A real crash: the child process dies (os._exit) after writing the temp file and
    before it is linked into place; the good checkpoint stays the latest. The orphaned temp
    file is another process's: a later save leaves it alone (readers ignore it)."""
    ckpt.save(tmp_path, state(1), step=10)
    child = textwrap.dedent(f"""
        import os, numpy as np
        from bluefog_train import checkpoint as ckpt
        ckpt.os.replace = ckpt.os.link = lambda *a: os._exit(3)
        s = {{"count": np.zeros(4, np.int32), "params": {{"b": np.ones((4, 2), np.float32),
             "w": np.ones((4, 3, 2), np.float32)}}}}
        ckpt.save({str(tmp_path)!r}, s, step=20)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120)
    assert proc.returncode == 3, proc.stderr.decode()
    names = sorted(os.listdir(tmp_path))
    assert "ckpt-00000010.npz" in names and "ckpt-00000020.npz" not in names
    assert any(n.endswith(".tmp") for n in names)  # the orphaned temp file
    assert ckpt.latest(tmp_path).endswith("ckpt-00000010.npz")
    orphan = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    ckpt.save(tmp_path, state(3), step=30)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == orphan
    assert ckpt.latest(tmp_path).endswith("ckpt-00000030.npz")


def test_damaged_newest_is_skipped(tmp_path):
    ckpt.save(tmp_path, state(1), step=10)
    good = ckpt.save(tmp_path, state(2), step=20)
    # truncated file (e.g. copied half-way by hand)
    with open(good, "rb") as f:
        blob = f.read()
    with open(os.path.join(tmp_path, "ckpt-00000030.npz"), "wb") as f:
        f.write(blob[: len(blob) // 2])
    with pytest.warns(RuntimeWarning, match="skipping damaged checkpoint"):
        assert ckpt.latest(tmp_path) == good
    # a flipped bit inside a leaf is caught by the checksum
    s = state(2)
    s["params"]["w"][0, 0, 0] += 1
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    idx = [leaf["path"] for leaf in json.loads(bytes(arrays["__manifest__"]).decode())["leaves"]].index("['params']['w']")
    arrays[f"leaf_{idx:05d}"] = s["params"]["w"]
    bad = os.path.join(tmp_path, "ckpt-00000040.npz")
    np.savez(bad, **arrays)
    with pytest.raises(ckpt.CheckpointError, match=r"leaf \['params'\]\['w'\] fails its shape/dtype/checksum"):
        ckpt.load(bad, state(0))


def test_refuses_pickles_and_mismatched_state(tmp_path):
    bad = os.path.join(tmp_path, "ckpt-00000001.npz")
    blob = json.dumps({"format": ckpt.FORMAT, "version": ckpt.VERSION, "step": 1, "metadata": {},
                       "leaves": [{"path": "['x']", "shape": [1], "dtype": "|O", "sha256": ""}]}).encode()
    np.savez(bad, leaf_00000=np.array([{"evil": 1}], dtype=object),
             __manifest__=np.frombuffer(blob, np.uint8),
             __manifest_sha256__=np.frombuffer(hashlib.sha256(blob).hexdigest().encode(), np.uint8))
    with pytest.raises(ckpt.CheckpointError, match=r"leaf 0 has dtype '\|O' \(Python objects\)"):
        ckpt.load(bad, {"x": np.zeros(1)})
    path = ckpt.save(tmp_path, state(1), step=5)
    with pytest.raises(ckpt.CheckpointError, match="state structure .* differs"):
        ckpt.load(path, {"params": state(1)["params"]})
    other = state(1)
    other["params"]["w"] = np.zeros((8, 3, 2), np.float32)
    with pytest.raises(ckpt.CheckpointError, match=r"leaf \['params'\]\['w'\] has shape \(4, 3, 2\)"):
        ckpt.load(path, other)


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="step must be a non-negative int; got -1"):
        ckpt.save(tmp_path, state(), step=-1)
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        ckpt.save(tmp_path, state(), step=1, metadata={"a": np.zeros(2)})
    with pytest.raises(TypeError, match="directory must be a path"):
        ckpt.save(3, state(), step=1)
    assert ckpt.latest(os.path.join(tmp_path, "missing")) is None


# --------------------------------------------------------------------------------------
# resume through the training runner: interrupted-and-resumed == uninterrupted, bit for bit
# --------------------------------------------------------------------------------------
def cfg(*args):
    return vars(build_parser().parse_args(["--agents", "8", "--record-every", "10",
                                           "--optimizer", "adam", "--lr", "0.01",
                                           *args]))


def test_crash_mid_write_then_resume_is_bitwise_identical(tmp_path, monkeypatch):
    ref = train(cfg("--steps", "40"), progress=False)  # no checkpoints, one segment

    real_save = ckpt.save

    def crashing_save(directory, st, *, step, **kw):
        if step == 40:  # die while writing the second (final) checkpoint
            monkeypatch.setattr(ckpt.np, "savez", lambda f, **a: (f.write(b"PK partial"), 1 / 0))
        return real_save(directory, st, step=step, **kw)

    monkeypatch.setattr(ckpt, "save", crashing_save)
    d = str(tmp_path / "ck")
    with pytest.raises(CallbackError, match="ZeroDivisionError"):
        train(cfg("--steps", "40", "--checkpoint-dir", d, "--checkpoint-every", "20"), progress=False)
    monkeypatch.undo()
    assert [s for s, _ in ckpt.list_checkpoints(d)] == [20]

    res = train(cfg("--steps", "40", "--checkpoint-dir", d, "--checkpoint-every", "20", "--resume"),
                progress=False)
    assert res["resumed_from_step"] == 20
    assert_tree_equal(res["_final_params"], ref["_final_params"])
    assert res["history"] == ref["history"]
    assert [s for s, _ in ckpt.list_checkpoints(d)] == [40, 20]
    # resuming a finished run runs nothing and reports the checkpoint
    again = train(cfg("--steps", "40", "--checkpoint-dir", d, "--checkpoint-every", "20", "--resume"),
                  progress=False)
    assert again["timing"]["steps_this_invocation"] == 0 and again["history"] == ref["history"]
    assert_tree_equal(again["_final_params"], ref["_final_params"])


def test_resume_refuses_another_configuration(tmp_path):
    d = str(tmp_path / "ck")
    train(cfg("--steps", "20", "--checkpoint-dir", d, "--checkpoint-every", "20"), progress=False)
    with pytest.raises(ValueError, match=r"different configuration \(differs in \['lr'\]\)"):
        train({**cfg("--steps", "40", "--checkpoint-dir", d, "--resume"), "lr": 0.02}, progress=False)
    with pytest.raises(FileNotFoundError, match="no valid checkpoint"):
        train(cfg("--steps", "40", "--checkpoint-dir", str(tmp_path / "empty"), "--resume"),
              progress=False)
