"""Spawn ``mpiexec`` from a normal pytest run (reusable by every test file).

``run_mpi(n, args, timeout)`` launches ``mpiexec -n n <python> <args...>`` with the venv's
MPI, in its own process group (with MPICH's yield settings when ranks outnumber cores, as
``bfrun`` does), and returns the completed process (stdout and stderr merged
into ``.stdout``). On timeout the whole group is killed and ``MpiTimeout`` is raised with the
output so far, so a deadlock fails the test instead of hanging CI.

Example::

    from mpi_support import run_mpi, assert_mpi_ok
    proc = run_mpi(4, ["-m", "pytest", "tests/mpi", "-q"], timeout=300)
    assert_mpi_ok(proc)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "mpiexec_path", "run_mpi", "assert_mpi_ok", "MpiTimeout"]

ROOT = Path(__file__).resolve().parents[1]


class MpiTimeout(AssertionError):
    """An mpiexec run exceeded its timeout (a hang); carries the output collected so far."""


def mpiexec_path() -> str:
    """The ``mpiexec`` next to the running interpreter (the venv's MPICH wheel), else the
    one on ``PATH``."""
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    found = shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError(
            "mpiexec not found next to the Python interpreter nor on PATH; run "
            "tools/setup_env.sh (it installs the mpich wheel into .venv).")
    return found


def run_mpi(n: int, args: list[str], timeout: float, *, env: dict | None = None,
            mpiexec_args: list[str] | None = None, python: str | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run ``mpiexec -n n [mpiexec_args] python args...``; kill the group after ``timeout``.

    Parameters
    ----------
    n : int
        Number of ranks.
    args : list of str
        Arguments of the Python interpreter (script path or ``-m module ...``).
    timeout : float
        Seconds before the whole process group is killed and :class:`MpiTimeout` raised.
    env : dict, optional
        Extra environment variables (added to a copy of ``os.environ``).
    """
    full_env = dict(os.environ)
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(ROOT / "tests")] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
    from bluefog_dist.launcher import oversubscription_env

    for k, v in oversubscription_env(int(n)).items():  # MPICH: yield instead of busy-polling
        full_env.setdefault(k, v)
    if env:
        full_env.update(env)
    cmd = [mpiexec_path(), "-n", str(int(n)), *(mpiexec_args or []),
           python or sys.executable, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=full_env, cwd=str(cwd or ROOT), start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise MpiTimeout(f"{' '.join(cmd)} did not finish within {timeout}s (hang?). "
                         f"Output so far:\n{out}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


def assert_mpi_ok(proc: subprocess.CompletedProcess) -> None:
    """Fail with the full output unless the mpiexec run exited with status 0."""
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(proc.args)} exited with {proc.returncode}; output:\n{proc.stdout}")


_SIGINT_THEN_EXEC = ("import os, signal, sys; "
                     "signal.signal(signal.SIGINT, getattr(signal, sys.argv[1])); "
                     "os.execvp(sys.argv[2], sys.argv[2:])")


def with_sigint(disposition: str, cmd: list[str]) -> list[str]:
    """``cmd`` started with SIGINT set to ``disposition`` ("SIG_IGN" or "SIG_DFL").

    A signal disposition of SIG_IGN or SIG_DFL survives ``exec``, so a tiny Python
    trampoline sets it and execs ``cmd`` (same pid). This replaces
    ``subprocess.Popen(preexec_fn=...)``: a ``preexec_fn`` forces a plain ``fork()`` of
    this multithreaded (JAX) pytest process and runs Python code in the child, which can
    deadlock before the ``exec`` (seen in CI as a job that never printed its first line).
    """
    if disposition not in ("SIG_IGN", "SIG_DFL"):
        raise ValueError(f"disposition must be 'SIG_IGN' or 'SIG_DFL', got {disposition!r}")
    return [sys.executable, "-c", _SIGINT_THEN_EXEC, disposition] + list(cmd)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (read from /proc, independent of bfrun)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def end_job(proc: subprocess.Popen, pids) -> None:
    """A test's cleanup on every path: kill ``proc`` (bfrun) if it still runs, and
    ``SIGKILL`` every process of ``pids`` that is still alive (ranks, stopped or not)."""
    if proc.poll() is None:
        proc.kill()
    for pid in pids:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
