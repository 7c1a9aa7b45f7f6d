"""``bluefog-train --config run.toml`` (command-line flags override it) and
``--lr-schedule`` (optax schedules against their closed forms)."""

import json
import math

import numpy as np
import pytest

from bluefog_train.cli import main
from bluefog_train.experiment import make_lr


def test_schedules_match_closed_forms():
    T, w, lr = 100, 10, 0.2
    assert make_lr({"lr": lr, "lr_schedule": "constant", "steps": T}) == lr
    cos = make_lr({"lr": lr, "lr_schedule": "cosine", "steps": T})
    wc = make_lr({"lr": lr, "lr_schedule": "warmup_cosine", "steps": T, "warmup_steps": w})
    for t in (0, 5, 10, 37, 100):
        assert float(cos(t)) == pytest.approx(lr / 2 * (1 + math.cos(math.pi * t / T)), abs=1e-7)
        want = lr * t / w if t < w else lr / 2 * (1 + math.cos(math.pi * (t - w) / (T - w)))
        assert float(wc(t)) == pytest.approx(want, abs=1e-7)


def test_config_file_sets_defaults_and_flags_override(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('agents = 4\nsteps = 20\nrecord-every = 10\nhidden = [8]\nlr = 0.05\n'
                   'lr_schedule = "cosine"\nprogress = false\n')
    out = tmp_path / "r.json"
    assert main(["--config", str(cfg), "--lr", "0.07", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    c = r["config"]
    assert (c["agents"], c["steps"], c["hidden"], c["lr"], c["lr_schedule"]) == (
        4, 20, [8], 0.07, "cosine")
    assert r["history"]["step"] == [0, 10, 20] and np.isfinite(r["history"]["loss"]).all()


def test_config_file_errors_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("stepz = 3\n")
    assert main(["--config", str(bad)]) == 2
    assert "unknown option(s) ['stepz']" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("steps = \n")
    assert main(["--config", str(broken)]) == 2
    assert "cannot be read as TOML" in capsys.readouterr().err
    assert main(["--lr-schedule", "warmup_cosine", "--warmup-steps", "50", "--steps", "50"]) == 2
    assert "--warmup-steps must be smaller than --steps=50" in capsys.readouterr().err
