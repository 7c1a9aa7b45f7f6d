"""``tools/ulfm_probe.py``: the ULFM check is reproducible and always ends with a verdict.

Oracles: the probe's own per-launch lines against its verdict line (a verdict that says the
survivors continued must name a launch whose survivors printed ``CONTINUED``, and the
reverse), the rank-side report of every rank under ``mpiexec -n 3`` (one line per ULFM
function and rank, and the victim's line), and ``argparse``'s refusal of a bad timeout.
Whatever the MPI library, nothing may hang: every launch has a timeout.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mpi_support import run_mpi

ROOT = Path(__file__).resolve().parents[1]
PROBE = str(ROOT / "tools" / "ulfm_probe.py")

pytestmark = pytest.mark.mpi


def test_probe_runs_three_launches_and_prints_a_consistent_verdict():
    proc = subprocess.run([sys.executable, PROBE, "--timeout", "60", "--step-timeout", "5"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    names = ("default", "-disable-auto-cleanup", "-disable-auto-cleanup + MPIR_CVAR_ENABLE_FT=1")
    lines = {n: [ln for ln in out.splitlines() if ln.startswith(n + ":")] for n in names}
    assert all(len(v) >= 1 for v in lines.values()), out
    verdict = [ln for ln in out.splitlines() if ln.startswith("VERDICT: ")]
    assert len(verdict) == 1, out
    continued = [n for n in names if "CONTINUED" in lines[n][-1]]
    if continued:
        assert "survivors of kill -9 continued under: " + "; ".join(continued) in verdict[0]
    else:
        assert "could NOT continue under any configuration tried" in verdict[0], out
    assert re.search(r"ULFM API that runs on a healthy communicator: [\w, ]+ \(not: [\w, ]+\)",
                     verdict[0]), verdict
    print(out)


def test_rank_side_reports_every_function_on_every_rank():
    proc = run_mpi(3, [PROBE, "--step-timeout", "5"], timeout=120)
    out = proc.stdout
    for name in ("Shrink", "Agree", "Revoke", "Get_failed"):
        found = sorted(re.findall(rf"^API (\d) {name}: (?:present|absent)", out, re.M))
        assert found == ["0", "1", "2"], (name, out[-3000:])
    assert re.search(r"^LIBRARY .+; mpi4py [\d.]+; 3 ranks$", out, re.M), out[-3000:]
    assert re.search(r"^VICTIM 2 killed at [\d.]+$", out, re.M), out[-3000:]


def test_bad_timeouts_are_refused():
    proc = subprocess.run([sys.executable, PROBE, "--timeout", "0"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "--timeout and --step-timeout must be > 0; got 0.0, 10.0" in proc.stderr
