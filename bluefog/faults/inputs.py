r"""The fault parameters as inputs of the engine's compiled programs.

The engine (:func:`bluefog.engine.execute`) runs every program as ``f(state, data, keys)``
with ``data`` mapped over the agents. When the backend's communicator has a fault model,
the data becomes the pair ``(data, params)``: ``params`` are the model's tables
(:meth:`bluefog.faults.Faults.params`), the same for every agent (not mapped), and inside the
program each agent's context gets a communicator whose model is bound to them
(:meth:`bluefog.faults.Faults.bind`). So the tables are traced arguments, and the compiled
program depends only on the model's :attr:`~bluefog.faults.Faults.structure`:

.. math:: \text{program}(s, (d, \theta), k) \;\text{with}\; \theta = \text{params}(F),
          \qquad \text{program}_F = \text{program}_{F'} \iff
          \text{structure}(F) = \text{structure}(F').

A run without faults keeps its inputs and programs unchanged.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp

__all__ = ["with_fault_inputs", "data_axis", "agent_comm"]


def _faults(comm):
    return getattr(comm, "faults", None)


def with_fault_inputs(comm, inputs: tuple) -> tuple:
    """``(data, keys)`` of a backend, with the fault tables added to the data when ``comm``
    has a fault model: ``((data, params), keys)``."""
    faults = _faults(comm)
    if faults is None:
        return inputs
    data, keys = inputs
    return (data, jax.tree_util.tree_map(jnp.asarray, faults.params())), keys


def data_axis(comm):
    """The ``vmap`` axis of the data argument: ``0``, or ``(0, None)`` with fault tables
    (the tables are shared by every agent)."""
    return 0 if _faults(comm) is None else (0, None)


def agent_comm(comm, data) -> tuple:
    """``(communicator, data)`` one agent's context uses: with a fault model, a copy of
    ``comm`` whose model reads the program's traced tables, and the data without them."""
    faults = _faults(comm)
    if faults is None:
        return comm, data
    data, params = data
    bound = copy.copy(comm)
    bound.faults = faults.bind(params)
    return bound, data
