"""Name every MPI message of :class:`bluefog_dist.MpiComm` ``<op>/<primitive>`` for the timeline.

A public op (``neighbor_allreduce``, ``allreduce``, ...) is built from primitives
(``sendrecv``, ``allreduce``, ``allgather``, ``bcast``). :class:`OpNames` keeps the name of
the op being traced, and :meth:`OpNames.message` traces each message inside
``jax.named_scope("bf.<op>.<primitive>")``: a name in the HLO metadata (``op_name``), nothing
in the compiled program, so it costs nothing whether the timeline is on or off. The timeline
(``jax.profiler``, :mod:`bluefog_dist.timeline`) reads the name back from the profile's HLO
(:func:`bluefog_dist.xspace.message_name`). :func:`named_op` wraps a public method so that
the messages it sends carry its name.

Reference: ``jax.named_scope`` (JAX documentation, "Profiling computation").
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

import jax

from bluefog.comm import ScheduleCommunicator

from .xspace import SCOPE_PREFIX

__all__ = ["OpNames", "named_op", "NamedOps"]


class OpNames:
    """The op being traced; names the messages it sends (``bf.<op>.<primitive>``, read back
    by :func:`bluefog_dist.xspace.message_name`; Bluefog names timeline events by op the same
    way: Ying et al., arXiv:2111.04287)."""

    def __init__(self):
        self.op = "op"

    @contextlib.contextmanager
    def named(self, op: str):
        """Within the block, messages are named ``f"{op}/<primitive>"``."""
        previous, self.op = self.op, op
        try:
            yield
        finally:
            self.op = previous

    def message(self, primitive: str, buf, fn: Callable):
        """``fn(buf)`` (one MPI message) traced inside
        ``jax.named_scope(f"bf.{op}.{primitive}")``."""
        with jax.named_scope(f"{SCOPE_PREFIX}{self.op}.{primitive}"):
            return fn(buf)


def named_op(op: str, method: Callable) -> Callable:
    """Wrap ``method(self, ...)`` so that its messages are named ``op`` (``self._ops`` is the
    communicator's :class:`OpNames`); the wrapper keeps ``method``'s docstring (and so the
    math and references of the wrapped op)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._ops.named(op):
            return method(self, *args, **kwargs)

    return wrapper


class NamedOps:
    """Mixin (before :class:`~bluefog.comm.ScheduleCommunicator` in the bases) whose public
    ops name their messages: :class:`~bluefog_dist.MpiComm` and
    :class:`~bluefog_dist.block_comm.BlockComm` (each keeps its :class:`OpNames` in
    ``self._ops``)."""

    neighbor_allreduce = named_op("neighbor_allreduce", ScheduleCommunicator.neighbor_allreduce)
    neighbor_allgather = named_op("neighbor_allgather", ScheduleCommunicator.neighbor_allgather)
    allreduce = named_op("allreduce", ScheduleCommunicator.allreduce)
    allgather = named_op("allgather", ScheduleCommunicator.allgather)
    hierarchical_neighbor_allreduce = named_op(
        "hierarchical_neighbor_allreduce", ScheduleCommunicator.hierarchical_neighbor_allreduce)
