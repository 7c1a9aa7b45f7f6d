r"""Per-rank timeline of an MPI job, recorded by ``jax.profiler`` (Bluefog's ``BLUEFOG_TIMELINE``).

Turn it on with ``bfrun --timeline trace.json`` (one merged trace of all ranks, see
:mod:`bluefog_dist.profile_merge`), or with the environment variable ``BLUEFOG_TIMELINE=DIR``
/ ``MpiComm(timeline=DIR)`` / ``bluefog_dist.run(..., timeline=DIR)`` under any launcher; then
merge with ``python -m bluefog_dist.profile_merge DIR -o trace.json``.

What each rank does
-------------------
The first :class:`bluefog_dist.MpiComm` built with a timeline starts one ``jax.profiler``
session in the process (:func:`timeline_for`; Python tracer off, host tracer on, so XLA's
ops, mpi4jax's custom calls included, are timed where the compiled program runs them). The
start is collective (:func:`start_timeline`): one ``allgather``
(:func:`bluefog_dist.agreement.agree`) checks that every rank asks for a timeline (every
``MpiComm`` takes part in it, also with the timeline off) and shares any start error, so
that every rank raises instead of one rank waiting; it also serves as a barrier: right
after it each rank records its wall-clock time ``anchor_unix_ns``
(``time.time_ns()``). The session records until :meth:`Timeline.close`, which runs at
interpreter exit (or when called): it stops the profiler, converts the session
(:mod:`bluefog_dist.profile_export`) and writes ``DIR/rank<r>.json``, a Chrome trace whose
``ts`` are microseconds since the anchor, with ``otherData`` = ``{rank, size, host,
anchor_unix_ns, attempt}``. The raw profiler output stays in ``DIR/rank<r>/`` (TensorBoard /
XProf can open it). Nothing is converted earlier: stopping and converting cost about as
much as the recorded run (README ``mpi`` section), and would land inside the program's
timed work.

Messages are named by :class:`bluefog_dist.MpiComm`, not timed by it: each message is traced
inside ``jax.named_scope("bf.<op>.<primitive>")``, which only sets HLO metadata, so nothing
is added to the compiled program whether the timeline is on or off. The cost when on is the
profiler's (measured by ``benchmarks/timeline_overhead.py``, README ``mpi`` section).

A rank that dies without running its exit handlers (``MPI_Abort``, ``kill -9``) writes no
file; the merge names the missing ranks.

Reference: JAX profiling, https://docs.jax.dev/en/latest/profiling.html; Bluefog's timeline
(``BLUEFOG_TIMELINE``, Ying et al., arXiv:2111.04287, 2021).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import time

from .agreement import AgreementError, agree
from .profile_export import find_xplane, session_events
from .profile_merge import ENV_VAR, FORMAT, rank_file

__all__ = ["Timeline", "start_timeline", "timeline_for", "rank_file", "profile_options",
           "ENV_VAR", "FORMAT"]

_ACTIVE: dict = {"timeline": None}


def profile_options():
    """``jax.profiler.ProfileOptions`` of the timeline: Python tracer off (it would time every
    Python call), host tracer at its default level 2 (XLA ops and JAX's own annotations).

    Reference: JAX profiling, https://docs.jax.dev/en/latest/profiling.html."""
    import jax

    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0
    options.host_tracer_level = 2
    return options


def _check_directory(directory) -> str:
    if not isinstance(directory, (str, os.PathLike)) or not str(directory):
        raise TypeError(
            f"timeline must be the path of a directory for the per-rank trace files (str or "
            f"os.PathLike); got {directory!r}. Example: MpiComm(timeline='/tmp/bf_timeline'), "
            "or bfrun --timeline trace.json for one merged file.")
    return str(directory)


class Timeline:
    """One rank's ``jax.profiler`` recording, written as Chrome-trace JSON (module docstring).

    Made by :func:`start_timeline` (collective), which starts the profiler on every rank
    at once; :func:`timeline_for` keeps one per process.

    Parameters
    ----------
    directory : str or os.PathLike
        Where ``rank<r>.json`` and the raw profiler output go (created if missing); normally
        the same on every rank (the merge reads one directory), but not checked.
    rank, size : int
        This rank and the number of ranks; the rank numbers the file and the trace's
        ``pid``.

    References
    ----------
    Bluefog's timeline (``BLUEFOG_TIMELINE``; Ying et al., arXiv:2111.04287, 2021); JAX
    profiling (``jax.profiler.start_trace`` / ``stop_trace``).
    """

    def __init__(self, directory, rank: int, size: int):
        self.directory = _check_directory(directory)
        self.rank, self.size = int(rank), int(size)
        self.path = rank_file(self.directory, self.rank)
        self.events: list[dict] = []
        self._threads: dict = {}
        self.closed = False
        self._log_dir = None
        self.anchor_ns = time.time_ns()  # replaced by the time right after the start barrier

    def _start(self) -> None:
        import jax

        log_dir = os.path.join(self.directory, f"rank{self.rank}")
        shutil.rmtree(log_dir, ignore_errors=True)  # the raw output of an earlier job
        os.makedirs(log_dir)
        jax.profiler.start_trace(log_dir, profiler_options=profile_options())
        self._log_dir = log_dir

    def _stop(self, convert: bool = True) -> None:
        import jax

        if self._log_dir is None:
            return
        log_dir, self._log_dir = self._log_dir, None
        jax.profiler.stop_trace()
        xplane = find_xplane(log_dir) if convert else None
        if xplane is not None:
            self.events, self._threads = session_events(xplane, self.rank, self.anchor_ns)

    def _write(self) -> str:
        meta = [{"name": "process_name", "ph": "M", "pid": self.rank, "tid": 0,
                 "args": {"name": f"rank {self.rank}"}},
                {"name": "process_sort_index", "ph": "M", "pid": self.rank, "tid": 0,
                 "args": {"sort_index": self.rank}}]
        meta += [{"name": "thread_name", "ph": "M", "pid": self.rank, "tid": tid,
                  "args": {"name": name}} for name, tid in self._threads.items()]
        anchor = {"name": "timeline start barrier", "cat": "bluefog", "ph": "i", "s": "p",
                  "pid": self.rank, "tid": 0, "ts": 0.0}
        doc = {"traceEvents": meta + [anchor] + self.events, "displayTimeUnit": "ms",
               "otherData": {"bluefog_timeline": FORMAT, "rank": self.rank, "size": self.size,
                             "host": socket.gethostname(), "anchor_unix_ns": self.anchor_ns,
                             "attempt": int(os.environ.get("BLUEFOG_RESTART_COUNT", "0") or 0)}}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, self.path)
        return self.path

    def close(self) -> str:
        """Stop recording for good and write :attr:`path` (idempotent; runs at exit)."""
        if not self.closed:
            self.closed = True
            self._stop()
            self._write()
            if _ACTIVE["timeline"] is self:
                _ACTIVE["timeline"] = None
        return self.path


def start_timeline(directory, comm) -> Timeline | None:
    """Start a :class:`Timeline` on every rank of ``comm`` that names a directory (collective).

    Each rank starts its profiler (if ``directory`` is not ``None``), then all ranks take
    part in ONE ``allgather`` (:func:`bluefog_dist.agreement.agree`) comparing whether they
    asked for a timeline, and sharing any error (a bad ``directory``, a profiler already
    running). Right after it each rank takes its anchor, ``time.time_ns()``.

    Returns
    -------
    Timeline or None
        ``None`` when no rank asked for one.

    Raises
    ------
    bluefog_dist.agreement.AgreementError
        On every rank, if any rank failed to start or the ranks disagree on whether to record
        (e.g. ``BLUEFOG_TIMELINE`` set on some ranks only); no profiler is left running.

    Reference: ``MPI_Allgather`` as a barrier with data (MPI 4.0 standard, section 6.7).
    """
    box = {}

    def fields():
        if directory is None:
            return {"timeline requested": False}
        box["tl"] = Timeline(directory, comm.Get_rank(), comm.Get_size())
        box["tl"]._start()
        return {"timeline requested": True}

    try:
        agree(comm, fields, what="bluefog_dist timeline")
    except AgreementError:
        if "tl" in box:
            box["tl"]._stop(convert=False)  # another rank failed: leave no profiler running
        raise
    timeline = box.get("tl")
    if timeline is not None:
        timeline.anchor_ns = time.time_ns()  # every rank just left the same allgather
        atexit.register(timeline.close)
    return timeline


def timeline_for(directory, comm) -> Timeline | None:
    """The process's :class:`Timeline`: the running one, else :func:`start_timeline`.

    Every :class:`bluefog_dist.MpiComm` calls this with its ``timeline`` (``None`` when not
    asked), so several communicators share one profiler session. While none is running the
    call is collective (one ``allgather``, also when no rank asks, so that ranks that
    disagree raise instead of waiting); all ranks make the same calls, as they build the
    same communicators.

    Raises
    ------
    ValueError
        If a timeline for another directory is already recording in this process.
    bluefog_dist.agreement.AgreementError
        As :func:`start_timeline`.
    """
    active = _ACTIVE["timeline"]
    if active is not None and not active.closed:
        if directory is not None and active.directory != str(directory):
            raise ValueError(
                f"timeline: this process already records a timeline into "
                f"{active.directory!r} (one jax.profiler session per process); got "
                f"{str(directory)!r}. Use the same directory for every MpiComm, or close the "
                "first one (comm.timeline.close()) before starting another.")
        return active
    _ACTIVE["timeline"] = start_timeline(directory, comm)
    return _ACTIVE["timeline"]
