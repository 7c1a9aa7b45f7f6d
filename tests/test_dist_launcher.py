"""``bfrun``: command construction, the MPI-stack check, and one real launch with a timeline."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bluefog_dist import launcher
from mpi_support import ROOT

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


def test_bfrun_launches_ranks_with_timeline(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import jax, jax.numpy as jnp
        from bluefog_dist import MpiComm
        from bluefog.topology import ring_graph
        comm = MpiComm()
        x = jnp.full((4,), float(comm.rank()))
        y = jax.jit(lambda v: comm.neighbor_allreduce(v, ring_graph(comm.size)))(x)
        m = comm.allreduce(x)
        comm.timeline.flush()
        print(f"rank {comm.rank()} of {comm.size}: mean={float(m[0])} mixed={float(y[0])}", flush=True)
    """))
    prefix = tmp_path / "tl_"
    proc = subprocess.run(BFRUN + ["-np", "2", "--timeline", str(prefix), str(script)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # ring of 2: W = [[1/3, 2/3], [2/3, 1/3]] (both neighbours are the same agent)
    for r in range(2):
        assert f"rank {r} of 2: mean=0.5" in proc.stdout
        events = json.load(open(Path(f"{prefix}{r}.json")))["traceEvents"]
        names = {e["name"] for e in events if e["ph"] == "X"}
        assert {"neighbor_allreduce/sendrecv", "allreduce/allreduce"} <= names


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
