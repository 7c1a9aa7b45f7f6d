"""Opt-in per-rank timeline of communication ops, as Chrome-trace / Perfetto JSON.

Like Bluefog's ``BLUEFOG_TIMELINE``: set the environment variable ``BLUEFOG_TIMELINE`` (or
pass ``timeline=`` to :class:`bluefog_dist.MpiComm` / :func:`bluefog_dist.run`, or
``bfrun --timeline PREFIX``) and every rank writes ``PREFIX<rank>.json`` (or the path with
``{rank}`` substituted, if the value contains ``{rank}``). Open the files in
``chrome://tracing`` or https://ui.perfetto.dev; one process row per rank, one complete event
(``"ph": "X"``) per MPI message with its ``name`` (``<op>/<primitive>``, e.g.
``neighbor_allreduce/sendrecv``), ``bytes``, peers and start/duration in microseconds.

How ops are timed
-----------------
* **Inside ``jit``** (the normal case: runners compile whole loops), the MPI call is bracketed
  by two host callbacks (``jax.experimental.io_callback`` with ``ordered=True``). The start
  callback returns a scalar that is tied to the send buffer with ``lax.optimization_barrier``
  (so the message cannot leave before the start stamp) and the end callback consumes one
  element of the received buffer (so it cannot run before the message has arrived). The
  stamps are therefore taken when the compiled program actually executes the op, once per
  loop iteration.
* **Eagerly** (outside ``jit``) the op is timed on the host around the call, with
  ``block_until_ready``.

Overhead: when the timeline is **off** nothing is inserted into the program (the check is a
Python ``if`` at trace time), so the cost is zero. When on, each message pays two host
callbacks; measured with ``benchmarks/mpi_exchange.py --timeline-overhead`` (4 ranks on 2
heavily loaded cores, README ``mpi`` section): +1.0-1.1 ms per 2-round exchange at 1 KiB and
+2.3-3.5 ms at 1 MiB. Use it to understand a run, not to benchmark one.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import io_callback

__all__ = ["Timeline", "timeline_path", "ENV_VAR"]

#: Environment variable that turns the timeline on (value: path prefix or template).
ENV_VAR = "BLUEFOG_TIMELINE"


def timeline_path(spec: str, rank: int) -> str:
    """The file of rank ``rank`` for a timeline ``spec`` (prefix, or template with
    ``{rank}``).

    >>> timeline_path("/tmp/tl_", 3)
    '/tmp/tl_3.json'
    >>> timeline_path("/tmp/run-{rank}.trace.json", 3)
    '/tmp/run-3.trace.json'
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec):
        raise TypeError(
            f"timeline must be a non-empty path prefix or template containing '{{rank}}'; got "
            f"{spec!r}. Example: timeline='/tmp/bf_timeline_' writes /tmp/bf_timeline_0.json, ..."
        )
    spec = str(spec)
    if "{rank}" in spec:
        return spec.replace("{rank}", str(rank))
    return f"{spec}{rank}.json"


class Timeline:
    """Collects complete events for one rank and writes them as Chrome-trace JSON.

    The file is (re)written by :meth:`flush`, which also runs at interpreter exit.

    Parameters
    ----------
    path : str
        Output file of this rank (see :func:`timeline_path`).
    rank : int
        Used as the trace's process id, so the files of all ranks can be merged.
    """

    _open: dict = {}

    @classmethod
    def for_path(cls, path: str, rank: int) -> "Timeline":
        """The timeline writing to ``path`` in this process (one per file, shared by every
        communicator that points there, so that two ``MpiComm`` objects do not overwrite
        each other's events)."""
        key = os.path.abspath(str(path))
        if key not in cls._open:
            cls._open[key] = cls(path, rank)
        return cls._open[key]

    def __init__(self, path: str, rank: int):
        self.path = str(path)
        self.rank = int(rank)
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._pending: dict[int, list[int]] = {}
        self._origin_ns = time.perf_counter_ns()
        self._origin_wall_us = time.time_ns() // 1000
        self._site = 0
        atexit.register(self.flush)

    # ---- recording ----------------------------------------------------------------------
    def _now_us(self, ns: int) -> float:
        return self._origin_wall_us + (ns - self._origin_ns) / 1000.0

    def record(self, name: str, start_ns: int, end_ns: int, args: dict) -> None:
        """Append one complete event (``perf_counter_ns`` stamps)."""
        event = {"name": name, "cat": "comm", "ph": "X", "pid": self.rank, "tid": 0,
                 "ts": self._now_us(start_ns), "dur": max(end_ns - start_ns, 0) / 1000.0,
                 "args": args}
        with self._lock:
            self.events.append(event)

    def flush(self) -> str:
        """Write all events recorded so far to :attr:`path`; returns the path."""
        with self._lock:
            events = list(self.events)
        meta = [{"name": "process_name", "ph": "M", "pid": self.rank, "tid": 0,
                 "args": {"name": f"rank {self.rank}"}}]
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as fh:
            json.dump({"traceEvents": meta + events, "displayTimeUnit": "ms"}, fh)
        os.replace(tmp, self.path)
        return self.path

    # ---- instrumenting one MPI call -------------------------------------------------------
    def timed(self, name: str, args: dict, fn: Callable, buf):
        """Run ``out = fn(buf)`` (one MPI message) and record it; returns ``out``.

        ``buf`` is a single array. Inside a trace the stamps are taken by ordered host
        callbacks tied to ``buf`` and ``out`` by data dependencies (module docstring);
        eagerly, by the host around a blocking call.
        """
        if not isinstance(buf, jax.core.Tracer):
            t0 = time.perf_counter_ns()
            out = jax.block_until_ready(fn(buf))
            self.record(name, t0, time.perf_counter_ns(), args)
            return out
        self._site += 1
        site = self._site

        def start():
            with self._lock:
                self._pending.setdefault(site, []).append(time.perf_counter_ns())
            return np.zeros((), np.int32)

        def end(_probe):
            t1 = time.perf_counter_ns()
            with self._lock:
                stack = self._pending.get(site)
                t0 = stack.pop() if stack else t1
            self.record(name, t0, t1, args)

        token = io_callback(start, jax.ShapeDtypeStruct((), jnp.int32), ordered=True)
        buf, _ = lax.optimization_barrier((buf, token))
        out = fn(buf)
        probe = jnp.reshape(out, (-1,))[:1]
        io_callback(end, None, probe, ordered=True)
        return out
