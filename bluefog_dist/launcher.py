"""``bfrun``: a thin launcher over the installed ``mpiexec`` (Bluefog's ``bfrun``, for JAX).

Usage::

    bfrun -np 4 python train.py --lr 0.1          # or: bfrun -np 4 train.py
    bfrun -np 8 -H node1:4,node2:4 train.py        # host list (or --hostfile FILE)
    bfrun -np 4 --timeline trace.json train.py     # one Chrome/Perfetto trace of all ranks
    bfrun -np 4 --mpi-args "-bind-to core" train.py  # extra mpiexec flags, passed through
    bfrun --check                                  # only check the MPI stack
    bfrun -np 4 --dry-run train.py                 # print the mpiexec command
    bfrun train.py                                 # inside salloc/sbatch: Slurm's hosts/ranks

Bluefog/Horovod spellings are accepted too: ``--timeline-filename`` for ``--timeline``,
``--extra-mpi-flags`` for ``--mpi-args``. Inside a Slurm allocation the hosts (and, without
``-np``, the rank count) come from ``SLURM_JOB_NODELIST``/``SLURM_TASKS_PER_NODE``/
``SLURM_NTASKS`` (:mod:`bluefog_dist.slurm`).

Which ``mpiexec``: ``--mpiexec PATH``, else ``$BFRUN_MPIEXEC``, else the one next to this
Python (the venv's MPICH wheel), else ``mpiexec``/``mpirun`` on ``PATH`` (e.g. Open MPI). The
flavour (MPICH/Hydra or Open MPI) is detected from ``mpiexec --version`` and the flags are
spelled accordingly.

The program: ``script.py`` and a bare ``python``/``python3`` run under the interpreter that
runs ``bfrun`` (the environment's, whatever ``python`` the shell's ``PATH`` finds), and a
console script of that environment (``bluefog-train``) is found next to it even when the
environment is not activated (:func:`resolve_program`). Before launching, ``bfrun`` checks
in a subprocess of the program's interpreter that ``jax``, ``mpi4py`` and ``mpi4jax`` import
and that mpi4jax's extension was built against the same MPI library that mpi4py loads
(:mod:`bluefog_dist.mpi_check`), and prints the fix when not. When more ranks than CPU cores
run on one machine with MPICH, it sets ``MPIR_CVAR_ENABLE_HEAVY_YIELD=1`` and
``MPIR_CVAR_POLLS_BEFORE_YIELD=1`` (unless already set): MPICH otherwise busy-polls, and
oversubscribed ranks steal each other's cores (measured on a 2-core machine, 4 ranks: ~10x
slower exchanges without them). On Linux it also sets ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``
(unless ``GLIBC_TUNABLES`` is set, or with ``--no-hugepages``): large XLA buffers then sit
on transparent huge pages, which cut page faults per 64 MiB exchange from ~12,000 to ~300
(:func:`large_message_env`).

Timeline: ``bfrun --timeline PATH`` checks ``PATH`` before launching (its directory must
exist and be writable), sets ``BLUEFOG_TIMELINE=PATH.ranks`` for every rank (each records
with ``jax.profiler``, :mod:`bluefog_dist.timeline`) and, after the job, merges the ranks'
files into ``PATH``, one process per rank on one clock (:mod:`bluefog_dist.profile_merge`),
then removes ``PATH.ranks``.

Restarting: ``bfrun --max-restarts K`` relaunches a job whose rank died or stalled (no
heartbeat for ``--heartbeat-timeout`` seconds, default 60; optionally no progress for
``--progress-timeout``) up to K times; the program resumes from its newest complete
checkpoint (:mod:`bluefog_dist.restart` states the contract). With ``--elastic`` (and
``--min-np M``) each relaunch has one rank fewer, down to ``M``.

Stopping: ``SIGTERM``, ``SIGINT`` and ``SIGHUP`` sent to ``bfrun`` stop the whole job
(``mpiexec``, its proxies, every rank) and ``bfrun`` waits for it; what is left after
``--grace`` seconds (default 5) is killed (:mod:`bluefog_dist.supervise`). A job started in
the background by a shell without job control (``nohup bfrun ... &``) ignores ``SIGINT``,
like every program started that way; stop it with ``kill <pid>`` (``SIGTERM``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .slurm import fill_from_allocation
from . import profile_merge
from .mpi_check import REBUILD_FIX, check_mpi_stack, compare_mpi_versions
from .restart import HEARTBEAT_TIMEOUT, supervise_restarts
from .supervise import GRACE_SECONDS, run_job

__all__ = ["main", "build_command", "find_mpiexec", "mpi_flavour", "check_mpi_stack",
           "compare_mpi_versions", "oversubscription_env", "large_message_env",
           "resolve_program", "REBUILD_FIX"]

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


#: glibc malloc tunable that puts large allocations (XLA's buffers) on transparent huge pages.
HUGEPAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def large_message_env(environ=None) -> dict:
    """``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` for every rank, unless already set.

    XLA's CPU buffers come from ``malloc``; on 4 KiB pages each fresh 64 MiB buffer is
    page-faulted in (measured with ``getrusage``: 8,192-12,288 minor faults per 64 MiB ring
    exchange on 2 and 4 ranks) and MPICH's single-copy path is slower on them. With the
    tunable, glibc asks for transparent huge pages (``madvise``), and the same exchange
    took 136-280 faults (``benchmarks/large_messages.py``, README ``mpi`` section). glibc
    older than 2.35 ignores the tunable. A ``GLIBC_TUNABLES`` already in the environment
    (the user's choice) is kept as it is.
    """
    environ = os.environ if environ is None else environ
    if sys.platform != "linux" or "GLIBC_TUNABLES" in environ:
        return {}
    return {"GLIBC_TUNABLES": HUGEPAGES_TUNABLE}


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


_PYTHON_NAMES = ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}")


def _shebang_interpreter(path: str) -> str | None:
    """The Python interpreter named by the ``#!`` line of ``path``, or ``None``."""
    try:
        with open(path, "rb") as f:
            line = f.readline(512).decode("utf-8", "replace")
    except OSError:
        return None
    words = shlex.split(line[2:]) if line.startswith("#!") else []
    if words and Path(words[0]).name == "env":
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        words[:1] = [shutil.which(words[0]) or words[0]] if words else []
    if words and Path(words[0]).name.startswith("python"):
        return words[0]
    return None


def resolve_program(program: list[str], python: str | None = None) -> tuple[list[str], str | None]:
    """The command every rank runs, and the Python interpreter that will run it.

    A shell that has not activated the virtual environment finds another ``python`` on
    ``PATH`` (one without jax), and every rank would die with ``No module named 'jax'``.
    So the program is resolved here, where the environment is known:

    * ``script.py ...`` becomes ``<python> script.py ...``;
    * a bare ``python``, ``python3`` or ``python3.X`` (this interpreter's version) becomes
      ``<python>``, the interpreter running ``bfrun`` (an explicit path is kept as given);
    * a bare command that is not on ``PATH`` but sits next to ``<python>`` (a console script
      of the environment, e.g. ``bluefog-train``) becomes that file's absolute path.

    The interpreter is then ``<python>``, the explicit interpreter path, or the one named by
    the ``#!`` line of a Python console script; ``None`` for any other program.

    Parameters
    ----------
    program : list of str
        The program and its arguments, as given to ``bfrun``.
    python : str, optional
        The environment's interpreter (default: the one running ``bfrun``).

    Returns
    -------
    tuple of (list of str, str or None)
        The command line for ``mpiexec`` and the interpreter to check.
    """
    python = python or sys.executable
    head, rest = program[0], list(program[1:])
    if head.endswith(".py"):
        return [python, head] + rest, python
    if "/" not in head and head in _PYTHON_NAMES:
        return [python] + rest, python
    if "/" not in head and shutil.which(head) is None and (Path(python).parent / head).exists():
        head = str(Path(python).parent / head)
    path = head if "/" in head else shutil.which(head)
    if path and Path(path).name.startswith("python"):
        return [head] + rest, path
    return [head] + rest, _shebang_interpreter(path) if path else None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bfrun", description="Launch a bluefog-jax program on N MPI ranks (one agent per rank).",
        epilog=("Everything after the options is the program: bfrun -np 4 python train.py "
                "--lr 0.1. A bare python/python3 (or script.py) runs with this environment's "
                f"interpreter ({sys.executable}). SIGTERM/SIGINT/SIGHUP to bfrun stop the "
                "whole job."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-np", "-n", "--np", dest="np", type=int, help="number of ranks (agents)")
    p.add_argument("-H", "--hosts", help="host list, e.g. node1:4,node2:4")
    p.add_argument("--hostfile", help="MPI host file")
    p.add_argument("--timeline", "--timeline-filename", dest="timeline", metavar="PATH",
                   help="record every rank with jax.profiler and merge them into one "
                        "Chrome/Perfetto trace at PATH (ranks' files in PATH.ranks, via "
                        "BLUEFOG_TIMELINE)")
    p.add_argument("--local-size", type=int, help="ranks per machine for hierarchical ops "
                                                  "(sets BLUEFOG_LOCAL_SIZE)")
    p.add_argument("--mpiexec", help="path of mpiexec (default: the venv's, then PATH)")
    p.add_argument("--mpi-args", "--extra-mpi-flags", dest="mpi_args", default="",
                   help="extra mpiexec flags, passed through (quoted)")
    p.add_argument("-x", "--env", action="append", default=[], metavar="VAR=VALUE",
                   help="environment variable for every rank (repeatable)")
    p.add_argument("--grace", type=float, default=GRACE_SECONDS, metavar="SECONDS",
                   help="after SIGTERM/SIGINT/SIGHUP to bfrun, seconds the job gets to stop "
                        "before what is left of it is killed")
    p.add_argument("--no-hugepages", action="store_true",
                   help="do not set GLIBC_TUNABLES=glibc.malloc.hugetlb=1 for the ranks (set by "
                        "default: fewer page faults on large messages)")
    _restart_options(p)
    p.add_argument("--check", action="store_true", help="only check mpi4py/mpi4jax and exit")
    p.add_argument("--skip-check", action="store_true", help="do not check the MPI stack")
    p.add_argument("--dry-run", action="store_true", help="print the mpiexec command and exit")
    p.add_argument("program", nargs=argparse.REMAINDER, help="program and its arguments")
    return p


def _restart_options(p) -> None:
    """``--max-restarts``, ``--heartbeat-timeout``, ``--progress-timeout``
    (:mod:`bluefog_dist.restart`)."""
    g = p.add_argument_group("fault tolerance (bluefog_dist.restart)")
    g.add_argument("--max-restarts", type=int, default=0, metavar="K",
                   help="relaunch a failed job (a rank died or stalled) up to K times; the "
                        "program sees BLUEFOG_RESTART_COUNT and resumes from its newest "
                        "complete checkpoint (bluefog-train does so by itself)")
    g.add_argument("--heartbeat-timeout", type=float, default=HEARTBEAT_TIMEOUT,
                   metavar="SECONDS", help="with --max-restarts: a rank whose heartbeat is "
                                           "older than this is stalled (SIGSTOP, frozen node)")
    g.add_argument("--progress-timeout", type=float, default=None, metavar="SECONDS",
                   help="with --max-restarts: a rank whose step has not advanced for this long "
                        "is stalled (endless compute, deadlock); off by default")
    g.add_argument("--elastic", action="store_true",
                   help="with --max-restarts: relaunch on one rank fewer after each failure "
                        "(BLUEFOG_ELASTIC=1 on every rank; bluefog-train redistributes its "
                        "checkpoint over the new number of agents)")
    g.add_argument("--min-np", type=int, default=None, metavar="M",
                   help="with --elastic: never relaunch on fewer than M ranks (default 1)")


def _check_restart_options(args, parser) -> None:
    if args.max_restarts < 0:
        parser.error(f"--max-restarts must be >= 0; got {args.max_restarts}. Example: "
                     "--max-restarts 3")
    if args.min_np is not None and not args.elastic:
        parser.error("--min-np is the smallest relaunch of --elastic; add --elastic, or drop "
                     f"--min-np {args.min_np}.")
    if args.elastic:
        if not args.max_restarts:
            parser.error("--elastic relaunches a failed job on fewer ranks, so it needs "
                         "--max-restarts K >= 1. Example: --max-restarts 2 --elastic")
        if args.min_np is None:
            args.min_np = 1
        if not 1 <= args.min_np <= args.np:
            parser.error(f"--min-np must be between 1 and -np {args.np}; got {args.min_np}. "
                         "Example: --min-np 2")
        if args.local_size is not None:
            parser.error("--elastic cannot be combined with --local-size: a relaunch on "
                         "fewer ranks would not keep it a divisor of the rank count.")
    for name in ("heartbeat_timeout", "progress_timeout"):
        value = getattr(args, name)
        if value is not None and not 0 < value < float("inf"):
            parser.error(f"--{name.replace('_', '-')} must be a positive finite number of "
                         f"seconds; got {value}. Example: --{name.replace('_', '-')} 30")


def _program(args, parser) -> tuple[list[str], str | None]:
    """The program from the command line, resolved by :func:`resolve_program`."""
    program = list(args.program)
    if program[:1] == ["--"]:
        program = program[1:]
    if not program:
        parser.error("no program given. Example: bfrun -np 4 python train.py")
    return resolve_program(program)


def _rank_env(args, parser) -> dict:
    """Environment for every rank from ``-x``, ``--timeline`` and ``--local-size``."""
    if args.local_size is not None and (args.local_size < 1 or args.np % args.local_size):
        parser.error(f"--local-size must be a positive divisor of -np {args.np}; got {args.local_size}.")
    env = {}
    for item in args.env:
        if "=" not in item:
            parser.error(f"-x expects VAR=VALUE; got {item!r}.")
        k, v = item.split("=", 1)
        env[k] = v
    if args.timeline is not None:
        try:
            _, ranks = profile_merge.check_output(args.timeline)
        except ValueError as err:
            parser.error(str(err))
        env[profile_merge.ENV_VAR] = ranks
    if args.local_size is not None:
        env["BLUEFOG_LOCAL_SIZE"] = str(args.local_size)
    return env


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bfrun`` console script; returns the exit status.

    Parses the options, resolves the program (:func:`resolve_program`), checks the program's
    interpreter (:func:`check_mpi_stack`), builds the ``mpiexec`` command
    (:func:`build_command`) and runs it with :func:`bluefog_dist.supervise.run_job`, which
    forwards ``SIGTERM``/``SIGINT``/``SIGHUP`` to the whole job and waits for it.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.check:
        ok, report = check_mpi_stack(sys.executable)
        print(report, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    fill_from_allocation(args)  # inside Slurm: its hosts (and -np) unless -H/--hostfile
    if args.np is None or args.np < 1:
        parser.error(f"-np must be a positive number of ranks; got {args.np}. Example: bfrun -np 4 train.py")
    if not args.grace > 0 or args.grace == float("inf"):
        parser.error(f"--grace must be a positive finite number of seconds; got {args.grace}. "
                     "Example: --grace 30")
    _check_restart_options(args, parser)
    program, interpreter = _program(args, parser)
    env = _rank_env(args, parser)
    try:
        mpiexec = find_mpiexec(args.mpiexec, sys.executable)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 127
    flavour = mpi_flavour(mpiexec)
    for k, v in oversubscription_env(args.np, flavour, args.hosts or args.hostfile).items():
        env.setdefault(k, os.environ.get(k, v))
    if not args.no_hugepages:
        for k, v in large_message_env().items():
            env.setdefault(k, v)
    cmd = build_command(mpiexec, flavour, args.np, program, hosts=args.hosts,
                        hostfile=args.hostfile, env=env, extra=shlex.split(args.mpi_args))
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    if not args.skip_check:
        ok, report = check_mpi_stack(interpreter or sys.executable)
        if not ok:
            print(report, file=sys.stderr)
            return 1
    if args.timeline is not None:
        profile_merge.prepare_rank_dir(env[profile_merge.ENV_VAR])
    rc = _launch(args, cmd, env, mpiexec, flavour, program)
    if args.timeline is not None:
        print(profile_merge.finish(args.timeline, env[profile_merge.ENV_VAR]), file=sys.stderr)
    return rc


def _launch(args, cmd, env, mpiexec, flavour, program) -> int:
    """Run the job once (:func:`run_job`) or under ``--max-restarts``; the exit status."""
    if args.max_restarts:
        return supervise_restarts(
            lambda extra, size: build_command(mpiexec, flavour, size, program,
                                              hosts=args.hosts, hostfile=args.hostfile,
                                              env={**env, **extra},
                                              extra=shlex.split(args.mpi_args)),
            {**os.environ, **env}, max_restarts=args.max_restarts, grace=args.grace,
            heartbeat_timeout=args.heartbeat_timeout, progress_timeout=args.progress_timeout,
            np_=args.np, min_np=args.min_np if args.elastic else None)
    return run_job(cmd, {**os.environ, **env}, grace=args.grace)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
