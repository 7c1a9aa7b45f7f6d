r"""The Communicator protocol and the result type of ``neighbor_allgather``.

An algorithm is written from **one agent's point of view** against :class:`Communicator`;
:class:`bluefog.comm.ScheduleCommunicator` implements it once for every backend.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax

__all__ = ["Communicator", "NeighborValues", "PyTree"]

PyTree = Any


class NeighborValues(NamedTuple):
    """Result of :meth:`Communicator.neighbor_allgather` for one agent.

    Attributes
    ----------
    values : pytree, each leaf of shape ``(R, *leaf.shape)``
        What this agent received in each of the ``R`` schedule rounds.
    sources : int32 array, shape ``(R,)``
        The sending agent of each round. The slots are in **schedule-round order** (round
        ``r`` of the compiled schedule), not Bluefog's order (in-neighbors sorted by rank);
        a padding slot may name a real agent, with weight 0. Bluefog's order, with the
        padding slots last::

            order = jnp.argsort(jnp.where(nv.weights > 0, nv.sources, comm.size))
            sorted_values = jax.tree_util.tree_map(lambda v: v[order], nv.values)
    weights : array, shape ``(R,)``
        ``W[i, sources[r]]``; 0 marks a padding exchange (not an in-neighbor).
    """

    values: PyTree
    sources: jax.Array
    weights: jax.Array


@runtime_checkable
class Communicator(Protocol):
    """What an algorithm may ask of its backend (see :mod:`bluefog.comm`)."""

    size: int
    local_size: int

    def rank(self):
        """This agent's index in ``[0, size)`` (a traced int32 in the simulator)."""

    def neighbor_allreduce(self, x: PyTree, topology=None, t=None, *, self_weight=None,
                           src_weights=None, dst_weights=None, compressor=None,
                           key=None) -> PyTree:
        r""":math:`x_i^{+} = \sum_j W_{ij}(t)\, x_j` for this agent ``i``, with ``W`` from a
        topology or from Bluefog's per-call weights (``self_weight``, ``src_weights``,
        ``dst_weights``); with ``compressor`` (and this agent's ``key``) the payloads
        :math:`\mathcal C(x_j)` travel and :math:`\sum_j W_{ij}\mathcal D(\mathcal C(x_j))`
        is returned."""

    def neighbor_allgather(self, x: PyTree, topology, t=None) -> NeighborValues:
        """Values of this agent's in-neighbors, one per schedule round."""

    def allreduce(self, x: PyTree, average: bool = True) -> PyTree:
        r""":math:`\tfrac1n\sum_j x_j` (or the sum if ``average=False``)."""

    def broadcast(self, x: PyTree, root: int) -> PyTree:
        """Agent ``root``'s value, on every agent."""

    def allgather(self, x: PyTree) -> PyTree:
        """Every agent's value, stacked along a new leading axis of size ``size``."""

    def barrier(self) -> None:
        """Synchronise all agents (a no-op in the simulator)."""

    def uniform(self, value):
        """Declare ``value`` equal on every agent (e.g. a function of the step counter), so
        that ``lax.cond``/``lax.switch`` on it runs one branch in every backend."""

    def hierarchical_neighbor_allreduce(self, x: PyTree, machine_topology, t=None) -> PyTree:
        r"""Average within each machine, then mix across machines (see
        :meth:`ScheduleCommunicator.hierarchical_neighbor_allreduce`)."""

    # ---- one-sided windows (bluefog.comm.window): explicit state in, new state out --------
    def win_create(self, windows, x: PyTree, name: str, topology, zero_init: bool = False) -> dict:
        """Register ``x`` as window ``name`` over ``topology``'s in-edges (Bluefog
        ``win_create``); returns the new ``{name: Window}`` dict."""

    def win_put(self, windows, x: PyTree, name: str, dst_weights=None, self_weight=None) -> dict:
        """Overwrite the out-neighbours' slots with ``d_ij x`` on delivery."""

    def win_accumulate(self, windows, x: PyTree, name: str, dst_weights=None,
                       self_weight=None) -> dict:
        """Add ``d_ij x`` into the out-neighbours' slots on delivery (never lost)."""

    def win_get(self, windows, name: str, src_weights=None) -> dict:
        """Fetch the in-neighbours' window values into this agent's slots."""

    def win_update(self, windows, name: str, self_weight=None, neighbor_weights=None,
                   reset: bool = False):
        """``v_i <- a_ii v_i + sum_j a_ij b_ij``; returns ``(value, windows)``."""

    def win_update_then_collect(self, windows, name: str):
        """``v_i <- v_i + sum_j b_ij``, slots zeroed; returns ``(value, windows)``."""

    def win_free(self, windows, name: str | None = None) -> dict:
        """Drop window ``name`` (``None``: all)."""

    def win_info(self, windows, name: str):
        """Per slot: source, versions (deliveries since last read), stamps, arrival times,
        messages in flight (:class:`bluefog.comm.WindowInfo`)."""

    def win_put_nonblocking(self, windows, x: PyTree, name: str, dst_weights=None,
                            self_weight=None):
        """Start ``win_put`` (Bluefog ``win_put_nonblocking``); returns ``(handle, windows)``
        (:class:`bluefog.comm.WinHandle`)."""

    def win_accumulate_nonblocking(self, windows, x: PyTree, name: str, dst_weights=None,
                                   self_weight=None):
        """Start ``win_accumulate``; returns ``(handle, windows)``."""

    def win_get_nonblocking(self, windows, name: str, src_weights=None):
        """Start ``win_get``; returns ``(handle, windows)``."""

    def win_poll(self, windows, handle):
        """Whether the op of ``handle`` has completed (Bluefog ``win_poll``)."""

    def win_wait(self, windows, handle) -> dict:
        """Complete the op of ``handle`` (Bluefog ``win_wait``); returns ``windows``."""
