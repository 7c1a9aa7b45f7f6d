"""What a backend supplies to the engine: only what differs between backends.

The engine (:func:`bluefog.engine.execute`) owns the loop, validation, the dispatch plan,
metrics, non-finite detection, progress and segment callbacks. A backend adapter supplies:

=======================  ==================================================================
``name``, ``size``       backend name (for messages) and number of agents
``comm``                 the :class:`~bluefog.comm.Communicator` the algorithm sees
``is_root``              whether this process shows the progress bar
``agree(fields)``        start-up agreement: evaluate ``fields()`` (which validates) and
                         compare the result across processes; raise everywhere on failure
``check_agents(topo)``   refuse a topology whose size this backend cannot run
``agent_inputs(p, s)``   this process's ``(data, keys)``: stacked in the simulator, one
                         agent's under MPI
``initial_params(x0)``   ``(value, in_axis)`` for ``init``: stacked ``x0`` (axis 0) or
                         ``problem.init_params`` shared by all agents (axis ``None``)
``map_agents(fn, ax)``   lift a per-agent function to this process's agents (``vmap`` with
                         the agent axis name in the simulator, the identity under MPI)
``agent_view(tree)``     one agent's copy of an output that is identical on all agents
``run_callback(fn)``     call ``fn()``; if it raised on any process, raise
                         :class:`~bluefog.engine.CallbackError` on every process
``finish(history)``      make the history identical everywhere (MPI: rank 0's copy)
=======================  ==================================================================
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

__all__ = ["Backend", "first_agent"]


@runtime_checkable
class Backend(Protocol):
    """The adapter protocol (see the module docstring)."""

    name: str
    size: int
    comm: Any
    is_root: bool

    def agree(self, fields: Callable[[], dict]) -> None: ...

    def check_agents(self, topology) -> None: ...

    def agent_inputs(self, problem, seed: int) -> tuple: ...

    def initial_params(self, x0, problem) -> tuple: ...

    def map_agents(self, fn: Callable, in_axes) -> Callable: ...

    def agent_view(self, tree): ...

    def run_callback(self, fn: Callable[[], None]) -> None: ...

    def finish(self, history: dict) -> dict: ...


def first_agent(tree):
    """``agent_view`` of a backend whose agents are stacked along axis 0 (the simulator, a
    block of agents per MPI rank): agent 0's copy of an output that is identical on every
    agent; for shapes (``jax.ShapeDtypeStruct``, from ``eval_shape``) the agent axis is
    dropped."""
    import jax

    def first(v):
        if isinstance(v, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(v.shape[1:], v.dtype)
        return v[0]

    return jax.tree_util.tree_map(first, tree)
