"""Launching the rank-side benchmark programs under ``mpiexec`` (shared by ``compare``,
``cost_report`` and the asv suite's ``mpi_ops``).

The rank programs (``mpi_ranks``, ``dgd_ranks``, ``mpi_exchange``) are modules of this
package: they run as ``mpiexec -n N <python> -m benchmarks.<name>`` from the repository root.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

#: The repository root: the working directory of every ``python -m benchmarks.<name>``.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mpiexec_path() -> str | None:
    """The ``mpiexec`` next to this interpreter (the venv's MPICH), else the one on ``PATH``."""
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return cand if os.access(cand, os.X_OK) else shutil.which("mpiexec")


def rank_env(ranks: int) -> dict:
    """Environment for ``mpiexec``: one thread per rank and, when ranks outnumber cores,
    MPICH's yield-instead-of-busy-poll settings (``bluefog_dist.launcher``; oversubscribed
    ranks otherwise steal each other's cores), and glibc's huge-page tunable, as ``bfrun``
    sets them."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    try:
        from bluefog_dist.launcher import large_message_env, oversubscription_env
        extra = {**oversubscription_env(ranks), **large_message_env()}  # what bfrun sets
    except ImportError:
        extra = ({"MPIR_CVAR_ENABLE_HEAVY_YIELD": "1", "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}
                 if ranks > (os.cpu_count() or 1) else {})
    for k, v in extra.items():
        env.setdefault(k, v)
    return env


def run_module_json(module: str, args, ranks: int, timeout: float,
                    needs=("mpi4py",)) -> dict | str:
    """Run ``mpiexec -n ranks <python> -m benchmarks.<module> --json OUT *args`` from the
    repository root with :func:`rank_env`; the JSON it wrote, or a one-line reason why it
    could not run (``mpiexec`` or a module of ``needs`` missing, a timeout, a failure)."""
    exe = mpiexec_path()
    if exe is None:
        return "mpiexec not found (install the mpi extra: pip install -e .[mpi])"
    for mod in needs:
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed in this environment"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, f"{module}.json")
        cmd = [exe, "-n", str(ranks), sys.executable, "-m", f"benchmarks.{module}",
               "--json", out, *map(str, args)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env=rank_env(ranks), cwd=ROOT)
        except subprocess.TimeoutExpired:
            return f"mpiexec -n {ranks} timed out after {timeout} s"
        if proc.returncode != 0 or not os.path.exists(out):
            return f"mpiexec failed (rc={proc.returncode}): {proc.stderr[-2000:]}"
        with open(out) as f:
            return json.load(f)


def run_ranks(floats, ranks: int = 4, timeout: float = 600, extra=()) -> dict | str:
    """Run :mod:`benchmarks.mpi_ranks` under ``mpiexec -n ranks``; its JSON, or a reason."""
    return run_module_json("mpi_ranks", ["--floats", *floats, *extra], ranks, timeout)
