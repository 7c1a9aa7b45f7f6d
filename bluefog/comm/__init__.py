r"""The Communicator protocol that every algorithm is written against.

An algorithm is written from **one agent's point of view**. It never branches on the rank in
Python; per-agent quantities (weights, data) are looked up with :meth:`Communicator.rank`.
The same function then runs

* in the simulator, for all agents at once under ``jax.vmap(f, axis_name="agents")``
  (:class:`bluefog_sim.SimComm`: ``lax.ppermute`` / ``lax.psum`` over the named axis), and
* under ``mpirun``, one agent per rank (:class:`bluefog_dist.MpiComm`: ``mpi4jax``).

The mixing logic (rounds of full permutations, weights, dynamic pattern selection with
``lax.switch``, hierarchical averaging, Bluefog's per-call weights) lives **once**, in
:class:`ScheduleCommunicator`; a backend only supplies a handful of primitives: exchange one
full permutation, sum over all agents, gather all agents, broadcast, barrier and the agent
index.

Every operation accepts a pytree of floating-point arrays and returns one of the same
structure, shapes and dtypes.

Modules: :mod:`.protocol` (the protocol), :mod:`.base` (``ScheduleCommunicator``),
:mod:`.dynamic` (per-call weights), :mod:`.leaves` (the shared input check),
:mod:`.window` / :mod:`.window_update` (Bluefog's one-sided window ops on explicit window
state, :mod:`.window_state`), :mod:`.window_async` (non-blocking window ops: handles,
``win_poll``, ``win_wait``), :mod:`.window_clock` (window ops under a virtual clock),
:mod:`.faulty` (mixing under a :class:`bluefog.faults.Faults` model).
"""

from .base import ScheduleCommunicator
from .faulty import check_faults
from .protocol import Communicator, NeighborValues
from .window_async import WinHandle, no_handle
from .window_clock import ClockedComm
from .window_state import Clock, Window, WindowInfo

__all__ = ["Communicator", "NeighborValues", "ScheduleCommunicator", "Window", "WindowInfo",
           "Clock", "ClockedComm", "WinHandle", "no_handle", "check_faults"]
