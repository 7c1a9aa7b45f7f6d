r"""Replay a recorded asynchronous MPI run in the simulator, message for message.

An MPI run (``bluefog_dist.window_comm.run_async(..., trace=prefix)``) writes one JSON file
per rank, ``{prefix}.rank{r}.json`` (format ``"bluefog-window-trace/1"``)::

    {"format", "rank", "size", "steps",
     "algorithm": fingerprint (name + config), "topology": Topology.fingerprint,
     "windows": {name: {"sends": [[step, [dest, ...]], ...],      # index c = the stamp
                        "reads": [[step, [[src, count], ...]], ...]}},
     "iterates": [params after each step, flattened], "final": [state, flattened]}

A read's ``count`` for in-neighbour ``j`` is how many of ``j``'s messages were delivered into
the slot since the previous read; since one sender's messages to one target complete in send
order, the reads consumed exactly ``j``'s sends to this rank number ``c0 .. c0 + count - 1``.

:func:`replay_timeline` turns the merged trace into a :class:`~.timeline.Timeline` for
:func:`~.driver.asynchronous`: one event per recorded step, in an order in which every
consumed message was sent before the step that read it (a topological order of the
happened-before graph, so the replay needs no clock model), and per window an arrival table
``A[i, r, c]``: the time of the event whose read consumed sender stamp ``c`` in agent ``i``'s
slot ``r`` (never, for messages no recorded read consumed). The window ops then deliver
exactly the recorded messages at the recorded reads, and the same algorithm object follows
the MPI trajectory (up to floating-point summation order).

Limits: ``win_get`` is not replayed (refused); a window read twice in one step may consume
messages only at its first read of that step.

References
----------
L. Lamport, "Time, clocks, and the ordering of events in a distributed system", CACM 21(7)
(1978) (happened-before order); Bluefog ``win_accumulate`` / ``win_update_then_collect``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..topology import Topology
from .timeline import Timeline

__all__ = ["TRACE_FORMAT", "algorithm_fingerprint", "load_trace", "replay_timeline"]

#: The ``format`` field of every trace file.
TRACE_FORMAT = "bluefog-window-trace/1"
_NEVER = 1e30  # finite "never arrives" (window fields stay finite)


def algorithm_fingerprint(algorithm) -> str:
    """``json`` of the algorithm's name and config: what a trace was recorded with."""
    return json.dumps({"name": algorithm.name, "config": algorithm.config}, sort_keys=True,
                      default=repr)


def _read_rank(prefix: str, r: int) -> dict:
    path = f"{prefix}.rank{r}.json"
    if not os.path.exists(path):
        raise ValueError(f"load_trace: rank file {path!r} is missing; a trace of a run on "
                         "n ranks needs {prefix}.rank0.json ... rank{n-1}.json. Copy every "
                         "rank's file next to the others.")
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("format") != TRACE_FORMAT:
        raise ValueError(f"load_trace: {path!r} is not a {TRACE_FORMAT!r} trace (format "
                         f"{doc.get('format') if isinstance(doc, dict) else None!r}).")
    if doc["rank"] != r:
        raise ValueError(f"load_trace: {path!r} holds rank {doc['rank']}'s trace, expected "
                         f"rank {r}; do not rename trace files.")
    return doc


def load_trace(prefix: str) -> dict:
    """Read and merge the rank files ``{prefix}.rank{r}.json`` of one recorded run.

    Returns ``{"size", "algorithm", "topology", "ranks": [doc of rank 0, ...]}``. Raises
    ``ValueError`` for a missing rank file, a file of another format, ranks that disagree on
    the world size or on the algorithm/topology fingerprint.
    """
    if not isinstance(prefix, str):
        raise TypeError(f"load_trace: prefix must be a str (the run_async trace prefix); got "
                        f"{type(prefix).__name__}.")
    first = _read_rank(prefix, 0)
    n = int(first["size"])
    ranks = [first] + [_read_rank(prefix, r) for r in range(1, n)]
    for key in ("size", "algorithm", "topology"):
        vals = [d[key] for d in ranks]
        if any(v != vals[0] for v in vals):
            raise ValueError(f"load_trace: the rank files of {prefix!r} disagree on {key!r} "
                             f"({vals}); they come from different runs.")
    if os.path.exists(f"{prefix}.rank{n}.json"):
        raise ValueError(f"load_trace: {prefix}.rank{n}.json exists but the trace says size "
                         f"{n}; remove files of other runs or use another prefix.")
    return {"size": n, "algorithm": first["algorithm"], "topology": first["topology"],
            "ranks": ranks}


def _check(trace, algorithm, topology):
    if not isinstance(topology, Topology):
        raise TypeError(f"replay_timeline: topology must be a static Topology; got "
                        f"{type(topology).__name__}.")
    if topology.size != trace["size"]:
        raise ValueError(f"replay_timeline: the trace was recorded on {trace['size']} ranks; "
                         f"the topology has {topology.size} agents. Replay on the recorded "
                         "world size.")
    if topology.fingerprint != trace["topology"]:
        raise ValueError("replay_timeline: topology fingerprint mismatch: the trace was "
                         f"recorded on topology {trace['topology']!r}, got "
                         f"{topology.fingerprint!r} ({topology.name!r}). Pass the run's topology.")
    got = algorithm_fingerprint(algorithm)
    if got != trace["algorithm"]:
        raise ValueError(f"replay_timeline: algorithm fingerprint mismatch: recorded "
                         f"{trace['algorithm']}, got {got}. Pass the algorithm (and config) "
                         "that produced the trace.")


def _consumed(trace, name):
    """``{(i, j, c): reader step}`` for window ``name`` and the senders' step per stamp."""
    n, docs = trace["size"], trace["ranks"]
    sends = [d["windows"].get(name, {"sends": []})["sends"] for d in docs]
    to = [[[c for c, (_, ds) in enumerate(sends[j]) if i in ds] for j in range(n)]
          for i in range(n)]
    out = {}
    for i in range(n):
        cum, seen = [0] * n, {}
        for k, counts in docs[i]["windows"].get(name, {"reads": []})["reads"]:
            for j, cnt in counts:
                if cnt and seen.get(j) == k:
                    raise ValueError(f"replay_timeline: window {name!r}: rank {i} consumed "
                                     f"messages from {j} in a second read of step {k}; replay "
                                     "supports one consuming read per window per step.")
                if cum[j] + cnt > len(to[i][j]):
                    raise ValueError(f"replay_timeline: window {name!r}: rank {i} read "
                                     f"{cum[j] + cnt} messages from rank {j}, which sent it "
                                     f"{len(to[i][j])}; the trace is inconsistent.")
                for c in to[i][j][cum[j]:cum[j] + cnt]:
                    out[(i, j, c)] = k
                cum[j] += cnt
                seen[j] = k
    return out, [[s for s, _ in sj] for sj in sends]


def _sccs(nodes, succ):
    """Strongly connected components (Tarjan, iterative), each a list of nodes."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(succ.get(root, ())))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    out.append(comp)
            elif w not in index:
                index[w] = low[w] = counter[0]
                counter[0] += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(succ.get(w, ()))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def _order(steps, deps):
    """Events: groups of steps ``(rank, step)`` in a topological order of the
    happened-before graph. Steps that consumed each other's sends (both sent, then both read)
    form a cycle at step granularity; each such group is one event with several ranks
    active (the window ops of one event run in lock-step: every send before every read)."""
    nodes = [(i, k) for i, s in enumerate(steps) for k in range(s)]
    succ: dict = {}
    for node in nodes:
        pre = set(deps.get(node, ())) | ({(node[0], node[1] - 1)} if node[1] else set())
        for p in pre:
            succ.setdefault(p, []).append(node)
    comps = _sccs(nodes, succ)[::-1]             # Tarjan emits reverse topological order
    for comp in comps:
        if len({i for i, _ in comp}) != len(comp):
            raise ValueError(f"replay_timeline: steps {sorted(comp)} consumed each other's "
                             "messages across a step boundary of one rank; this interleaving "
                             "is finer than one step and cannot be replayed step by step.")
    return [sorted(c) for c in comps]


def _capacity(arr, send_ev, times):
    """In-flight queue length needed: most messages pending at any slot at any event."""
    best = 0
    for t in times:
        pend = (send_ev <= t) & (arr >= t)
        best = max(best, int(pend.sum(axis=2).max(initial=0)))
    return best + 1


def _tables(trace, topology, name, event_of, times):
    n = trace["size"]
    consumed, send_steps = _consumed(trace, name)
    M = max((len(s) for s in send_steps), default=0) + 1
    R = topology.schedule.num_rounds
    arr = np.full((n, R, M), _NEVER)
    sent = np.full((n, R, M), np.inf)
    for r, rnd in enumerate(topology.schedule.rounds):
        for i in range(n):
            if not rnd.active[i]:
                continue
            j = int(rnd.sources[i])
            for c, s in enumerate(send_steps[j]):
                sent[i, r, c] = times[event_of[(j, s)]]
                if (i, j, c) in consumed:
                    arr[i, r, c] = times[event_of[(i, consumed[(i, j, c)])]]
    return arr, _capacity(arr, sent, times)


def replay_timeline(trace: dict, algorithm, topology) -> Timeline:
    r"""The :class:`~.timeline.Timeline` that replays a recorded MPI run (module docstring).

    Run it with ``bluefog_sim.run(asynchronous(algorithm, tl), problem, topology,
    steps=tl.events)`` (same problem, ``x0`` and seed as the MPI run): at event ``e`` only
    ``tl.active[e]``'s rank steps, and each window read consumes exactly the messages the
    MPI read consumed.

    Parameters
    ----------
    trace : dict
        From :func:`load_trace`.
    algorithm : Algorithm
        The algorithm of the run (its name and config must match the trace's fingerprint).
    topology : Topology
        The run's topology (fingerprint and size must match).
    """
    if not isinstance(trace, dict) or "ranks" not in trace:
        raise TypeError(f"replay_timeline: trace must be the dict of load_trace(prefix); got "
                        f"{type(trace).__name__}.")
    _check(trace, algorithm, topology)
    n, docs = trace["size"], trace["ranks"]
    names = sorted({w for d in docs for w in d["windows"]})
    deps: dict = {}
    for name in names:
        consumed, send_steps = _consumed(trace, name)
        for (i, j, c), k in consumed.items():
            deps.setdefault((i, k), set()).add((j, send_steps[j][c]))
    order = _order([int(d["steps"]) for d in docs], deps)
    event_of = {node: e for e, group in enumerate(order) for node in group}
    times = np.arange(1, len(order) + 1, dtype=np.float64)
    active = np.zeros((len(order), n), bool)
    for (i, _), e in event_of.items():
        active[e, i] = True
    arrivals, capacity = {}, 1
    for name in names:
        arrivals[name], cap = _tables(trace, topology, name, event_of, times)
        capacity = max(capacity, cap)
    return Timeline(times, active, np.zeros((n, n)), capacity, None, arrivals)
