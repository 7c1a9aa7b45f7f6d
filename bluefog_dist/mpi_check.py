"""The MPI-stack check ``bfrun`` runs before launching (``bfrun --check`` runs only this).

A rank that cannot import jax, mpi4py or mpi4jax, or whose mpi4jax was compiled against
another MPI library than the one mpi4py loads, fails only after ``mpiexec`` has started every
rank (or, worse, exchanges corrupted messages). :func:`check_mpi_stack` finds these cases
in one subprocess of the program's interpreter, before anything is launched, and returns the
fix with the diagnosis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["REBUILD_FIX", "check_mpi_stack", "compare_mpi_versions"]

REBUILD_FIX = (
    "Fix: rebuild mpi4jax against the MPI that mpi4py uses, from the venv's compiler wrapper:\n"
    "    CUDA_ROOT=$(mktemp -d) MPI4JAX_BUILD_MPICC={mpicc} \\\n"
    "        {python} -m pip install --no-cache-dir --no-build-isolation --force-reinstall "
    "--no-deps mpi4jax\n"
    "(the README's section 'Installing with pip, on a laptop or a cluster' has every step)."
)

_CHECK_SCRIPT = r"""
import glob, importlib.machinery, importlib.util, json, os, sys
out = {}
try:
    import jax
    out["jax"] = jax.__version__
except Exception as err:
    out["jax_error"] = f"{type(err).__name__}: {err}"
try:
    import mpi4py
    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = False
    from mpi4py import MPI
    out["runtime"] = MPI.Get_library_version()
    out["mpi4py"] = mpi4py.__version__
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libmpi" in line})
    out["runtime_libs"] = libs
except Exception as err:
    out["mpi4py_error"] = f"{type(err).__name__}: {err}"
try:
    spec = importlib.util.find_spec("mpi4jax")
    if spec is None:
        raise ImportError("No module named 'mpi4jax'")
    root = list(spec.submodule_search_locations)[0]
    so = sorted(glob.glob(os.path.join(root, "_src", "xla_bridge", "mpi_xla_bridge_cpu*.so")))
    if not so:
        raise ImportError(f"mpi4jax's CPU extension is missing under {root}")
    name = "mpi4jax._src.xla_bridge.mpi_xla_bridge_cpu"
    loader = importlib.machinery.ExtensionFileLoader(name, so[0])
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    out["built"] = module.MPI_ABI_INFO.get("mpi_library_version", "")
    out["extension"] = so[0]
except Exception as err:
    out["mpi4jax_error"] = f"{type(err).__name__}: {err}"
if "mpi4jax_error" not in out and "mpi4py_error" not in out:
    try:
        import mpi4jax
        out["mpi4jax"] = mpi4jax.__version__
    except Exception as err:
        out["mpi4jax_import_error"] = f"{type(err).__name__}: {err}"
print("BFRUN-CHECK " + json.dumps(out))
"""


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def compare_mpi_versions(runtime: str, built: str) -> str | None:
    """``None`` if mpi4jax's build-time MPI matches the runtime one, else an explanation.

    The first line of ``MPI_Get_library_version`` names the implementation and version
    (``"MPICH Version: 5.0.2"``, ``"Open MPI v4.1.6, ..."``); both must agree, compared with
    runs of whitespace collapsed.

    Parameters
    ----------
    runtime : str
        ``MPI.Get_library_version()`` of the library mpi4py loads.
    built : str
        The same string recorded by mpi4jax's extension at build time
        (``MPI_ABI_INFO["mpi_library_version"]``).

    Returns
    -------
    str or None
        ``None`` when the first lines agree, else a sentence naming both libraries.

    References
    ----------
    MPI Forum, "MPI: A Message-Passing Interface Standard", version 4.0 (2021), section 9.1.1
    (``MPI_Get_library_version``); mpi4jax's ABI check (``mpi4jax/_src/xla_bridge``).
    """
    r, b = _first_line(runtime), _first_line(built)
    if " ".join(r.split()) == " ".join(b.split()):
        return None
    return (f"mpi4py loads '{r or '<unknown>'}' but mpi4jax was built against "
            f"'{b or '<unknown>'}'; their MPI handles and ABI differ, so mpi4jax would fail "
            "at import ('MPI ABI incompatibility') or corrupt messages.")


def _missing_module_fix(python: str, module: str) -> str:
    """The fix for an interpreter that lacks ``module``: the right interpreter, or an install."""
    own = Path(sys.executable)
    if os.path.abspath(python) != os.path.abspath(own):
        return (f"Fix: run the program with this environment's interpreter, which has it:\n"
                f"    bfrun -np N {own} your_script.py   (bfrun does this for a bare 'python')\n"
                f"or activate the environment first: source {own.parent}/activate")
    packages = "mpich mpi4py" if module == "mpi4py" else module
    return (f"Fix: {python} -m pip install {packages} (for mpi4jax, first the two steps of the "
            "README's section 'Installing with pip, on a laptop or a cluster').")


def check_mpi_stack(python: str | None = None, timeout: float = 120.0) -> tuple[bool, str]:
    """Check, in a subprocess of ``python``, that jax, mpi4py and mpi4jax import and share an MPI.

    Three checks run in a fresh interpreter (nothing is imported into ``bfrun`` itself):
    ``import jax`` and ``import mpi4py`` (a program run by the wrong interpreter fails here),
    then mpi4jax's CPU extension is loaded and the MPI library it was built against
    (``MPI_ABI_INFO["mpi_library_version"]``) is compared with the one mpi4py loads at run
    time (``MPI_Get_library_version``, see :func:`compare_mpi_versions`).

    Parameters
    ----------
    python : str, optional
        The interpreter the ranks will run (default: the one running ``bfrun``).
    timeout : float
        Seconds allowed for the check.

    Returns
    -------
    tuple of (bool, str)
        ``(ok, report)``; on failure the report names the failing import or the two MPI
        libraries and ends with the fix.
    """
    python = python or sys.executable
    mpicc = Path(python).parent / "mpicc"
    fix = REBUILD_FIX.format(mpicc=mpicc if mpicc.exists() else "$(which mpicc)", python=python)
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    try:
        proc = subprocess.run([python, "-c", _CHECK_SCRIPT], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"bfrun: could not run {python} to check the MPI stack: {err}"
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BFRUN-CHECK ")), None)
    if line is None:
        return False, (f"bfrun: the MPI check under {python} crashed (exit {proc.returncode}):\n"
                       f"{proc.stderr.strip()[-2000:]}\n{fix}")
    info = json.loads(line[len("BFRUN-CHECK "):])
    for module in ("jax", "mpi4py"):
        if f"{module}_error" in info:
            return False, (f"bfrun: the program's interpreter {python} cannot import {module} "
                           f"({info[module + '_error']}), so every rank would fail.\n"
                           + _missing_module_fix(python, module))
    if "mpi4jax_error" in info:
        return False, (f"bfrun: mpi4jax is not usable under {python}: {info['mpi4jax_error']}.\n"
                       + fix)
    mismatch = compare_mpi_versions(info.get("runtime", ""), info.get("built", ""))
    if mismatch:
        return False, f"bfrun: {mismatch}\n{fix}"
    if "mpi4jax_import_error" in info:
        return False, (f"bfrun: mpi4jax fails to import: {info['mpi4jax_import_error']}\n{fix}")
    return True, (f"bfrun: MPI stack OK: mpi4py {info.get('mpi4py')} and mpi4jax "
                  f"{info.get('mpi4jax')} both use '{_first_line(info['runtime'])}' "
                  f"({', '.join(info.get('runtime_libs', [])) or 'libmpi'})")
