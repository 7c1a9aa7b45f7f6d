"""Name every MPI message ``<op>/<primitive>`` for the timeline of :class:`bluefog_dist.MpiComm`.

A public op (``neighbor_allreduce``, ``allreduce``, ...) is built from primitives
(``sendrecv``, ``allreduce``, ``allgather``, ``bcast``); the timeline records each message as
``"<op>/<primitive>"`` with its size in bytes and its peers (see
:mod:`bluefog_dist.timeline`). :class:`OpNames` keeps the name of the op being traced and
times each message when a timeline is on; :func:`named_op` wraps a public method so that the
messages it sends carry its name.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

from .timeline import Timeline
from .wire import nbytes

__all__ = ["OpNames", "named_op"]


class OpNames:
    """The op being traced, and the timeline its messages go to (``None``: off).

    Parameters
    ----------
    timeline : Timeline or None
    """

    def __init__(self, timeline: Timeline | None):
        self.timeline = timeline
        self.op = "op"

    @contextlib.contextmanager
    def named(self, op: str):
        """Within the block, messages are recorded as ``f"{op}/<primitive>"``."""
        previous, self.op = self.op, op
        try:
            yield
        finally:
            self.op = previous

    def message(self, primitive: str, buf, fn: Callable, **args):
        """``fn(buf)``, timed as ``"<op>/<primitive>"`` with ``bytes`` and ``args`` when the
        timeline is on (zero cost when off: nothing is inserted into the program)."""
        if self.timeline is None:
            return fn(buf)
        args["bytes"] = nbytes(buf)
        return self.timeline.timed(f"{self.op}/{primitive}", args, fn, buf)


def named_op(op: str, method: Callable) -> Callable:
    """Wrap ``method(self, ...)`` so that its messages are named ``op`` (``self._ops`` is the
    communicator's :class:`OpNames`); the wrapper keeps ``method``'s docstring."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._ops.named(op):
            return method(self, *args, **kwargs)

    return wrapper
