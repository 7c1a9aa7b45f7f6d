"""bluefog-train refuses unusable outputs and foreign checkpoints before any step, rejects
non-finite hyper-parameters, derives a record interval that fits the checkpoints, compiles
once per run, and says where it resumes from. Every refusal changes no file."""

import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from bluefog_train import checkpoint as ckpt
from bluefog_train import training
from bluefog_train.cli import build_parser, main
from bluefog_train.config import default_record_every, validate_config

SMALL = ["--agents", "4", "--hidden", "8", "--no-progress"]


def snapshot(root):
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames + files:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = (hashlib.sha256(open(p, "rb").read()).hexdigest()
                                             if os.path.isfile(p) else "dir")
    return out


def without_history(src, dst):
    """Copy checkpoint ``src`` to ``dst`` with a step-300 manifest lacking the metadata's
    history, hashes updated (a well-formed file the training run cannot use)."""
    import io
    import zipfile

    with zipfile.ZipFile(src) as z:
        m = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(np.load(io.BytesIO(m["__manifest__.npy"])).tobytes().decode())
    manifest["step"], manifest["metadata"] = 300, {"config": manifest["metadata"]["config"]}
    blob = json.dumps(manifest).encode()
    for name, data in (("__manifest__.npy", blob),
                       ("__manifest_sha256__.npy", hashlib.sha256(blob).hexdigest().encode())):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.frombuffer(data, np.uint8))
        m[name] = buf.getvalue()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in m.items():
            z.writestr(name, data)
    return dst


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a refused run gets as far as building (let alone compiling) anything."""
    def boom(cfg):
        raise AssertionError("the run was not refused before building the experiment")

    monkeypatch.setattr(training, "make_experiment", boom)


def refusal(tmp_path, capsys, args):
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    rc = main(["--steps", "20", *SMALL, *args])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2 and elapsed < 5, (rc, elapsed, err)
    assert len(err.strip().splitlines()) == 1  # one clear line
    assert snapshot(tmp_path) == before  # nothing created or changed
    return err


@pytest.mark.parametrize("make, args, message", [
    (lambda t: (t / "adir").mkdir(), ["--out", "{t}/adir"], "--out '{t}/adir' is a directory; expected a file name"),
    (lambda t: (t / "f").write_text("x"), ["--out", "{t}/f/sub/r.json"],
     "--out '{t}/f/sub/r.json' cannot be created: '{t}/f' is not a directory"),
    (lambda t: (t / "f").write_text("x"), ["--plot", "{t}/f/r.png"], "--plot '{t}/f/r.png' cannot be created"),
    (lambda t: (t / "f").write_text("x"), ["--checkpoint-dir", "{t}/f", "--checkpoint-every", "10"],
     "--checkpoint-dir '{t}/f' exists and is not a directory"),
    (lambda t: None, ["--out", "/proc/bluefog-none/r.json"],
     "--out '/proc/bluefog-none/r.json' cannot be created: '/proc' is not writable"),
    (lambda t: None, ["--out", "{t}/same", "--plot", "{t}/same"], "--out and --plot name the same file"),
])
def test_unusable_output_refused_before_training(tmp_path, capsys, no_training, make, args, message):
    make(tmp_path)
    err = refusal(tmp_path, capsys, [a.format(t=tmp_path) for a in args])
    assert message.format(t=tmp_path) in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_refused(tmp_path, capsys, no_training):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        err = refusal(tmp_path, capsys, ["--out", f"{ro}/r.json"])
    finally:
        ro.chmod(0o755)
    assert "is not writable" in err


def test_cli_subprocess_refuses_unwritable_out_fast(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "bluefog-train")
    t0 = time.perf_counter()
    proc = subprocess.run([exe, "--out", "/proc/bluefog-none/r.json", "--steps", "10"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is not writable" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert time.perf_counter() - t0 < 60  # import + check only; no compilation


def test_foreign_checkpoints_refused_then_replaced_with_overwrite(tmp_path, capsys, monkeypatch):
    d = tmp_path / "ck"
    other = ckpt.save(d, {"w": np.ones((4, 3), np.float32)}, step=15, metadata={"run": "other"})
    with monkeypatch.context() as m:
        m.setattr(training, "make_experiment", lambda cfg: 1 / 0)
        err = refusal(tmp_path, capsys, ["--checkpoint-dir", str(d), "--checkpoint-every", "10"])
    assert "already holds 1 checkpoint(s) of another run (ckpt-00000015.npz)" in err
    assert "Pass --resume to continue that run, choose another --checkpoint-dir, or pass --overwrite" in err
    assert main(["--steps", "20", *SMALL, "--checkpoint-dir", str(d), "--checkpoint-every", "10",
                 "--keep", "5", "--overwrite"]) == 0
    assert not os.path.exists(other)
    assert [s for s, _ in ckpt.list_checkpoints(d)] == [20, 10]


@pytest.mark.parametrize("args, exc, message", [
    (["--lr", "inf"], ValueError, "--lr must be a positive finite float; got inf"),
    (["--lr", "nan"], ValueError, "--lr must be a positive finite float; got nan"),
    (["--l2", "nan"], ValueError, r"--l2 must be a finite real number in \[0, inf\]; got nan"),
    (["--l2", "-1"], ValueError, r"--l2 must be a finite real number in \[0, inf\]; got -1.0"),
    (["--momentum", "1"], ValueError, r"--momentum must be in \[0, 1\)"),
    (["--alpha", "inf"], ValueError, r"--alpha must be a finite real number in \(0, inf\]; got inf"),
    (["--steps", "0"], ValueError, "--steps must be an integer >= 1; got 0"),
    (["--seed", "-1"], ValueError, r"--seed must be an int in \[0, 4294967295\]"),
])
def test_hyper_parameters_checked_at_the_boundary(args, exc, message, capsys):
    cfg = vars(build_parser().parse_args(["--agents", "4", *args]))
    with pytest.raises(exc, match=message):
        validate_config(cfg)
    assert main(["--agents", "4", "--no-progress", *args]) == 2
    assert message.replace("\\", "") in capsys.readouterr().err


def test_record_every_default_fits_checkpoints():
    cfg = validate_config(vars(build_parser().parse_args(
        ["--steps", "400", "--checkpoint-every", "100", "--checkpoint-dir", "ck"])))
    assert cfg["record_every"] == 10 and 100 % cfg["record_every"] == 0
    assert default_record_every(400) == 8 and default_record_every(1000, 64) == 16
    for steps in (7, 50, 400, 999, 10**6):
        for every in (1, 3, 64, 100, 997):
            r = default_record_every(steps, every)
            assert every % r == 0  # always compatible
            target = max(1, steps // 50)
            assert all(abs(d - target) >= abs(r - target) for d in range(1, every + 1) if every % d == 0)
    with pytest.raises(ValueError, match="Pass a --record-every that divides 100, or leave it out"):
        validate_config({**cfg, "record_every": 8, "record_every_derived": None})


def test_one_engine_call_per_run_and_resume_says_where(tmp_path, capsys, monkeypatch):
    import bluefog_sim

    calls = []
    real = bluefog_sim.run

    def counting(*args, **kw):
        calls.append(kw["segment_every"])
        return real(*args, **kw)

    monkeypatch.setattr(bluefog_sim, "run", counting)
    d, out = str(tmp_path / "ck"), tmp_path / "r.json"
    common = [*SMALL, "--checkpoint-dir", d, "--checkpoint-every", "50", "--out", str(out)]
    assert main(["--steps", "100", *common]) == 0
    assert calls == [50]  # one call, two segments: one compiled program
    first = json.loads(out.read_text())
    assert first["config"]["record_every"] == 2  # divisor of 50 nearest 100 // 50
    # a newer checkpoint whose file is sound but whose metadata lacks the history: skipped
    crafted = without_history(f"{d}/ckpt-00000100.npz", f"{d}/ckpt-00000300.npz")
    before = snapshot(tmp_path / "ck")
    capsys.readouterr()
    assert main(["--steps", "200", "--resume", *common]) == 0  # default would now be 5
    assert calls == [50, 50]
    o = capsys.readouterr()
    assert f"skipping checkpoint {crafted}: its metadata lacks the run's config/history" in o.err
    assert f"resuming from step 100 (checkpoint {d}/ckpt-00000100.npz)" in o.out
    assert snapshot(tmp_path / "ck")["ckpt-00000300.npz"] == before["ckpt-00000300.npz"]
    h = json.loads(out.read_text())["history"]
    assert h["step"] == list(range(0, 201, 2))  # the checkpoint's record interval continues
    assert h["loss"][:51] == first["history"]["loss"]


def test_failed_checkpoint_write_is_one_line_and_keeps_the_earlier(tmp_path, capsys, monkeypatch):
    real = ckpt.save

    def full_disk(directory, state, *, step, **kw):
        if step == 20:
            raise OSError(28, "No space left on device")
        return real(directory, state, step=step, **kw)

    monkeypatch.setattr(ckpt, "save", full_disk)
    d = tmp_path / "ck"
    assert main(["--steps", "30", *SMALL, "--checkpoint-dir", str(d), "--checkpoint-every", "10"]) == 1
    err = capsys.readouterr().err
    assert "bluefog-train: error: writing a checkpoint failed" in err and "No space left on device" in err
    assert [s for s, _ in ckpt.list_checkpoints(d)] == [10]
    assert ckpt.latest(d).endswith("ckpt-00000010.npz")
