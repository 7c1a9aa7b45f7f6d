"""Run an ``mpiexec`` job from ``bfrun`` so that stopping ``bfrun`` stops the whole job.

A batch scheduler stops a job by sending ``SIGTERM`` to the process it started (``bfrun``),
and a terminal sends ``SIGINT`` (Ctrl-C) or ``SIGHUP`` (hang-up). Python's default for
``SIGTERM`` and ``SIGHUP`` is to die at once, which left ``mpiexec``, its proxy and every rank
running: MPICH's Hydra starts the proxy and the ranks in sessions of their own, so they are
not in ``bfrun``'s process group and no group-wide signal reaches them. :func:`run_job`
therefore

1. forwards ``SIGTERM`` and ``SIGINT`` to ``mpiexec`` as they are, and ``SIGHUP`` as
   ``SIGTERM`` (``mpiexec`` relays ``SIGTERM``/``SIGINT`` to every rank, on every host, and
   cleans up; it does not handle ``SIGHUP``); every further signal is forwarded too (a
   program that stops at its next checkpoint on the first signal may exit at once on the
   second, as ``bluefog-train`` does);
2. remembers every process of the job on this machine (the descendants of ``mpiexec``,
   read from ``/proc``, with their start times so that a recycled PID is never hit);
3. if the job has not ended ``grace`` seconds after the first signal (default 5, ``bfrun
   --grace``), sends ``SIGKILL`` to ``mpiexec`` and to every remembered process that is still
   alive, then waits for ``mpiexec``. Checkpoints written atomically (``bluefog-train``'s)
   stay intact either way; give a longer grace where the job should reach its next
   checkpoint (and the scheduler's own grace period is longer).

A signal that was *ignored* when ``bfrun`` started stays ignored, as in every Unix program:
a shell without job control starts background jobs (``cmd &``, ``nohup cmd &``) with
``SIGINT`` ignored, and so their ``mpiexec`` and ranks ignore it too. Stop such a job with
``kill <pid>`` (``SIGTERM``), which is forwarded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["FORWARDED", "GRACE_SECONDS", "job_processes", "run_job"]

#: Signals that stop the job, and the signal each is forwarded to ``mpiexec`` as.
FORWARDED = {signal.SIGTERM: signal.SIGTERM, signal.SIGINT: signal.SIGINT,
             signal.SIGHUP: signal.SIGTERM}
#: Seconds between forwarding the first signal and killing what is left of the job.
GRACE_SECONDS = 5.0


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time in clock ticks)`` of ``pid`` from ``/proc``, or ``None``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie is already dead; only its parent's wait is missing
        return None
    return int(fields[1]), int(fields[19])


def job_processes(root: int) -> dict[int, int]:
    """Every live descendant of process ``root`` on this machine, as ``{pid: start time}``.

    The process tree is read from ``/proc/<pid>/stat`` (field 4: parent pid, field 22:
    start time), so it is empty where ``/proc`` does not exist (macOS); ``bfrun`` then relies
    on ``mpiexec`` alone to stop its ranks.

    Parameters
    ----------
    root : int
        The process whose descendants (children, grandchildren, ...) are wanted.

    Returns
    -------
    dict of int to int
        ``{pid: start time}`` of the descendants, ``root`` excluded.
    """
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc").is_dir() else ():
        info = _stat(int(entry.name))
        if info is not None:
            parents.setdefault(info[0], []).append(int(entry.name))
            starts[int(entry.name)] = info[1]
    found: dict[int, int] = {}
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = starts[pid]
            todo.extend(parents.get(pid, []))
    return found


def _kill_remembered(remembered: dict[int, int]) -> None:
    """``SIGKILL`` every remembered process that is still the same process (same start)."""
    for pid, start in remembered.items():
        info = _stat(pid)
        if info is not None and info[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _install(received: list[int]) -> dict:
    """Record forwarded signals in ``received``; keep signals that are ignored ignored."""
    previous = {}
    for sig in FORWARDED:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    return previous


def _stop_stalled(child, pid: int, remembered: dict) -> None:
    """``SIGKILL`` the stalled rank ``pid`` (if it belongs to the job; else the whole job):
    ``mpiexec`` then sees a dead rank and ends the others itself."""
    job = job_processes(child.pid)
    remembered.update(job)
    if pid in job:
        try:
            os.kill(pid, signal.SIGKILL)
            return
        except OSError:
            pass
    child.kill()
    _kill_remembered(remembered)


def run_job(cmd: list[str], env: dict, *, grace: float = GRACE_SECONDS,
            poll: float = 0.05, watch=None, signals: list | None = None) -> int:
    """Run ``cmd`` (an ``mpiexec`` command line) and stop the whole job if ``bfrun`` is stopped.

    Parameters
    ----------
    cmd : list of str
        The command line; ``cmd[0]`` is ``mpiexec`` (or ``mpirun``).
    env : dict
        Its environment.
    grace : float
        Seconds between forwarding the first stop signal (or stopping a stalled rank) and
        ``SIGKILL`` of what is left.
    poll : float
        Seconds between checks of the job's state.
    watch : callable ``() -> int or None``, optional
        Called at every check; a returned pid is a stalled rank
        (:class:`bluefog_dist.restart.Watchdog`): it gets ``SIGKILL`` and what is left of the
        job after ``grace`` seconds too.
    signals : list, optional
        Receives the numbers of the stop signals ``bfrun`` got.

    Returns
    -------
    int
        ``mpiexec``'s exit status, or ``128 + signal number`` when a signal stopped the job
        (the shell's convention: 143 for ``SIGTERM``, 130 for ``SIGINT``, 129 for ``SIGHUP``).

    References
    ----------
    GNU Bash Reference Manual, section 3.7.5 "Exit Status" (``128 + n`` for a command ended by
    signal ``n``) and section 3.7.6 "Signals" (background jobs started without job control
    ignore ``SIGINT``); MPICH's Hydra process manager, which relays ``SIGINT``/``SIGTERM``
    from ``mpiexec`` to every rank.
    """
    received: list[int] = [] if signals is None else signals
    previous = _install(received)
    try:
        child = subprocess.Popen(cmd, env=env)
        remembered: dict[int, int] = {}
        deadline, forwarded = None, 0
        while child.poll() is None:
            if received:
                remembered.update(job_processes(child.pid))
            while forwarded < len(received):
                child.send_signal(FORWARDED[signal.Signals(received[forwarded])])
                forwarded += 1
                deadline = deadline or time.monotonic() + grace
            stalled = watch() if watch is not None and deadline is None else None
            if stalled is not None:
                _stop_stalled(child, stalled, remembered)
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                child.kill()
                _kill_remembered(remembered)
                child.wait()
                break
            time.sleep(poll)
        if deadline is not None:  # what mpiexec left behind (none when it cleaned up)
            _kill_remembered(remembered)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + received[0] if received else child.returncode
