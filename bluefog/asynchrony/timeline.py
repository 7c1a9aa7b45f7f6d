r"""Virtual time: the event timeline of an asynchronous run and the clock of a synchronous one.

With :math:`c_i(k)` the duration of agent :math:`i`'s :math:`k`-th step
(:meth:`ComputeModel.durations`), agent :math:`i` completes steps at
:math:`C_i(k) = \sum_{k' \le k} c_i(k')`. An **asynchronous** run is the sorted union of all
completion times, :math:`t_1 < t_2 < \dots`; at event :math:`e` exactly the agents with
:math:`t_e \in \{C_i(k)\}` step (several when their times coincide, e.g. with no jitter). A
**synchronous** method on the same model waits for the slowest agent and the slowest link
every step:

.. math:: T_{\text{sync}}(k) = \sum_{k' \le k} \bigl(\max_i c_i(k') + \max_{ij} L_{ij}\bigr).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validation import check_positive_int
from .compute import ComputeModel, latency_matrix

__all__ = ["Timeline", "event_timeline", "synchronous_times", "virtual_time"]


@dataclass(frozen=True, eq=False)
class Timeline:
    """The events of an asynchronous run (host-side data, embedded in the compiled program).

    Attributes
    ----------
    times : numpy.ndarray (E,)
        :math:`t_e`, strictly increasing.
    active : numpy.ndarray (E, n) bool
        Which agents complete a step at event ``e``.
    latency : numpy.ndarray (n, n)
        ``latency[i, j]``: delay of a message from ``j`` to ``i``.
    capacity : int
        In-flight messages per window slot: :math:`\\lfloor L_{max} / c_{min} \\rfloor + 1`
        per send per step (0 when every latency is 0), enough for every message.
    model : ComputeModel or None
        ``None`` for a replayed trace (:func:`bluefog.asynchrony.replay_timeline`).
    arrivals : dict or None
        Replay mode: per window, the recorded arrival time of every message (see
        :class:`bluefog.comm.Clock`); ``None``: ``now + latency``.
    """

    times: np.ndarray
    active: np.ndarray
    latency: np.ndarray
    capacity: int
    model: ComputeModel | None
    arrivals: dict | None = None

    @property
    def events(self) -> int:
        """Number of events ``E`` (run the wrapped algorithm for this many engine steps)."""
        return int(self.times.size)

    @property
    def size(self) -> int:
        """Number of agents."""
        return int(self.active.shape[1])


def _check_model(model, where: str) -> ComputeModel:
    if not isinstance(model, ComputeModel):
        raise TypeError(f"{where}: model must be a ComputeModel (bluefog.asynchrony."
                        f"compute_model(n, ...)); got {type(model).__name__}.")
    return model


def event_timeline(model: ComputeModel, events: int, latency=0.0, *,
                   sends_per_step: int = 1) -> Timeline:
    """The first ``events`` events of an asynchronous run on ``model``.

    Parameters
    ----------
    model : ComputeModel
    events : int
    latency : float or (n, n) array, non-negative
    sends_per_step : int
        Sends per window per step of the algorithm (sizes the in-flight capacity).
    """
    where = "event_timeline"
    model = _check_model(model, where)
    events = check_positive_int(events, "events", where=where)
    sends = check_positive_int(sends_per_step, "sends_per_step", where=where)
    lat = latency_matrix(latency, model.size)
    rate = np.sum(1.0 / model.means)
    steps = int(np.ceil(1.5 * events / rate / model.means.min())) + 8
    while True:
        dur = model.durations(steps)
        done = np.cumsum(dur, axis=1)
        times = np.unique(done)[:events]
        if times.size == events and done[:, -1].min() >= times[-1]:
            break
        steps *= 2
    active = np.zeros((events, model.size), bool)
    for i in range(model.size):
        idx = np.clip(np.searchsorted(done[i], times), 0, steps - 1)
        active[:, i] = done[i, idx] == times
    off = lat.copy()
    np.fill_diagonal(off, 0.0)
    lmax = off.max(initial=0.0)
    capacity = 0 if lmax == 0 else sends * (int(np.floor(lmax / dur.min())) + 1)
    return Timeline(times, active, lat, capacity, model)


def synchronous_times(model: ComputeModel, steps: int, latency=0.0) -> np.ndarray:
    """:math:`T_{\\text{sync}}(k)`, ``k = 1 .. steps``: the virtual time at which a
    synchronous method on ``model`` finishes step ``k`` (see the module docstring)."""
    where = "synchronous_times"
    model = _check_model(model, where)
    steps = check_positive_int(steps, "steps", where=where)
    lat = latency_matrix(latency, model.size)
    np.fill_diagonal(lat, 0.0)
    return np.cumsum(model.durations(steps).max(axis=0) + lat.max(initial=0.0))


def virtual_time(clock, steps) -> np.ndarray:
    """Virtual time after ``steps`` engine steps (e.g. ``result.history["step"]``): 0 at step
    0, else ``times[step - 1]``; ``clock`` is a :class:`Timeline` or the array of
    :func:`synchronous_times`."""
    times = clock.times if isinstance(clock, Timeline) else np.asarray(clock, np.float64)
    steps = np.asarray(steps, np.int64)
    if np.any(steps < 0) or np.any(steps > times.size):
        raise ValueError(f"virtual_time: steps must lie in [0, {times.size}] (the clock's "
                         f"length); got min {steps.min()}, max {steps.max()}. Build a longer "
                         "clock.")
    return np.where(steps > 0, times[np.maximum(steps - 1, 0)], 0.0)
