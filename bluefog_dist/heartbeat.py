"""Per-rank heartbeat files, so that ``bfrun`` can tell a stalled rank from a slow one.

MPI has no failure detector: a rank that is stopped (``SIGSTOP``, a frozen node) or that
never leaves a computation leaves the other ranks waiting in their next exchange forever.
When ``bfrun --max-restarts`` launches a job it sets ``BLUEFOG_HEARTBEAT_DIR``; every rank
then runs a small daemon thread (:func:`start`) that rewrites ``<dir>/rank-<r>.json`` every
``BLUEFOG_HEARTBEAT_INTERVAL`` seconds (default 1) with ``{"rank", "pid", "step",
"checkpoint", "done", "time"}`` (``done``: the program is exiting, no longer judged):

* the file's age tells whether the *process* runs: a stopped process cannot beat
  (``bfrun --heartbeat-timeout``);
* ``step`` is the last step the run reached (a record listener of the engine reports it
  after every dispatch, :mod:`bluefog.engine.observers`; else :func:`report`), so a process that beats but makes no progress (an endless computation, a
  deadlock) is seen too (``bfrun --progress-timeout``), and ``checkpoint`` is the step of the
  newest checkpoint written, from which ``bfrun`` reports the work lost by a restart.

Without ``BLUEFOG_HEARTBEAT_DIR`` everything here does nothing. Programs that do not use
:func:`bluefog_dist.run` call :func:`start` once and :func:`report` as they progress.

Reference: the heartbeat/timeout failure detector of Chandra and Toueg, "Unreliable failure
detectors for reliable distributed systems", J. ACM 43(2), 1996; torchrun's
``--monitor-interval`` and Horovod elastic's worker health checks play the same role.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time

__all__ = ["ENV_DIR", "ENV_INTERVAL", "start", "report", "beat_path", "read_beats"]

ENV_DIR = "BLUEFOG_HEARTBEAT_DIR"
ENV_INTERVAL = "BLUEFOG_HEARTBEAT_INTERVAL"
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
_STATE: dict = {"thread": None, "step": None, "checkpoint": None, "base": 0, "done": False,
                "lock": threading.Lock()}


def _rank() -> int | None:
    for var in _RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return None


def beat_path(directory, rank: int) -> str:
    """``<directory>/rank-<rank>.json``."""
    return os.path.join(os.fspath(directory), f"rank-{int(rank)}.json")


def _write(directory: str, rank: int) -> None:
    with _STATE["lock"]:
        body = {"rank": rank, "pid": os.getpid(), "step": _STATE["step"],
                "checkpoint": _STATE["checkpoint"], "done": _STATE["done"], "time": time.time()}
        final = beat_path(directory, rank)
        tmp = f"{final}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(body, f)
            os.replace(tmp, final)  # readers never see half a file
        except OSError:  # the supervisor removed the directory: nothing to report to
            pass


def _loop(directory: str, rank: int, interval: float) -> None:
    while True:
        _write(directory, rank)
        time.sleep(interval)


def start() -> bool:
    """Start this rank's heartbeat thread if ``bfrun`` asked for one (idempotent).

    Returns
    -------
    bool
        Whether a heartbeat runs in this process.
    """
    directory, rank = os.environ.get(ENV_DIR), _rank()
    if not directory or rank is None:
        return False
    if _STATE["thread"] is None:
        try:
            interval = float(os.environ.get(ENV_INTERVAL, "1"))
        except ValueError:
            interval = 1.0
        interval = min(max(interval, 0.05), 60.0)
        os.makedirs(directory, exist_ok=True)
        _write(directory, rank)
        thread = threading.Thread(target=_loop, args=(directory, rank, interval),
                                  name="bluefog-heartbeat", daemon=True)
        thread.start()
        _STATE["thread"] = thread
        from bluefog.engine import add_record_listener  # the engine's records carry the step

        add_record_listener(_on_records)
        atexit.register(_finish, directory, rank)  # before MPI_Finalize (registered earlier)
    return True


def _finish(directory: str, rank: int) -> None:
    """At exit: mark the beat ``done``, so that the time ``MPI_Finalize`` waits for slower
    ranks (the beating thread stops with the interpreter) is never taken for a stall."""
    _STATE["done"] = True
    _write(directory, rank)


def _on_records(steps, metrics) -> None:
    """Record listener (:mod:`bluefog.engine.observers`): the last step of each dispatch."""
    if len(steps):
        report(step=int(steps[-1]))


def report(*, step: int | None = None, checkpoint: int | None = None,
           base: int | None = None) -> None:
    """Record progress for the next beat: ``step`` reached (counted from ``base``, the step
    this call of the run started at, e.g. a resumed checkpoint's), newest ``checkpoint``."""
    with _STATE["lock"]:
        if base is not None:
            _STATE["base"] = int(base)
            _STATE["step"] = int(base)
        if step is not None:
            _STATE["step"] = _STATE["base"] + int(step)
        if checkpoint is not None:
            _STATE["checkpoint"] = int(checkpoint)
    if _STATE["thread"] is not None:  # recorded either way; written once a heartbeat runs
        _write(os.environ[ENV_DIR], _rank())


def read_beats(directory) -> dict[int, dict]:
    """``{rank: beat}`` of every readable heartbeat file in ``directory``, each beat with
    ``"age"``: seconds since the file was last written (from its modification time)."""
    found: dict[int, dict] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return found
    now = time.time()
    for name in names:
        if not (name.startswith("rank-") and name.endswith(".json")):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                beat = json.load(f)
            beat["age"] = now - os.stat(path).st_mtime
        except (OSError, ValueError):
            continue
        if isinstance(beat, dict) and isinstance(beat.get("rank"), int):
            found[beat["rank"]] = beat
    return found
