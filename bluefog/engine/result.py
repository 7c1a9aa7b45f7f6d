"""What a run returns."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["RunResult"]


class RunResult(NamedTuple):
    """What ``bluefog_sim.run`` / ``bluefog_dist.run`` return.

    Attributes
    ----------
    params : pytree
        Final estimates: stacked ``(n, ...)`` in the simulator, this rank's agent under MPI.
    history : dict of numpy arrays
        ``"step"`` plus one array per metric (:mod:`bluefog.metrics`), one entry per record,
        the first at step 0 of the call.
    state : pytree
        Final algorithm state (stacked in the simulator, this rank's under MPI).
    compile_seconds : float
        Wall time spent compiling (at most three programs per run, see
        :mod:`bluefog.engine.plan`).
    run_seconds : float
        Wall time of the dispatches, excluding compilation and callbacks.
    """

    params: Any
    history: dict
    state: Any
    compile_seconds: float
    run_seconds: float
