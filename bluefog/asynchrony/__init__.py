r"""Asynchronous decentralized training in virtual time (the simulator's clock model).

* :mod:`.compute`  - per-agent compute-time distributions (:func:`compute_model`: mean,
  jitter, one straggler or a random slow fraction, periodic pauses) and link latencies;
* :mod:`.timeline` - the event timeline of an asynchronous run and the clock of a
  synchronous one on the same model (:func:`event_timeline`, :func:`synchronous_times`);
* :mod:`.driver`   - :func:`asynchronous`: a window algorithm (see
  :mod:`bluefog.comm.window`) as an engine algorithm whose step is one event; :func:`drain`
  and :func:`window_mass` for conservation checks;
* :mod:`.replay`   - :func:`load_trace` / :func:`replay_timeline`: replay a recorded MPI run
  (``bluefog_dist.window_comm.run_async(..., trace=prefix)``) message for message.

Example (push-sum with one agent 10x slower and latency 0.2)::

    model = compute_model(8, straggler=0, slowdown=10.0, jitter=0.1)
    tl = event_timeline(model, events=400, latency=0.2)
    res = bluefog_sim.run(asynchronous(algorithms.async_push_sum(), tl), problem, topo,
                          steps=tl.events)
    t = virtual_time(tl, res.history["step"])
"""

from .compute import ComputeModel, compute_model, latency_matrix
from .driver import AsyncState, asynchronous, check_windows, drain, window_mass
from .replay import TRACE_FORMAT, algorithm_fingerprint, load_trace, replay_timeline
from .timeline import Timeline, event_timeline, synchronous_times, virtual_time

__all__ = ["ComputeModel", "compute_model", "latency_matrix", "Timeline", "event_timeline",
           "synchronous_times", "virtual_time", "AsyncState", "asynchronous", "drain",
           "window_mass", "check_windows", "TRACE_FORMAT", "algorithm_fingerprint",
           "load_trace", "replay_timeline"]
