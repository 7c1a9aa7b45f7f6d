"""``bfrun``: a thin launcher over the installed ``mpiexec`` (Bluefog's ``bfrun``, for JAX).

Usage::

    bfrun -np 4 python train.py --lr 0.1          # or: bfrun -np 4 train.py
    bfrun -np 8 -H node1:4,node2:4 train.py        # host list (or --hostfile FILE)
    bfrun -np 4 --timeline /tmp/tl_ train.py       # per-rank Chrome traces /tmp/tl_<rank>.json
    bfrun -np 4 --mpi-args "-bind-to core" train.py  # extra mpiexec flags, passed through
    bfrun --check                                  # only check the MPI stack
    bfrun -np 4 --dry-run train.py                 # print the mpiexec command

Which ``mpiexec``: ``--mpiexec PATH``, else ``$BFRUN_MPIEXEC``, else the one next to this
Python (the venv's MPICH wheel), else ``mpiexec``/``mpirun`` on ``PATH`` (e.g. Open MPI). The
flavour (MPICH/Hydra or Open MPI) is detected from ``mpiexec --version`` and the flags are
spelled accordingly.

Before launching, ``bfrun`` checks in a subprocess of the target Python that ``mpi4py`` and
``mpi4jax`` import and that mpi4jax's extension was built against the same MPI library that
mpi4py loads (its recorded ``MPI_Get_library_version`` against the runtime one), and prints
the fix when not. When more ranks than CPU cores run on one machine with MPICH, it sets
``MPIR_CVAR_ENABLE_HEAVY_YIELD=1`` and ``MPIR_CVAR_POLLS_BEFORE_YIELD=1`` (unless already set):
MPICH otherwise busy-polls, and oversubscribed ranks steal each other's cores (measured on a
2-core machine, 4 ranks: ~10x slower exchanges without them).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["main", "build_command", "find_mpiexec", "mpi_flavour", "check_mpi_stack",
           "compare_mpi_versions", "oversubscription_env"]

REBUILD_FIX = (
    "Fix: rebuild mpi4jax against the MPI that mpi4py uses, from the venv's compiler wrapper:\n"
    "    CUDA_ROOT=$(mktemp -d) MPI4JAX_BUILD_MPICC={mpicc} \\\n"
    "        {python} -m pip install --no-cache-dir --no-build-isolation --force-reinstall "
    "--no-deps mpi4jax\n"
    "or recreate the environment with tools/setup_env.sh (it does exactly this)."
)

_CHECK_SCRIPT = r"""
import glob, importlib.machinery, importlib.util, json, os, sys
out = {}
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
    (``"MPICH Version: 5.0.2"``, ``"Open MPI v4.1.6, ..."``); both must agree.
    """
    r, b = _first_line(runtime), _first_line(built)
    if " ".join(r.split()) == " ".join(b.split()):
        return None
    return (f"mpi4py loads '{r or '<unknown>'}' but mpi4jax was built against "
            f"'{b or '<unknown>'}'; their MPI handles and ABI differ, so mpi4jax would fail "
            "at import ('MPI ABI incompatibility') or corrupt messages.")


def check_mpi_stack(python: str | None = None, timeout: float = 120.0) -> tuple[bool, str]:
    """Check, in a subprocess of ``python``, that mpi4py and mpi4jax import and share an MPI.

    Returns ``(ok, report)``; on failure the report ends with the fix.
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
    import json

    info = json.loads(line[len("BFRUN-CHECK "):])
    if "mpi4py_error" in info:
        return False, (f"bfrun: mpi4py does not import under {python}: {info['mpi4py_error']}.\n"
                       f"Fix: {python} -m pip install mpich mpi4py (or run tools/setup_env.sh).")
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


def find_mpiexec(explicit: str | None = None, python: str | None = None) -> str:
    """The ``mpiexec`` to use (see the module docstring for the order)."""
    candidates = [explicit, os.environ.get("BFRUN_MPIEXEC"),
                  str(Path(python or sys.executable).parent / "mpiexec")]
    for c in candidates:
        if c and Path(c).exists():
            return c
        if c and c is explicit:
            raise FileNotFoundError(f"bfrun: --mpiexec {c!r} does not exist.")
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "bfrun: no mpiexec found (looked next to the Python interpreter, in $BFRUN_MPIEXEC and "
        "on PATH). Install the MPICH wheel into this environment: pip install mpich.")


def mpi_flavour(mpiexec: str) -> str:
    """``"openmpi"``, ``"mpich"`` (Hydra, also Intel MPI) or ``"unknown"``."""
    try:
        text = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if "Open MPI" in text or "OpenRTE" in text or "open-mpi" in text.lower():
        return "openmpi"
    if "HYDRA" in text.upper() or "MPICH" in text.upper() or "Intel" in text:
        return "mpich"
    return "unknown"


def oversubscription_env(np_: int, flavour: str = "mpich", hosts: str | None = None) -> dict:
    """Environment that keeps oversubscribed MPICH ranks from busy-polling (single host)."""
    cores = os.cpu_count() or 1
    if flavour != "mpich" or hosts or np_ <= cores:
        return {}
    return {"MPIR_CVAR_ENABLE_HEAVY_YIELD": "1", "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}


def build_command(mpiexec: str, flavour: str, np_: int, program: list[str], *,
                  hosts: str | None = None, hostfile: str | None = None,
                  env: dict | None = None, extra: list[str] | None = None) -> list[str]:
    """The ``mpiexec`` command line for ``flavour`` (``env`` is forwarded to every rank)."""
    cmd = [mpiexec, "-n", str(np_)]
    env = env or {}
    if flavour == "openmpi":
        if hosts:
            cmd += ["--host", hosts]
        if hostfile:
            cmd += ["--hostfile", hostfile]
        if np_ > (os.cpu_count() or 1) and not hosts and not hostfile:
            cmd += ["--oversubscribe"]
        for k, v in env.items():
            cmd += ["-x", f"{k}={v}"]
    else:
        if hosts:
            cmd += ["-hosts", hosts]
        if hostfile:
            cmd += ["-f", hostfile]
        for k, v in env.items():
            cmd += ["-genv", k, str(v)]
    return cmd + list(extra or []) + list(program)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bfrun", description="Launch a bluefog-jax program on N MPI ranks (one agent per rank).",
        epilog="Everything after the options is the program: bfrun -np 4 python train.py --lr 0.1")
    p.add_argument("-np", "-n", "--np", dest="np", type=int, help="number of ranks (agents)")
    p.add_argument("-H", "--hosts", help="host list, e.g. node1:4,node2:4")
    p.add_argument("--hostfile", help="MPI host file")
    p.add_argument("--timeline", metavar="PREFIX",
                   help="write a Chrome-trace timeline per rank to PREFIX<rank>.json "
                        "(sets BLUEFOG_TIMELINE)")
    p.add_argument("--local-size", type=int, help="ranks per machine for hierarchical ops "
                                                  "(sets BLUEFOG_LOCAL_SIZE)")
    p.add_argument("--mpiexec", help="path of mpiexec (default: the venv's, then PATH)")
    p.add_argument("--mpi-args", default="", help="extra mpiexec flags, passed through (quoted)")
    p.add_argument("-x", "--env", action="append", default=[], metavar="VAR=VALUE",
                   help="environment variable for every rank (repeatable)")
    p.add_argument("--check", action="store_true", help="only check mpi4py/mpi4jax and exit")
    p.add_argument("--skip-check", action="store_true", help="do not check the MPI stack")
    p.add_argument("--dry-run", action="store_true", help="print the mpiexec command and exit")
    p.add_argument("program", nargs=argparse.REMAINDER, help="program and its arguments")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bfrun`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    python = sys.executable
    if args.check:
        ok, report = check_mpi_stack(python)
        print(report, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    if args.np is None or args.np < 1:
        parser.error(f"-np must be a positive number of ranks; got {args.np}. Example: bfrun -np 4 train.py")
    program = list(args.program)
    if program[:1] == ["--"]:
        program = program[1:]
    if not program:
        parser.error("no program given. Example: bfrun -np 4 python train.py")
    if program[0].endswith(".py"):
        program = [python] + program
    if args.local_size is not None and (args.local_size < 1 or args.np % args.local_size):
        parser.error(f"--local-size must be a positive divisor of -np {args.np}; got {args.local_size}.")
    env = {}
    for item in args.env:
        if "=" not in item:
            parser.error(f"-x expects VAR=VALUE; got {item!r}.")
        k, v = item.split("=", 1)
        env[k] = v
    if args.timeline:
        env["BLUEFOG_TIMELINE"] = args.timeline
    if args.local_size is not None:
        env["BLUEFOG_LOCAL_SIZE"] = str(args.local_size)
    try:
        mpiexec = find_mpiexec(args.mpiexec, python)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 127
    flavour = mpi_flavour(mpiexec)
    for k, v in oversubscription_env(args.np, flavour, args.hosts or args.hostfile).items():
        env.setdefault(k, os.environ.get(k, v))
    cmd = build_command(mpiexec, flavour, args.np, program, hosts=args.hosts,
                        hostfile=args.hostfile, env=env, extra=shlex.split(args.mpi_args))
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    if not args.skip_check:
        ok, report = check_mpi_stack(python)
        if not ok:
            print(report, file=sys.stderr)
            return 1
    child_env = dict(os.environ)
    child_env.update(env)
    try:
        return subprocess.call(cmd, env=child_env)
    except KeyboardInterrupt:  # mpiexec forwards SIGINT to the ranks
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
