"""Can the MPI in use continue on the survivors of a lost rank (ULFM)? A reproducible probe.

    python tools/ulfm_probe.py [--timeout 60]          # runs the three launches below, verdict
    mpiexec -n 3 python tools/ulfm_probe.py            # one launch, the ranks' own report

ULFM (User-Level Failure Mitigation, the MPI Forum's fault-tolerance proposal; MPICH ships it
as ``MPIX_Comm_revoke``, ``MPIX_Comm_shrink``, ``MPIX_Comm_agree``, ``MPIX_Comm_get_failed``;
mpi4py exposes them as ``Comm.Revoke``, ``Comm.Shrink``, ``Comm.Agree``, ``Comm.Get_failed``)
lets the survivors of a failed process revoke the communicator, agree on who is left and
build a smaller communicator that goes on. Whether that works depends on the library *and*
on the launcher, so the probe checks both:

1. **API** (every rank, on a healthy duplicate of ``COMM_WORLD``): is each function present
   in mpi4py, and does it run (``Agree`` of the ranks' flags, ``Shrink`` to the full size,
   ``Get_failed`` empty, ``Revoke`` of a throw-away duplicate)?
2. **Survival**: the last rank kills itself with ``SIGKILL`` after a barrier; each survivor
   waits 1 s, says it is alive, and (error handler ``MPI.ERRORS_RETURN``) calls
   ``allreduce`` on the duplicate, then, if that
   raised, ``Revoke``, ``Shrink`` and an ``allreduce`` on the shrunk communicator. Each call
   is timed out by a watchdog thread (``--step-timeout``, default 10 s), so a hang is
   reported, not waited for. A survivor that gets through prints ``CONTINUED``.

Without ``mpiexec`` (no ``PMI_RANK`` in the environment) the script is the *driver*: it runs
itself under ``mpiexec -n 3`` in three configurations, each with a timeout: Hydra's default;
``-disable-auto-cleanup`` (Hydra's option to keep the other ranks alive when one dies); and
``-disable-auto-cleanup`` with ``MPIR_CVAR_ENABLE_FT=1`` (MPICH's control variable that
enables its fault-tolerance code paths). It prints, per configuration, mpiexec's exit status,
how long after the kill the job ended, which survivors continued, and an assertion or error
message if ``MPI_Init`` failed; then one line ``VERDICT: ...``.

References: W. Bland et al., "Post-failure recovery of MPI communication capability: design
and rationale", IJHPCA 27(3), 2013 (ULFM); MPICH's ``mpiexec -help`` (Hydra options) and
its CVAR list (``MPIR_CVAR_ENABLE_FT``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time

FUNCTIONS = ("Shrink", "Agree", "Revoke", "Get_failed")
CONFIGS = (("default", [], {}),
           ("-disable-auto-cleanup", ["-disable-auto-cleanup"], {}),
           ("-disable-auto-cleanup + MPIR_CVAR_ENABLE_FT=1", ["-disable-auto-cleanup"],
            {"MPIR_CVAR_ENABLE_FT": "1"}))


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")  # one write per line: the ranks share one pipe
    sys.stdout.flush()


def _guarded(rank: int, what: str, fn, timeout: float):
    """``fn()``; a watchdog ends this process (status 3) if it does not return in time."""
    done = threading.Event()

    def watch():
        if not done.wait(timeout):
            _say(f"SURVIVOR {rank}: {what} did not return within {timeout:g} s (hang)")
            os._exit(3)

    threading.Thread(target=watch, daemon=True).start()
    try:
        return fn()
    finally:
        done.set()


def _api_report(MPI, world) -> None:
    rank, dup = world.Get_rank(), world.Dup()
    for name in FUNCTIONS:
        if not hasattr(MPI.Comm, name):
            _say(f"API {rank} {name}: absent from mpi4py")
            continue
        try:
            if name == "Shrink":
                got = f"size {dup.Shrink().Get_size()}"
            elif name == "Agree":
                got = f"flag {dup.Agree(1)}"
            elif name == "Get_failed":
                got = f"{dup.Get_failed().Get_size()} failed"
            else:
                spare = dup.Dup()
                spare.Revoke()
                got = f"revoked {spare.Is_revoked()}"
            _say(f"API {rank} {name}: present, runs on a healthy communicator ({got})")
        except (NotImplementedError, MPI.Exception) as err:
            _say(f"API {rank} {name}: present, fails: {type(err).__name__}: {err}")
    dup.Free()


def _survive(MPI, comm, rank: int, timeout: float) -> None:
    time.sleep(1.0)  # let the kill happen
    _say(f"SURVIVOR {rank}: alive 1 s after the kill")
    try:
        total = _guarded(rank, "allreduce after the kill", lambda: comm.allreduce(1), timeout)
        _say(f"SURVIVOR {rank}: allreduce returned {total} (the failure went unnoticed)")
        return
    except MPI.Exception as err:
        _say(f"SURVIVOR {rank}: allreduce raised {err.Get_error_class()}: {err}")
    try:
        _guarded(rank, "Revoke", comm.Revoke, timeout)
        small = _guarded(rank, "Shrink", comm.Shrink, timeout)
        total = _guarded(rank, "allreduce on the shrunk communicator",
                         lambda: small.allreduce(1), timeout)
        _say(f"SURVIVOR {rank}: CONTINUED on a shrunk communicator of size "
             f"{small.Get_size()} (allreduce = {total})")
    except (NotImplementedError, MPI.Exception) as err:
        _say(f"SURVIVOR {rank}: recovery failed: {type(err).__name__}: {err}")


def rank_side(step_timeout: float) -> None:
    """The probe on one rank (module docstring, steps 1 and 2)."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    if rank == 0:
        _say(f"LIBRARY {MPI.Get_library_version().splitlines()[0].strip()}; mpi4py "
             f"{__import__('mpi4py').__version__}; {size} ranks")
    _api_report(MPI, world)
    comm = world.Dup()
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    world.Barrier()
    if rank == size - 1:
        _say(f"VICTIM {rank} killed at {time.time():.3f}")
        os.kill(os.getpid(), signal.SIGKILL)
    _survive(MPI, comm, rank, step_timeout)


def _launch(mpiexec: str, flags: list, env: dict, timeout: float, step_timeout: float) -> dict:
    cmd = [mpiexec, "-n", "3", *flags, sys.executable, os.path.abspath(__file__),
           "--step-timeout", str(step_timeout)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **env}, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, code = proc.communicate()[0] + f"\n(killed after {timeout:g} s)", None
    ended = time.time()
    killed = re.search(r"VICTIM \d+ killed at ([\d.]+)", out)
    return {"code": code, "out": out,
            "after_kill": None if killed is None else ended - float(killed.group(1)),
            "continued": sorted(set(re.findall(r"SURVIVOR (\d+): CONTINUED", out))),
            "alive": sorted(set(re.findall(r"SURVIVOR (\d+): alive 1 s after", out))),
            "api": sorted(set(re.findall(r"API \d+ (\w+): present, runs", out))),
            "api_fails": sorted(set(re.findall(r"API \d+ (\w+: present, fails: \w+)", out))),
            "init_failed": re.search(r"(Assertion[^\n]*|Fatal error in [^\n]*)", out)}


def _describe(name: str, r: dict) -> str:
    if r["init_failed"] and not r["api"]:
        return f"{name}: MPI_Init failed ({r['init_failed'].group(1).strip()[:160]})"
    gone = "" if r["after_kill"] is None else \
        f", the job ended {r['after_kill']:.2f} s after the kill"
    alive = (f"survivors {', '.join(r['continued'])} CONTINUED" if r["continued"]
             else "no survivor continued")
    raised = re.findall(r"SURVIVOR (\d+): (?:allreduce raised|recovery failed)", r["out"])
    if not r["alive"]:
        alive += " (the survivors were ended within 1 s of the kill, before their next MPI call)"
    elif not r["continued"] and not raised:
        alive += (f" (survivor(s) {', '.join(r['alive'])} alive 1 s after the kill, then ended "
                  "inside their next MPI call, which neither returned nor raised)")
    hangs = len(re.findall(r"did not return within", r["out"]))
    fails = "".join(f"; {f.replace(': present, fails:', ' fails with')}" for f in r["api_fails"])
    return (f"{name}: mpiexec exit status {r['code']}{gone}; API that runs on a healthy "
            f"communicator: {', '.join(r['api']) or 'none'}{fails}; {alive}"
            + (f" ({hangs} survivor call(s) hung)" if hangs else ""))


def driver(timeout: float, step_timeout: float) -> int:
    """Run the three launches (module docstring) and print the verdict; returns 0."""
    from shutil import which

    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = here if os.path.exists(here) else which("mpiexec")
    if mpiexec is None:
        print("VERDICT: no mpiexec found next to this Python nor on PATH; nothing probed.")
        return 1
    results = {}
    for name, flags, env in CONFIGS:
        results[name] = r = _launch(mpiexec, flags, env, timeout, step_timeout)
        print(_describe(name, r), flush=True)
    api = sorted(set().union(*(r["api"] for r in results.values())))
    missing = sorted(set(FUNCTIONS) - set(api))
    survived = [n for n, r in results.items() if r["continued"]]
    print(f"VERDICT: ULFM API that runs on a healthy communicator: {', '.join(api) or 'none'}"
          f" (not: {', '.join(missing) or 'none'}); "
          + (f"survivors of kill -9 continued under: {'; '.join(survived)}" if survived else
             "survivors of kill -9 could NOT continue under any configuration tried: restart "
             "from a checkpoint (bfrun --max-restarts) is the path with this MPI"), flush=True)
    return 0


def main(argv=None) -> int:
    """Driver without ``mpiexec``, rank side under it (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds per mpiexec launch (driver)")
    ap.add_argument("--step-timeout", type=float, default=10.0,
                    help="seconds a survivor waits for one MPI call before reporting a hang")
    args = ap.parse_args(argv)
    if not (args.timeout > 0 and args.step_timeout > 0):
        ap.error(f"--timeout and --step-timeout must be > 0; got {args.timeout}, "
                 f"{args.step_timeout}")
    if "PMI_RANK" in os.environ or "PMI_SIZE" in os.environ:
        rank_side(args.step_timeout)
        return 0
    return driver(args.timeout, args.step_timeout)


if __name__ == "__main__":
    sys.exit(main())
