"""Record listeners: see every metric record while a run is going (streaming outputs).

The engine calls every registered listener after each dispatch (and after the initial
record at step 0) with the steps recorded and their metrics, on every process, before the
next dispatch starts. An application streams them to CSV, TensorBoard or W&B; under MPI it
typically writes on rank 0 only. Listeners see copies in NumPy (the history is unchanged by
them). A listener that raises is removed with a warning: losing a metrics stream must not
stop training, nor (under MPI) leave other ranks waiting. In the spirit of
``jax.monitoring.register_event_listener``.

Example::

    from bluefog.engine import record_listener
    with record_listener(lambda steps, metrics: print(steps[-1], metrics["loss"][-1])):
        bluefog_sim.run(algorithm, problem, topology, 1000)
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable

import numpy as np

__all__ = ["add_record_listener", "remove_record_listener", "record_listener",
           "notify_records"]

_LISTENERS: list = []


def add_record_listener(fn: Callable) -> None:
    """Register ``fn(steps, metrics)``: ``steps`` an int64 array of the recorded steps
    (counted from the start of the run call), ``metrics`` a dict name -> array of the same
    length."""
    if not callable(fn):
        raise TypeError(f"add_record_listener: fn must be callable (steps, metrics) -> None; "
                        f"got {type(fn).__name__}.")
    _LISTENERS.append(fn)


def remove_record_listener(fn: Callable) -> None:
    """Unregister ``fn`` (no error if it is not registered)."""
    if fn in _LISTENERS:
        _LISTENERS.remove(fn)


@contextlib.contextmanager
def record_listener(fn: Callable):
    """Context manager: ``fn`` listens to every run started inside the ``with`` block."""
    add_record_listener(fn)
    try:
        yield fn
    finally:
        remove_record_listener(fn)


def notify_records(steps, metrics: dict) -> None:
    """Called by the engine after each dispatch: hand the new records to every listener."""
    if not _LISTENERS:
        return
    steps = np.asarray(steps, np.int64).reshape(-1)
    metrics = {k: np.asarray(v).reshape(len(steps)).copy() for k, v in metrics.items()}
    for fn in list(_LISTENERS):
        try:
            fn(steps.copy(), dict(metrics))
        except Exception as err:  # noqa: BLE001 - a metrics stream must not stop training
            remove_record_listener(fn)
            warnings.warn(f"record listener {fn!r} raised {type(err).__name__}: {err}; it is "
                          "removed and the run goes on.", RuntimeWarning, stacklevel=2)
