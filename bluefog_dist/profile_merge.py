r"""Merge the per-rank timelines of an MPI job into ONE Chrome / Perfetto trace.

Each rank writes ``DIR/rank<r>.json`` (:mod:`bluefog_dist.timeline`): Chrome trace events
whose ``ts`` are microseconds since that rank's *anchor*, its wall-clock time
(``time.time_ns()``) right after the timeline's start barrier, recorded in ``otherData``
with the rank's host. :func:`merge` puts them in one trace, one process (``pid``) per rank
named ``"rank r"``, on one clock:

* **Ranks on the host of the reference rank** (the lowest rank present, normally 0) keep
  their own wall-clock times: jax.profiler's timestamps are ``CLOCK_REALTIME``, one clock
  per machine, so their order across ranks is exact.
* **A rank on another host** gets the clock shift
  :math:`s_h = a_{\text{ref}} - a_{m(h)}`, where :math:`m(h)` is the lowest rank on its host
  :math:`h` and :math:`a` the anchors: the start barrier of that rank then coincides with the
  reference rank's. Machines' clocks can differ by milliseconds (NTP); the barrier aligns
  them to within its exit skew (the network latency, plus scheduling delays when ranks
  outnumber cores). Ranks on one host share its shift.

An event of rank :math:`r` at ``ts`` (relative to :math:`a_r`) lands at
:math:`ts + (a_r + s_r - T_0) / 1000` microseconds, where :math:`T_0` is the earliest aligned
event of the job, so the merged trace starts at 0; ``otherData`` records :math:`T_0`
(``t0_unix_ns``), the shifts and the hosts. Files of several launches of one job
(``bfrun --max-restarts``) are told apart by their ``attempt``; only the last attempt's
are merged.

Command line (for jobs started with ``mpiexec`` and ``BLUEFOG_TIMELINE=DIR``)::

    python -m bluefog_dist.profile_merge DIR -o trace.json     # or trace.json.gz

``bfrun --timeline trace.json`` does the same after the job (:func:`check_output`,
:func:`prepare_rank_dir`, :func:`finish`). Open the result at https://ui.perfetto.dev
("Open trace file") or in Chrome at ``chrome://tracing`` ("Load").

Reference: Chrome "Trace Event Format" (Google, 2016): JSON object format, ``"X"``
complete events, ``"M"`` metadata events ``process_name`` / ``thread_name``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import sys

__all__ = ["ENV_VAR", "FORMAT", "rank_file", "load_rank_files", "clock_shifts", "merge",
           "merge_directory", "check_output", "prepare_rank_dir", "finish", "main"]

#: Environment variable that turns the timeline on (value: the directory of the rank files).
ENV_VAR = "BLUEFOG_TIMELINE"
#: ``otherData["bluefog_timeline"]`` of a rank file.
FORMAT = "rank-v1"
#: Marker file in a rank directory made by ``bfrun`` (so that it may be removed again).
MARKER = ".bfrun-timeline"
_RANK_FILE = re.compile(r"^rank(\d+)\.json$")


def rank_file(directory: str, rank: int) -> str:
    """The file rank ``rank`` writes in ``directory``.

    >>> rank_file("/tmp/tl", 3)
    '/tmp/tl/rank3.json'
    """
    return os.path.join(str(directory), f"rank{int(rank)}.json")


def _read(path: str) -> dict:
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"timeline merge: cannot read {path} as JSON ({err}); was the rank "
                         "killed while writing it? Rerun the job.") from err
    info = doc.get("otherData", {}) if isinstance(doc, dict) else {}
    if info.get("bluefog_timeline") != FORMAT or not isinstance(doc.get("traceEvents"), list):
        raise ValueError(f"timeline merge: {path} is not a bluefog rank timeline (expected "
                         f"otherData.bluefog_timeline == {FORMAT!r} and a traceEvents list); "
                         "pass the directory given to BLUEFOG_TIMELINE.")
    for key in ("rank", "size", "host", "anchor_unix_ns"):
        if key not in info:
            raise ValueError(f"timeline merge: {path} lacks otherData.{key}; it was not written "
                             "by bluefog_dist.timeline.")
    return doc


def load_rank_files(directory: str) -> tuple[list[dict], list[str]]:
    r"""The rank files in ``directory`` (last attempt only), sorted by rank, and notes on
    what was left out.

    A file belongs to the last launch when its ``otherData.attempt``
    (``BLUEFOG_RESTART_COUNT``, :mod:`bluefog_dist.restart`) is the largest present; ranks
    :math:`\{0, \dots, \text{size} - 1\}` without a file are reported missing.

    Raises
    ------
    ValueError
        If ``directory`` holds no ``rank<r>.json``, or one is not a rank timeline.
    """
    names = sorted(n for n in os.listdir(directory) if _RANK_FILE.match(n)) \
        if os.path.isdir(directory) else []
    if not names:
        raise ValueError(f"timeline merge: no rank<r>.json in {directory!r}; the program must "
                         "build a bluefog_dist.MpiComm (bluefog_dist.run does) while "
                         f"{ENV_VAR} names this directory, and its ranks must exit normally.")
    docs = [_read(os.path.join(directory, n)) for n in names]
    last = max(d["otherData"].get("attempt", 0) for d in docs)
    notes = [f"ignored rank{d['otherData']['rank']}.json of attempt "
             f"{d['otherData'].get('attempt', 0)} (last attempt: {last})"
             for d in docs if d["otherData"].get("attempt", 0) != last]
    docs = sorted((d for d in docs if d["otherData"].get("attempt", 0) == last),
                  key=lambda d: d["otherData"]["rank"])
    size = max(d["otherData"]["size"] for d in docs)
    missing = sorted(set(range(size)) - {d["otherData"]["rank"] for d in docs})
    if missing:
        notes.append(f"no timeline from rank(s) {', '.join(map(str, missing))} of {size} (a "
                     "rank that died before exiting writes none)")
    return docs, notes


def clock_shifts(infos: list[dict]) -> dict[int, int]:
    r"""``{rank: shift_ns}`` for the ``otherData`` of the rank files.

    .. math:: s_r = \begin{cases} 0 & h_r = h_{\text{ref}} \\
              a_{\text{ref}} - a_{m(h_r)} & \text{otherwise} \end{cases}

    with :math:`h_r` the host of rank :math:`r`, :math:`a` the anchors (Unix ns right after
    the start barrier), ``ref`` the lowest rank and :math:`m(h)` the lowest rank on host
    :math:`h`. Barrier-based offset estimation as in MPI clock synchronisation (e.g.
    ``MPI_Wtime`` with ``MPI_WTIME_IS_GLOBAL`` false: MPI 4.0 standard, section 9.6).

    >>> clock_shifts([{"rank": 0, "host": "a", "anchor_unix_ns": 100},
    ...               {"rank": 1, "host": "a", "anchor_unix_ns": 130},
    ...               {"rank": 2, "host": "b", "anchor_unix_ns": 5000}])
    {0: 0, 1: 0, 2: -4900}
    """
    ordered = sorted(infos, key=lambda i: i["rank"])
    ref = ordered[0]
    first_on_host: dict = {}
    for info in ordered:
        first_on_host.setdefault(info["host"], info)
    return {info["rank"]: 0 if info["host"] == ref["host"]
            else int(ref["anchor_unix_ns"]) - int(first_on_host[info["host"]]["anchor_unix_ns"])
            for info in ordered}


def merge(docs: list[dict]) -> dict:
    r"""One Chrome trace of the rank files ``docs`` (as :func:`load_rank_files` returns them).

    An event of rank :math:`r` at ``ts`` (microseconds since its anchor :math:`a_r`) moves to
    :math:`ts + (a_r + s_r - T_0) / 1000` with the shifts :math:`s_r` of
    :func:`clock_shifts` and :math:`T_0 = \min_r \min_e (a_r + s_r + 1000\, ts_e)`, the
    earliest aligned event; ``pid`` becomes the rank; ``otherData`` records :math:`T_0`, the
    shifts and the hosts. Reference: Chrome "Trace Event Format" (JSON object format).
    """
    infos = [d["otherData"] for d in docs]
    shifts = clock_shifts(infos)
    base = {i["rank"]: int(i["anchor_unix_ns"]) + shifts[i["rank"]] for i in infos}
    starts = [base[d["otherData"]["rank"]] + int(min(e["ts"] for e in d["traceEvents"]
                                                     if "ts" in e) * 1000)
              for d in docs if any("ts" in e for e in d["traceEvents"])]
    t0 = min(starts) if starts else min(base.values())
    events = []
    for doc in docs:
        rank = doc["otherData"]["rank"]
        offset_us = (base[rank] - t0) / 1000.0
        for ev in doc["traceEvents"]:
            ev = dict(ev, pid=rank)
            if "ts" in ev:
                ev["ts"] = ev["ts"] + offset_us
            events.append(ev)
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"bluefog_timeline": "merged", "ranks": [i["rank"] for i in infos],
                          "t0_unix_ns": t0, "clock_shift_ns": {str(r): s for r, s in shifts.items()},
                          "hosts": {str(i["rank"]): i["host"] for i in infos},
                          "clock": "wall clock (CLOCK_REALTIME) per host; other hosts aligned "
                                   "on the timeline's start barrier"}}


def merge_directory(directory: str, out: str) -> tuple[dict, list[str]]:
    """Merge ``directory``'s rank files into ``out`` (gzip if it ends in ``.gz``); returns
    the merged trace and the notes of :func:`load_rank_files`."""
    docs, notes = load_rank_files(directory)
    merged = merge(docs)
    opener = gzip.open if str(out).endswith(".gz") else open
    tmp = f"{out}.tmp"
    with opener(tmp, "wt") as fh:
        json.dump(merged, fh)
    os.replace(tmp, out)
    return merged, notes


def check_output(path) -> tuple[str, str]:
    """Validate ``bfrun --timeline PATH`` before launch; ``(PATH, rank directory)``.

    The rank directory is ``PATH + ".ranks"``, made absolute (every rank writes there, whatever
    its working directory). Nothing is created here. Like Bluefog's ``--timeline-filename``
    (Ying et al., arXiv:2111.04287), but one file for the whole job.

    Raises
    ------
    ValueError
        ``PATH`` is empty or a directory, its directory does not exist or is not writable,
        or ``PATH.ranks`` exists and was not made by ``bfrun``.
    """
    path = str(path)
    parent = os.path.dirname(os.path.abspath(path)) if path else ""
    problem = ("it is empty" if not path else
               "it is a directory" if os.path.isdir(path) else
               f"its directory {parent} does not exist" if not os.path.isdir(parent) else
               f"its directory {parent} is not writable" if not os.access(parent, os.W_OK)
               else None)
    if problem:
        raise ValueError(f"--timeline expects the path of the merged trace file, in an existing "
                         f"writable directory; got {path!r}, but {problem}. Example: "
                         "--timeline /tmp/bluefog_trace.json")
    ranks = os.path.abspath(path) + ".ranks"
    if os.path.exists(ranks) and not os.path.exists(os.path.join(ranks, MARKER)):
        raise ValueError(f"--timeline {path!r}: bfrun keeps the ranks' files in {ranks!r}, "
                         "which exists and was not made by bfrun; move it away or choose "
                         "another --timeline path.")
    return path, ranks


def prepare_rank_dir(ranks: str) -> None:
    """Create an empty rank directory for a launch (a previous bfrun's is removed)."""
    if os.path.exists(os.path.join(ranks, MARKER)):
        shutil.rmtree(ranks)
    os.makedirs(ranks)
    open(os.path.join(ranks, MARKER), "w").close()


def finish(out: str, ranks: str) -> str:
    """After the job: merge ``ranks`` into ``out``, remove ``ranks`` if that worked; the
    report line(s) for ``bfrun`` to print."""
    try:
        merged, notes = merge_directory(ranks, out)
    except (OSError, ValueError) as err:
        return f"bfrun: --timeline: {err} (the ranks' files stay in {ranks})"
    shutil.rmtree(ranks, ignore_errors=True)
    n_mpi = sum(1 for e in merged["traceEvents"] if e.get("cat") == "mpi")
    lines = [f"bfrun: timeline: {note}" for note in notes]
    lines.append(f"bfrun: timeline of {len(merged['otherData']['ranks'])} rank(s) "
                 f"({n_mpi} MPI messages) written to {out}; open it at https://ui.perfetto.dev "
                 "or chrome://tracing")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m bluefog_dist.profile_merge DIR -o OUT``: merge, print a summary."""
    p = argparse.ArgumentParser(prog="python -m bluefog_dist.profile_merge",
                                description="Merge the per-rank timelines in DIR into one "
                                            "Chrome/Perfetto trace.")
    p.add_argument("directory", help=f"the directory {ENV_VAR} named")
    p.add_argument("-o", "--output", required=True, help="merged trace (.json or .json.gz)")
    args = p.parse_args(argv)
    try:
        merged, notes = merge_directory(args.directory, args.output)
    except (OSError, ValueError) as err:
        print(err, file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.output}: ranks {merged['otherData']['ranks']}, "
          f"{len(merged['traceEvents'])} events")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
