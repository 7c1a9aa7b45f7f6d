"""``bfrun --max-restarts K``: relaunch a failed job from its newest complete checkpoint.

The model is torchrun's ``--max-restarts`` (a failed worker group is stopped and restarted as
a whole, up to K times) and Horovod elastic's promise that a run survives a lost worker by
going back to its last committed state. A launch *fails* when ``mpiexec`` exits non-zero
without ``bfrun`` having been asked to stop (a rank killed with ``kill -9`` makes MPICH's
Hydra end the other ranks at once: measured about 1 s), or when the :class:`Watchdog` finds
a stalled rank: then that rank gets ``SIGKILL`` and Hydra ends the others the same way.

The contract with the program (every launch runs the same command line):

* ``BLUEFOG_RESTART_COUNT`` is 0 on the first launch, ``k`` on the ``k``-th relaunch;
  ``BLUEFOG_MAX_RESTARTS`` is ``K``. On ``k >= 1`` the program continues from its newest
  complete checkpoint (``bluefog-train`` does so by itself when given ``--checkpoint-dir``
  and ``--checkpoint-every``; a user script reads the variable and resumes).
* ``BLUEFOG_HEARTBEAT_DIR`` names a fresh directory per launch in which every rank beats
  (:mod:`bluefog_dist.heartbeat`; :func:`bluefog_dist.run` starts it, other programs call
  :func:`bluefog_dist.heartbeat.start`). A rank whose file is older than
  ``--heartbeat-timeout`` seconds (default 60) is stalled (``SIGSTOP``, a frozen node). With
  ``--progress-timeout T`` a rank whose reported step has not moved for ``T`` seconds after
  its first report is stalled too (an endless computation, a deadlock); off by default, as
  compiling can take long. Ranks are judged only once they have beaten (start-up is not).

``--elastic`` (with ``--min-np M``, default 1) relaunches on one rank fewer after each
failure, down to ``M``: the program then finds a checkpoint of more agents than it has ranks
and redistributes it (``bluefog-train`` does so by itself: every agent starts from the
checkpoint's average parameters, :mod:`bluefog_train.elastic`); every rank sees
``BLUEFOG_ELASTIC=1``. On one machine nothing is really lost, so this serves to test the path;
on a cluster, drop the failed node from the host list yourself (``bfrun`` cannot tell which
node failed from ``mpiexec``'s exit status).

After each failure ``bfrun`` prints which rank failed and how, the step the ranks had
reached and the newest checkpoint they reported, i.e. the work lost (at most one checkpoint
interval plus the steps of one dispatch).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import time

from . import heartbeat
from .supervise import run_job

__all__ = ["HEARTBEAT_TIMEOUT", "ELASTIC_ENV", "Watchdog", "elastic_sizes", "supervise_restarts"]

#: Set to ``1`` on every rank under ``bfrun --elastic`` (read by
#: :func:`bluefog_train.elastic.elastic_requested`).
ELASTIC_ENV = "BLUEFOG_ELASTIC"

#: Default seconds without a heartbeat after which a rank is stalled.
HEARTBEAT_TIMEOUT = 60.0


class Watchdog:
    """Decide, from the heartbeat files of one launch, whether a rank is stalled.

    Parameters
    ----------
    directory : path
        The launch's ``BLUEFOG_HEARTBEAT_DIR``.
    timeout : float
        Seconds a heartbeat file may age.
    progress_timeout : float, optional
        Seconds a rank's reported step may stay the same (``None``: not checked).
    every : float
        Seconds between two reads of the directory.
    """

    def __init__(self, directory, timeout: float, progress_timeout: float | None = None,
                 every: float = 0.25):
        self.directory, self.timeout, self.progress_timeout = directory, timeout, progress_timeout
        self.every, self._next = every, 0.0
        self.moved: dict[int, tuple] = {}  # rank -> (step, time it was first seen)
        self.reason: str | None = None
        self.last: dict[int, dict] = {}

    def __call__(self) -> int | None:
        """The pid of a stalled rank, or ``None``; sets :attr:`reason` when one is found."""
        now = time.monotonic()
        if now < self._next or self.reason is not None:
            return None
        self._next = now + self.every
        beats = heartbeat.read_beats(self.directory)
        self.last.update(beats)
        for rank, beat in sorted(beats.items()):
            if beat.get("done"):  # exiting (MPI_Finalize may wait for the others): not judged
                continue
            if beat["age"] > self.timeout:
                self.reason = (f"rank {rank} (pid {beat.get('pid')}) sent no heartbeat for "
                               f"{beat['age']:.1f} s (--heartbeat-timeout {self.timeout:g})")
                return beat.get("pid")
            step = beat.get("step")
            if self.progress_timeout is None or step is None:
                continue
            if self.moved.get(rank, (None,))[0] != step:
                self.moved[rank] = (step, now)
            elif now - self.moved[rank][1] > self.progress_timeout:
                self.reason = (f"rank {rank} (pid {beat.get('pid')}) stayed at step {step} for "
                               f"{now - self.moved[rank][1]:.1f} s (--progress-timeout "
                               f"{self.progress_timeout:g})")
                return beat.get("pid")
        return None

    def progress(self) -> tuple[int | None, int | None]:
        """``(step reached, newest checkpoint step)`` over the ranks' last beats."""
        self.last.update(heartbeat.read_beats(self.directory))
        steps = [b["step"] for b in self.last.values() if isinstance(b.get("step"), int)]
        cks = [b["checkpoint"] for b in self.last.values() if isinstance(b.get("checkpoint"), int)]
        return (max(steps) if steps else None), (min(cks) if cks else None)


def _say(text: str) -> None:
    print(f"bfrun: {text}", file=sys.stderr, flush=True)


def _lost_work(watch: Watchdog) -> str:
    reached, checkpoint = watch.progress()
    if reached is None:
        return "no step was reported"
    if checkpoint is None:
        return f"the ranks had reached step {reached}; no checkpoint was reported, so the " \
               f"relaunch starts over (lost work: {reached} steps)"
    return (f"the ranks had reached step {reached}, the newest checkpoint is at step "
            f"{checkpoint} (lost work: {reached - checkpoint} steps)")


def elastic_sizes(np_: int, min_np: int):
    """The rank counts of the launches under ``--elastic``: ``np_``, then one fewer after each
    failure, never below ``min_np`` (``[4, 3, 2, 2, ...]`` for 4 and 2)."""
    size = np_
    while True:
        yield size
        size = max(min_np, size - 1)


def supervise_restarts(make_cmd, env: dict, *, max_restarts: int, grace: float,
                       heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
                       progress_timeout: float | None = None,
                       heartbeat_interval: float | None = None,
                       np_: int | None = None, min_np: int | None = None) -> int:
    """Run the job, relaunching it up to ``max_restarts`` times after a failure.

    Parameters
    ----------
    make_cmd : callable ``(dict, int or None) -> list of str``
        The ``mpiexec`` command line, given the extra environment of this launch (so that
        the variables reach every rank whatever the MPI flavour) and its number of ranks.
    env : dict
        The environment of ``mpiexec``.
    max_restarts : int >= 0
    grace : float
        As in :func:`bluefog_dist.supervise.run_job`.
    heartbeat_timeout, progress_timeout : float
        See :class:`Watchdog`.
    heartbeat_interval : float, optional
        Seconds between beats (default: a fifth of ``heartbeat_timeout``, at most 1).
    np_ : int, optional
        Ranks of the first launch (passed on to ``make_cmd``).
    min_np : int, optional
        ``--elastic``: each relaunch gets one rank fewer than the launch that failed, never
        fewer than ``min_np`` (:func:`elastic_sizes`), and every rank sees
        ``BLUEFOG_ELASTIC=1``. ``mpiexec``'s exit status does not say how many ranks were
        lost, so one failure counts as one lost rank. ``None``: every launch has ``np_``.

    Returns
    -------
    int
        0 once a launch succeeds; else the last launch's status (``128 + n`` when ``bfrun``
        itself was stopped by signal ``n``, which is never followed by a relaunch).
    """
    interval = heartbeat_interval or min(1.0, heartbeat_timeout / 5)
    elastic = min_np is not None
    sizes = list(itertools.islice(elastic_sizes(np_, min_np) if elastic
                                  else itertools.repeat(np_), max_restarts + 1))
    root = tempfile.mkdtemp(prefix="bfrun-heartbeat-")
    try:
        for attempt, size in enumerate(sizes):
            beats = os.path.join(root, f"launch-{attempt}")
            extra = {"BLUEFOG_RESTART_COUNT": str(attempt),
                     "BLUEFOG_MAX_RESTARTS": str(max_restarts),
                     heartbeat.ENV_DIR: beats, heartbeat.ENV_INTERVAL: f"{interval:g}"}
            if elastic:
                extra[ELASTIC_ENV] = "1"
            watch, signals = Watchdog(beats, heartbeat_timeout, progress_timeout), []
            t0 = time.monotonic()
            code = run_job(make_cmd(extra, size), {**env, **extra}, grace=grace, watch=watch,
                           signals=signals)
            if code == 0 or signals:
                return code
            why = watch.reason or f"the job exited with status {code} (a rank failed or died)"
            _say(f"launch {attempt} failed after {time.monotonic() - t0:.1f} s: {why}; "
                 f"{_lost_work(watch)}.")
            if attempt == max_restarts:
                _say(f"giving up after {max_restarts} restart(s) (--max-restarts {max_restarts}).")
                return code if code else 1
            where = ""
            if elastic:
                where = f" on {sizes[attempt + 1]} rank(s) (--elastic, --min-np {min_np})"
            _say(f"relaunching from the newest complete checkpoint{where} (restart "
                 f"{attempt + 1} of {max_restarts}).")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 1  # pragma: no cover - the loop always returns
