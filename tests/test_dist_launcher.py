"""``bfrun``: command construction, the program's interpreter, the MPI-stack check, stopping
the whole job on a signal, and real launches (``bfrun --timeline``: tests/test_timeline.py)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bluefog_dist import launcher
from mpi_support import ROOT, process_alive, with_sigint

pytestmark = pytest.mark.mpi

BFRUN = [sys.executable, "-m", "bluefog_dist.launcher"]


def test_build_command_mpich_and_openmpi_spellings():
    env = {"BLUEFOG_TIMELINE": "/tmp/t_"}
    mpich = launcher.build_command("mpiexec", "mpich", 4, ["python", "a.py"], hosts="h1:2,h2:2",
                                   env=env, extra=["-bind-to", "core"])
    assert mpich == ["mpiexec", "-n", "4", "-hosts", "h1:2,h2:2", "-genv", "BLUEFOG_TIMELINE",
                     "/tmp/t_", "-bind-to", "core", "python", "a.py"]
    ompi = launcher.build_command("mpirun", "openmpi", 2, ["python", "a.py"], hostfile="hf",
                                  env=env)
    assert ompi == ["mpirun", "-n", "2", "--hostfile", "hf", "-x", "BLUEFOG_TIMELINE=/tmp/t_",
                    "python", "a.py"]


def test_oversubscription_env_only_for_mpich_on_one_host(monkeypatch):
    monkeypatch.setattr(launcher.os, "cpu_count", lambda: 2)
    assert launcher.oversubscription_env(4, "mpich") == {
        "MPIR_CVAR_ENABLE_HEAVY_YIELD": "1", "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}
    assert launcher.oversubscription_env(2, "mpich") == {}
    assert launcher.oversubscription_env(4, "openmpi") == {}
    assert launcher.oversubscription_env(4, "mpich", hosts="a,b") == {}


def test_compare_mpi_versions_detects_a_different_library():
    mpich = "MPICH Version:      5.0.2\nMPICH Release date: ..."
    assert launcher.compare_mpi_versions(mpich, "MPICH Version: 5.0.2\nother") is None
    msg = launcher.compare_mpi_versions("Open MPI v4.1.6, package: Debian", mpich)
    assert msg == ("mpi4py loads 'Open MPI v4.1.6, package: Debian' but mpi4jax was built "
                   "against 'MPICH Version:      5.0.2'; their MPI handles and ABI differ, so "
                   "mpi4jax would fail at import ('MPI ABI incompatibility') or corrupt messages.")


def test_check_reports_the_fix_when_mpi4jax_is_missing(tmp_path):
    # A Python whose mpi4jax cannot be found: a fake package directory shadows it.
    fake = tmp_path / "mpi4jax"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    script = tmp_path / "py.sh"
    script.write_text(f"#!/bin/sh\nPYTHONPATH={tmp_path} exec {sys.executable} \"$@\"\n")
    script.chmod(0o755)
    ok, report = launcher.check_mpi_stack(str(script))
    assert not ok
    assert "bfrun: mpi4jax is not usable" in report and "CPU extension is missing" in report
    assert "MPI4JAX_BUILD_MPICC=" in report and "--force-reinstall" in report


def test_bfrun_check_succeeds_in_this_environment():
    console = Path(sys.executable).parent / "bfrun"  # the installed console script
    cmd = [str(console)] if console.exists() else BFRUN
    proc = subprocess.run(cmd + ["--check"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("bfrun: MPI stack OK: mpi4py ")


def test_bfrun_argument_errors():
    for args, message in [
        (["a.py"], "-np must be a positive number of ranks; got None"),
        (["-np", "0", "a.py"], "-np must be a positive number of ranks; got 0"),
        (["-np", "2"], "no program given"),
        (["-np", "4", "--local-size", "3", "a.py"], "--local-size must be a positive divisor of -np 4; got 3"),
        (["-np", "2", "-x", "NOEQUALS", "a.py"], "-x expects VAR=VALUE; got 'NOEQUALS'"),
        (["-np", "2", "--grace", "0", "a.py"],
         "--grace must be a positive finite number of seconds; got 0.0. Example: --grace 30"),
        (["-np", "2", "--grace", "nan", "a.py"], "--grace must be a positive finite number"),
    ]:
        proc = subprocess.run(BFRUN + args, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)


def test_bfrun_dry_run_prepends_python_for_scripts():
    proc = subprocess.run(BFRUN + ["-np", "2", "--timeline", "/tmp/x_", "--dry-run", "s.py", "--lr", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    cmd = proc.stdout.split()
    assert cmd[1:3] == ["-n", "2"] and cmd[-4:] == [sys.executable, "s.py", "--lr", "1"]
    assert "BLUEFOG_TIMELINE" in cmd


def test_bfrun_launches_ranks(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import jax, jax.numpy as jnp
        from bluefog_dist import MpiComm
        from bluefog.topology import ring_graph
        comm = MpiComm()
        x = jnp.full((4,), float(comm.rank()))
        y = jax.jit(lambda v: comm.neighbor_allreduce(v, ring_graph(comm.size)))(x)
        m = comm.allreduce(x)
        print(f"rank {comm.rank()} of {comm.size}: mean={float(m[0])} mixed={float(y[0])}", flush=True)
    """))
    proc = subprocess.run(BFRUN + ["-np", "2", str(script)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from bluefog.topology import ring_graph

    mixed = np.asarray(ring_graph(2).weights, np.float32) @ np.array([0.0, 1.0], np.float32)
    for r in range(2):  # the dense oracle W @ x (the ranks' lines may interleave)
        assert f"rank {r} of 2: mean=0.5 mixed={float(mixed[r])}" in proc.stdout, proc.stdout


def test_single_process_without_mpiexec(tmp_path):
    """-np 1 also works as a plain `python script.py` (MPI singleton), and a topology for 4
    agents is refused with the launch command to use."""
    script = tmp_path / "single.py"
    script.write_text(textwrap.dedent("""
        import jax.numpy as jnp
        import bluefog_dist
        from bluefog.algorithm import Algorithm, Problem
        from bluefog.topology import ring_graph
        from bluefog_dist.agreement import AgreementError
        from typing import NamedTuple

        class S(NamedTuple):
            x: object
            count: object

        alg = Algorithm(lambda x, ctx: S(x, jnp.zeros((), jnp.int32)),
                        lambda s, ctx: S(ctx.comm.neighbor_allreduce(s.x, ctx.topology, s.count)
                                         - 0.5 * ctx.grad(s.x), s.count + 1),
                        lambda s: s.x, name="gd")
        def problem(n):
            return Problem(lambda x, d: 0.5 * jnp.sum((x - d) ** 2),
                           jnp.arange(n * 2, dtype=jnp.float32).reshape(n, 2), jnp.zeros(2))
        res = bluefog_dist.run(alg, problem(1), ring_graph(1), 40, progress=False)
        print("params", [round(float(v), 4) for v in res.params])
        try:
            bluefog_dist.run(alg, problem(4), ring_graph(4), 5, progress=False)
        except AgreementError as err:
            print("refused:", err)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # gradient descent on 0.5|x - (0, 1)|^2 with step 0.5 converges to (0, 1)
    assert "params [0.0, 1.0]" in proc.stdout
    assert ("the MPI world size must equal topology.size; got world size 1 and topology.size=4. "
            "Launch with bfrun -np 4") in proc.stdout


# --- the program's interpreter (issue 15: commands copied into a fresh shell) -------------

def _no_site_python(tmp_path: Path) -> Path:
    """An interpreter that cannot import jax: this Python without its site-packages (-S)."""
    bindir = tmp_path / "otherbin"
    bindir.mkdir()
    fake = bindir / "python"
    fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    fake.chmod(0o755)
    (bindir / "python3").symlink_to(fake)
    return fake


def test_resolve_program_uses_this_environment(tmp_path, monkeypatch):
    here = sys.executable
    assert launcher.resolve_program(["python", "a.py", "-x"]) == ([here, "a.py", "-x"], here)
    assert launcher.resolve_program(["python3", "-m", "m"]) == ([here, "-m", "m"], here)
    assert launcher.resolve_program(["a.py"]) == ([here, "a.py"], here)
    # an explicit interpreter path is kept, and is the one to check
    assert launcher.resolve_program(["/opt/py/bin/python3", "a.py"]) == (
        ["/opt/py/bin/python3", "a.py"], "/opt/py/bin/python3")
    # a console script of the environment, not on PATH: found next to the interpreter,
    # and its interpreter read from its #! line
    envbin = tmp_path / "env" / "bin"
    envbin.mkdir(parents=True)
    (envbin / "python").write_text("")
    tool = envbin / "mytool"
    tool.write_text(f"#!{envbin / 'python'}\nimport sys\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert launcher.resolve_program(["mytool", "--n", "2"], python=str(envbin / "python")) == (
        [str(tool), "--n", "2"], str(envbin / "python"))
    assert launcher.resolve_program(["hostname"]) == (["hostname"], None)


def test_bfrun_refuses_an_interpreter_without_jax_with_the_fix(tmp_path):
    fake = _no_site_python(tmp_path)
    proc = subprocess.run(BFRUN + ["-np", "2", str(fake), "job.py"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert (f"bfrun: the program's interpreter {fake} cannot import jax "
            "(ModuleNotFoundError: No module named 'jax'), so every rank would fail.") in proc.stderr
    assert f"bfrun -np N {sys.executable} your_script.py" in proc.stderr
    assert f"source {Path(sys.executable).parent}/activate" in proc.stderr


def test_bare_python_in_a_fresh_shell_runs_the_environments_interpreter(tmp_path):
    """PATH's first `python` lacks jax (a shell without the venv activated): bfrun's ranks
    must still run the environment's interpreter and import jax and mpi4jax."""
    fake = _no_site_python(tmp_path)
    script = tmp_path / "which.py"
    script.write_text("import sys, jax, mpi4jax\nfrom mpi4py import MPI\n"
                      "sys.stdout.write(f'rank {MPI.COMM_WORLD.Get_rank()} python "
                      "{sys.executable}\\n')  # one write: the ranks share one pipe\n"
                      "sys.stdout.flush()\n")
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(BFRUN + ["-np", "2", "python", str(script)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for r in range(2):
        assert f"rank {r} python {sys.executable}" in proc.stdout


# --- stopping the job (issue 16 item 5) ---------------------------------------------------

LOOP = """
import os, sys, time
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       f"rank-{os.getpid()}-{os.getppid()}"), "w"):
    pass
while True:
    time.sleep(0.1)
"""


def _pids_running(marker: str) -> set[int]:
    """Every process whose command line contains ``marker``."""
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in entry.joinpath("cmdline").read_bytes().decode(errors="replace"):
                found.add(int(entry.name))
        except OSError:
            pass
    return found


def _start_job(tmp_path, extra=(), sigint=None):
    """Start ``bfrun -np 2`` on a looping script; returns ``(proc, marker, job pids)``.

    The ranks announce ``(pid, parent pid)`` by creating a file next to the script (not on
    stdout: mpiexec's output forwarding is not what these tests are about, and a line lost
    in it must not read as a job that never started). Waits at most 90 s; on timeout
    everything started is killed and the test fails with what was found."""
    script = tmp_path / "loop_forever.py"
    script.write_text(LOOP)
    cmd = BFRUN + list(extra) + ["-np", "2", "python", str(script)]
    proc = subprocess.Popen(with_sigint(sigint, cmd) if sigint else cmd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        found = [f.name.split("-")[1:] for f in tmp_path.glob("rank-*-*")]
        if len(found) == 2:
            ranks = {int(pid) for pid, _ in found}
            proxies = {int(ppid) for _, ppid in found}
            return proc, str(script), ranks | proxies
        time.sleep(0.05)
    _kill_all(_pids_running(str(script)) | {proc.pid})
    pytest.fail(f"the ranks of bfrun did not start within 90 s (bfrun exit {proc.poll()}; "
                f"rank files {sorted(f.name for f in tmp_path.glob('rank-*'))})")


def _kill_all(pids):
    for pid in pids:
        if process_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
@pytest.mark.timeout(180)  # a job that never starts or never stops fails instead of blocking
@pytest.mark.parametrize("sig,extra,sigint", [
    (signal.SIGTERM, (), None),
    # started like `nohup bfrun ... &` from a script: SIGINT ignored, SIGHUP forwarded as TERM
    (signal.SIGHUP, ("--skip-check",), "SIG_IGN"),
    # Ctrl-C in a terminal (SIGINT at its default, even when pytest runs in the background)
    (signal.SIGINT, ("--skip-check",), "SIG_DFL"),
])
def test_signal_to_bfrun_stops_every_process_of_the_job(tmp_path, sig, extra, sigint):
    proc, marker, job = _start_job(tmp_path, extra, sigint)
    job |= _pids_running(marker) - {proc.pid}  # mpiexec (its command line names the script)
    assert len(job) >= 4, job  # mpiexec, the proxy, two ranks
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    try:
        rc = proc.wait(timeout=15)
        while time.monotonic() - t0 < 10 and any(process_alive(p) for p in job):
            time.sleep(0.1)
        assert [p for p in job if process_alive(p)] == [], "orphans left behind"
        assert time.monotonic() - t0 < 10
        assert rc == 128 + sig
    finally:  # never leave a looping job behind, even when the test fails
        _kill_all(job | _pids_running(marker) | {proc.pid})


def test_run_job_kills_a_job_that_ignores_the_signal(tmp_path):
    """A job that ignores SIGTERM (here a shell and its child) is killed after the grace."""
    code = textwrap.dedent("""
        import sys
        from bluefog_dist.supervise import run_job
        cmd = ["sh", "-c", "trap '' TERM; sh -c \\"trap '' TERM; echo CHILD $$; sleep 300\\" & wait"]
        sys.exit(run_job(cmd, {}, grace=1.0))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    child = int(proc.stdout.readline().split()[1])
    assert process_alive(child)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert 1.0 <= time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(child)
    proc.stdout.close()


def test_run_job_forwards_every_signal_not_only_the_first(tmp_path):
    """A program that stops at its next checkpoint on the first SIGTERM and exits on the
    second (bluefog-train's protocol) gets both, well before the grace period ends."""
    child = tmp_path / "two_signals.py"
    child.write_text(textwrap.dedent("""
        import signal, sys, time
        seen = []
        def on_term(signum, frame):
            seen.append(signum)
            print("GOT", len(seen), flush=True)
            if len(seen) == 2:
                sys.exit(7)
        signal.signal(signal.SIGTERM, on_term)
        print("READY", flush=True)
        while True:
            time.sleep(0.05)
    """))
    code = (f"import sys\nfrom bluefog_dist.supervise import run_job\n"
            f"sys.exit(run_job([sys.executable, {str(child)!r}], {{}}, grace=30.0))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    assert proc.stdout.readline().strip() == "READY"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "GOT 1"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "GOT 2"
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 10  # ended by the program, not by the 30 s grace
    proc.stdout.close()
