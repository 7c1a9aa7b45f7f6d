"""A diverging run stops at the first non-finite record with a non-zero exit and keeps its
last finite checkpoint; --allow-nonfinite goes on but never prunes the newest finite
checkpoint; SIGTERM stops the run at a checkpoint that a resume continues from."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bluefog_train import checkpoint as ckpt
from bluefog_train.cli import main

# SGD on f + (l2/2)||x||^2 with lr * l2 = 3: the weights grow by about 2x per step, so the
# loss overflows float32 after a few dozen steps (issue 16's reproduction, made small).
DIVERGING = ["--agents", "4", "--hidden", "8", "--no-progress", "--optimizer", "sgd", "--lr", "3",
             "--l2", "1", "--steps", "100", "--checkpoint-every", "20", "--record-every", "10"]


def finite(path):
    with np.load(path, allow_pickle=False) as z:
        return all(np.isfinite(z[k]).all() for k in z.files if k.startswith("leaf_")
                   and np.issubdtype(z[k].dtype, np.floating))


def test_divergence_stops_and_keeps_the_last_finite_checkpoint(tmp_path, capsys):
    d, out = tmp_path / "ck", tmp_path / "r.json"
    rc = main([*DIVERGING, "--keep", "1", "--checkpoint-dir", str(d), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3
    assert "training diverged at step" in err and "Likely cause: the step size" in err
    step = int(err.split("training diverged at step ")[1].split(":")[0])
    assert 0 < step < 100 and step % 10 == 0  # within one record interval of the first NaN
    saved = [s for s, _ in ckpt.list_checkpoints(d)]
    assert saved and max(saved) < step  # nothing written at or after the divergence
    last = os.path.join(d, f"ckpt-{max(saved):08d}.npz")
    assert f"The last finite checkpoint {last} is kept" in err and finite(last)
    assert not out.exists()


def test_allow_nonfinite_goes_on_and_keeps_the_newest_finite(tmp_path, capsys):
    d, out = tmp_path / "ck", tmp_path / "r.json"
    assert main([*DIVERGING, "--keep", "1", "--checkpoint-dir", str(d), "--out", str(out),
                 "--allow-nonfinite"]) == 0
    assert "warning: the loss is not finite from step" in capsys.readouterr().err
    h = json.loads(out.read_text())["history"]
    assert h["step"][-1] == 100 and not np.isfinite(h["loss"][-1]) and np.isfinite(h["loss"][0])
    paths = [p for _, p in ckpt.list_checkpoints(d)]
    assert len(paths) == 2 and paths[0].endswith("ckpt-00000100.npz")  # newest + newest finite
    assert not finite(paths[0]) and finite(paths[1])


@pytest.mark.timeout(600)
def test_sigterm_stops_at_a_checkpoint_and_resume_continues(tmp_path):
    d = tmp_path / "ck"
    exe = os.path.join(os.path.dirname(sys.executable), "bluefog-train")
    args = [exe, "--agents", "4", "--hidden", "8", "--no-progress", "--steps", "200000",
            "--record-every", "10", "--checkpoint-every", "50", "--checkpoint-dir", str(d)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 400
        while not ckpt.list_checkpoints(d) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert ckpt.list_checkpoints(d), "no checkpoint appeared"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received; stopping after the next checkpoint" in err
    stopped = int(err.split("stopped by SIGTERM at step ")[1].split()[0])
    path = os.path.join(d, f"ckpt-{stopped:08d}.npz")
    assert f"(checkpoint {path}); continue with --resume" in err
    assert ckpt.latest(d) == path and stopped < 200000
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]  # stopped between writes
    out = tmp_path / "r.json"
    assert main(["--agents", "4", "--hidden", "8", "--no-progress", "--steps", str(stopped + 50),
                 "--record-every", "10", "--checkpoint-every", "50", "--checkpoint-dir", str(d),
                 "--resume", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["resumed_from_step"] == stopped and r["history"]["step"][-1] == stopped + 50
