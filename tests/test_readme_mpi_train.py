"""The README's multi-rank training command, run exactly as written (progress bar on).

It used to crash on rank 0 at step 20 ("Execution supplied 12 arguments but compiled program
expected 13") and leave ranks 1-3 blocked forever: the progress display changed rank 0's
dispatch plan, and a compiled mpi4jax program failed on its second call. The command is taken
from README.md (so the test breaks if the README drifts), run in a fresh shell with the
project's venv activated, under a timeout that kills the whole process group (a hang fails).
"""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.mpi, pytest.mark.slow]


def _readme_command() -> str:
    text = (ROOT / "README.md").read_text()
    lines = [ln.split("#")[0].strip() for ln in text.splitlines()
             if "bfrun -np 4" in ln and "bluefog-train" in ln and "--backend mpi" in ln]
    assert lines, "README.md no longer shows the `bfrun -np 4 ... bluefog-train --backend mpi` command"
    return lines[0]


def test_readme_mpi_training_command_finishes_with_progress(tmp_path):
    command = _readme_command()
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv)  # commands written as .venv/bin/... work here too
    script = f"source {venv}/bin/activate && {command}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"`{command}` hung (killed after 600 s); output:\n{out[-4000:]}")
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{out[-4000:]}"
    assert re.search(r"\|\s*200/200", out), f"no progress bar reaching 200/200:\n{out[-3000:]}"
    out_file = re.search(r"--out\s+(\S+)", command).group(1)
    results = json.loads((tmp_path / out_file).read_text())
    assert results["history"]["step"][-1] == 200
    assert results["config"]["agents"] == 4
    assert results["final"]["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
