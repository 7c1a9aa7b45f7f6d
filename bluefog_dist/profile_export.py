r"""Turn one ``jax.profiler`` session of one rank into Chrome-trace events.

``jax.profiler.stop_trace`` writes ``<dir>/plugins/profile/<time>/<host>.xplane.pb``. This
module reads it with :class:`jax.profiler.ProfileData` and returns complete events
(``"ph": "X"``) in the Chrome trace-event format, one thread per profiler line (the Python
thread, XLA's CPU client thread, device streams on accelerators). MPI messages are renamed
``"<op>/<primitive>"`` (category ``"mpi"``, ``args`` with ``bytes`` and peers) by
:func:`bluefog_dist.xspace.mpi_ops`; other events keep their names (category ``"jax"``: XLA
ops by their HLO name, JAX's and XLA's host annotations, compilation passes included), without
arguments. The executor's zero-length ``"end: <op>"`` markers are dropped.

Clock
-----
The ``Task Environment`` plane's ``profile_start_time`` is the Unix wall-clock time
(``CLOCK_REALTIME``, ns) at which the session started, and each event's ``start_ns`` is
relative to it (checked against ``time.time_ns()`` around a jitted call: within 25 us, the
call's own dispatch). An event's wall-clock start is therefore
:math:`t = \text{profile\_start\_time} + \text{start\_ns}`, and the exported ``ts`` is
:math:`(t - a) / 1000` microseconds, relative to an anchor :math:`a` (the rank's wall-clock
time right after the timeline's start barrier, :mod:`bluefog_dist.timeline`).

Reference: Chrome "Trace Event Format" (Google, 2016; the JSON accepted by
https://ui.perfetto.dev and ``chrome://tracing``).
"""

from __future__ import annotations

import glob
import os

from .xspace import MpiOp, mpi_ops

__all__ = ["find_xplane", "session_events"]

_SKIP_PLANES = ("/host:metadata", "Task Environment")


def find_xplane(log_dir: str) -> str | None:
    """The newest ``*.xplane.pb`` under ``log_dir/plugins/profile``, or ``None`` (the layout
    ``jax.profiler.stop_trace`` writes, shared with TensorBoard's profile plugin)."""
    found = glob.glob(os.path.join(log_dir, "plugins", "profile", "*", "*.xplane.pb"))
    return max(found, key=os.path.getmtime) if found else None


def _mpi_op(ev, ops: dict, names: set) -> MpiOp | None:
    """The message an XLA op event is, if any (its stats are read only for candidates:
    reading every event's stats would double the conversion time)."""
    if ev.name not in names:
        return None
    stats = dict(ev.stats)
    program = ops.get(f"{stats.get('hlo_module')}({stats.get('program_id')})", {})
    return program.get(stats.get("hlo_op"))


def session_events(xplane_path: str, rank: int, anchor_ns: int) -> tuple[list[dict], dict]:
    r"""Chrome-trace events of one profiler session of rank ``rank``.

    ``ts`` :math:`= (\text{profile\_start\_time} - \text{anchor\_ns} + \text{start\_ns})
    / 1000` and ``dur`` :math:`= \text{duration\_ns} / 1000` (module docstring, "Clock").
    Reference: JAX profiling (``jax.profiler.ProfileData``), Chrome "Trace Event Format".

    Parameters
    ----------
    xplane_path : str
        The session's ``*.xplane.pb``.
    rank : int
        Used as the events' ``pid``.
    anchor_ns : int
        Unix time (ns) that becomes ``ts = 0``.

    Returns
    -------
    events : list of dict
        Complete events ``{"name", "cat", "ph": "X", "pid", "tid", "ts", "dur"}`` (times in
        microseconds); MPI messages have ``cat == "mpi"`` and ``args`` with ``bytes``,
        ``hlo_op`` and the peers, other events ``cat == "jax"``.
    threads : dict
        ``{thread name: tid}`` (one per profiler line: ``"<plane> <line>"``).
    """
    from jax.profiler import ProfileData

    with open(xplane_path, "rb") as fh:
        raw = fh.read()
    ops = mpi_ops(raw)
    names = {instr for program in ops.values() for instr in program}
    data = ProfileData.from_serialized_xspace(raw)
    env = data.find_plane_with_name("Task Environment")
    start = int(dict(env.stats)["profile_start_time"]) if env is not None else anchor_ns
    events, threads = [], {}
    for plane in data.planes:
        if plane.name in _SKIP_PLANES:
            continue
        for line in plane.lines:
            tid = threads.setdefault(f"{plane.name} {line.name}", len(threads) + 1)
            for ev in line.events:
                if ev.name.startswith("end: "):
                    continue
                event = {"name": ev.name, "cat": "jax", "ph": "X", "pid": rank, "tid": tid,
                         "ts": (start - anchor_ns + ev.start_ns) / 1000.0,
                         "dur": ev.duration_ns / 1000.0}
                mpi = _mpi_op(ev, ops, names)
                if mpi is not None:
                    event.update(name=mpi.name, cat="mpi",
                                 args={"hlo_op": ev.name, "bytes": mpi.bytes, **mpi.peers})
                events.append(event)
    return events, threads
