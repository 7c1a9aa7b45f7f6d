r"""The Communicator protocol that every algorithm is written against.

An algorithm is written from **one agent's point of view**. It never branches on the rank in
Python; per-agent quantities (weights, data) are looked up with :meth:`Communicator.rank`.
The same function then runs

* in the simulator, for all agents at once under ``jax.vmap(f, axis_name="agents")``
  (:class:`bluefog_sim.SimComm`: ``lax.ppermute`` / ``lax.psum`` over the named axis), and
* under ``mpirun``, one agent per rank (:class:`bluefog_dist.MpiComm`: ``mpi4jax``).

The mixing logic (rounds of full permutations, weights, dynamic pattern selection with
``lax.switch``, hierarchical averaging) lives **once**, in :class:`ScheduleCommunicator`;
a backend only supplies a handful of primitives: exchange one full permutation, sum over all
agents, gather all agents, broadcast, barrier and the agent index.

Every operation accepts a pytree of floating-point arrays and returns one of the same
structure, shapes and dtypes.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .topology import DynamicTopology, Topology
from .topology.hierarchical import lift_machine_topology, machine_average_topology
from .topology.schedule import Round, Schedule

__all__ = ["Communicator", "NeighborValues", "ScheduleCommunicator"]

PyTree = Any


class NeighborValues(NamedTuple):
    """Result of :meth:`Communicator.neighbor_allgather` for one agent.

    Attributes
    ----------
    values : pytree, each leaf of shape ``(R, *leaf.shape)``
        What this agent received in each of the ``R`` schedule rounds.
    sources : int32 array, shape ``(R,)``
        The sending agent of each round.
    weights : array, shape ``(R,)``
        ``W[i, sources[r]]``; 0 marks a padding exchange (not an in-neighbour).
    """

    values: PyTree
    sources: jax.Array
    weights: jax.Array


@runtime_checkable
class Communicator(Protocol):
    """What an algorithm may ask of its backend (see the module docstring)."""

    size: int
    local_size: int

    def rank(self):
        """This agent's index in ``[0, size)`` (a traced int32 in the simulator)."""

    def neighbor_allreduce(self, x: PyTree, topology, t=None) -> PyTree:
        r""":math:`x_i^{+} = \sum_j W_{ij}(t)\, x_j` for this agent ``i``."""

    def neighbor_allgather(self, x: PyTree, topology, t=None) -> NeighborValues:
        """Values of this agent's in-neighbours, one per schedule round."""

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


def _float_leaves(x: PyTree, op: str):
    leaves, treedef = jax.tree_util.tree_flatten(x)
    if not leaves:
        raise ValueError(f"{op}: x must contain at least one array; got an empty pytree {x!r}.")
    out = []
    for leaf in leaves:
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            raise TypeError(
                f"{op}: every leaf of x must be a floating-point array (mixing takes convex "
                f"combinations); got dtype {leaf.dtype}. Cast with x.astype(jnp.float32)."
            )
        out.append(leaf)
    return out, treedef


class ScheduleCommunicator:
    """Backend-independent implementation of the protocol on top of five primitives.

    Subclasses set ``size`` and ``local_size`` and implement :meth:`rank`,
    :meth:`_exchange` (one full-permutation round), :meth:`_sum` (sum over all agents),
    :meth:`_gather` (stack all agents), :meth:`broadcast`, :meth:`barrier` and
    :meth:`_uniform` (make a value that is equal on all agents usable as a ``lax.switch``
    index).
    """

    size: int
    local_size: int = 1

    # ---- primitives ---------------------------------------------------------------------
    def rank(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _exchange(self, leaves: list, rnd: Round) -> list:  # pragma: no cover - abstract
        """Return, for this agent ``i``, the leaves held by agent ``rnd.sources[i]``."""
        raise NotImplementedError

    def _sum(self, leaves: list) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def _gather(self, leaves: list) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def _uniform(self, value):
        return value

    def uniform(self, value):
        r"""Return ``value``, declared equal on every agent.

        Control flow on a rank-independent quantity, such as "is ``(count + 1) mod J = 0``",
        must run one branch. Under the simulator's ``vmap`` the step counter is batched (it
        lives in every agent's state) and ``lax.cond`` would evaluate and select both
        branches, communication included; this collapses the agent axis (a ``pmax`` over it)
        so the predicate is unbatched. Under MPI it is the identity. Booleans are accepted.
        The caller guarantees that the value is the same on every agent.
        """
        value = jnp.asarray(value)
        if value.dtype == jnp.bool_:
            return self._uniform(value.astype(jnp.int32)) > 0
        return self._uniform(value)

    def _local_average(self, leaves: list) -> list:
        """Mean over the agents of this machine; backends may override with a native op."""
        topo = machine_average_topology(self.size, self.local_size)
        return self._mix(leaves, topo.schedule)

    # ---- helpers ------------------------------------------------------------------------
    def _table(self, values: np.ndarray, dtype):
        """``values[rank]`` as a scalar of ``dtype`` (a constant table looked up by rank)."""
        return jnp.asarray(np.asarray(values), dtype=dtype)[self.rank()]

    def _check_topology(self, topology, op: str):
        if not isinstance(topology, (Topology, DynamicTopology)):
            raise TypeError(
                f"{op}: topology must be a bluefog.topology.Topology or DynamicTopology; got "
                f"{type(topology).__name__}. Build one with e.g. exponential_graph({self.size})."
            )
        if topology.size != self.size:
            raise ValueError(
                f"{op}: topology.size must equal the number of agents ({self.size}); got "
                f"{topology.size}. Build the topology for {self.size} agents."
            )
        return topology

    def _select(self, topology, t, fn, leaves, op: str):
        """Apply ``fn(leaves, pattern)`` for the pattern in force at step ``t``."""
        patterns = topology.patterns
        if len(patterns) == 1:
            return fn(leaves, patterns[0])
        if t is None:
            raise ValueError(
                f"{op}: topology {topology.name!r} is time-varying; pass the step counter, "
                f"e.g. {op}(x, topology, t=state.count)."
            )
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            return fn(leaves, topology.at(int(t)))  # static step: no switch needed
        index = self._uniform(topology.index_traced(t))
        branches = [partial(lambda p, lv: fn(lv, p), p) for p in patterns]
        return lax.switch(index, branches, leaves)

    def _mix(self, leaves: list, schedule: Schedule) -> list:
        out = [self._table(schedule.self_weights, leaf.dtype) * leaf for leaf in leaves]
        for rnd in schedule.rounds:
            received = self._exchange(leaves, rnd)
            out = [acc + self._table(rnd.weights, acc.dtype) * r for acc, r in zip(out, received)]
        return out

    # ---- the protocol -------------------------------------------------------------------
    def neighbor_allreduce(self, x: PyTree, topology, t=None) -> PyTree:
        r"""Weighted neighbour average :math:`x_i^{+} = \sum_j W_{ij}(t)\, x_j`.

        Executed as the schedule of full permutations (one exchange per round, see
        :mod:`bluefog.topology.schedule`):
        :math:`x_i^{+} = W_{ii}x_i + \sum_r W_{i\sigma_r(i)}\, x_{\sigma_r(i)}`.
        For a :class:`~bluefog.topology.DynamicTopology` the pattern at step ``t`` is picked
        inside ``jit`` with ``lax.switch``.

        Parameters
        ----------
        x : pytree of floating arrays (this agent's value)
        topology : Topology or DynamicTopology with ``size == self.size``
        t : int or traced int, optional
            Step counter; required for time-varying topologies.

        Reference: Bluefog ``neighbor_allreduce`` (Ying et al., "BlueFog: make decentralized
        algorithms practical for optimization and deep learning", arXiv:2111.04287).
        """
        op = "neighbor_allreduce"
        self._check_topology(topology, op)
        leaves, treedef = _float_leaves(x, op)
        out = self._select(topology, t, lambda lv, p: self._mix(lv, p.schedule), leaves, op)
        return jax.tree_util.tree_unflatten(treedef, out)

    def neighbor_allgather(self, x: PyTree, topology, t=None) -> NeighborValues:
        """Gather the in-neighbours' values, one slot per schedule round.

        Returns :class:`NeighborValues` with ``values[r] = x_{sigma_r(i)}``,
        ``sources[r] = sigma_r(i)`` and ``weights[r] = W[i, sigma_r(i)]`` (0 for padding).
        For time-varying topologies all patterns are padded to the largest round count
        (padding slots: zeros, source -1, weight 0). ``sum_r weights[r] * values[r] +
        W[i, i] * x`` equals :meth:`neighbor_allreduce`.
        """
        op = "neighbor_allgather"
        self._check_topology(topology, op)
        leaves, treedef = _float_leaves(x, op)
        R = max(1, max(p.schedule.num_rounds for p in topology.patterns))
        wdtype = jnp.result_type(*[leaf.dtype for leaf in leaves])

        def gather(lv, pattern):
            sched = pattern.schedule
            vals = [[] for _ in lv]
            srcs, ws = [], []
            for rnd in sched.rounds:
                for slot, r in zip(vals, self._exchange(lv, rnd)):
                    slot.append(r)
                srcs.append(self._table(rnd.sources.astype(np.int32), jnp.int32))
                ws.append(self._table(rnd.weights, wdtype))
            for _ in range(R - sched.num_rounds):
                for slot, leaf in zip(vals, lv):
                    slot.append(jnp.zeros_like(leaf))
                srcs.append(jnp.asarray(-1, jnp.int32))
                ws.append(jnp.zeros((), wdtype))
            return [jnp.stack(v) for v in vals], jnp.stack(srcs), jnp.stack(ws)

        values, sources, weights = self._select(topology, t, gather, leaves, op)
        return NeighborValues(jax.tree_util.tree_unflatten(treedef, values), sources, weights)

    def allreduce(self, x: PyTree, average: bool = True) -> PyTree:
        r"""Global reduction :math:`\tfrac1n \sum_{j=1}^n x_j` (``average=True``) or
        :math:`\sum_j x_j`; the same value on every agent (MPI_Allreduce semantics)."""
        if not isinstance(average, bool):
            raise TypeError(f"allreduce: average must be a bool; got {average!r}.")
        leaves, treedef = _float_leaves(x, "allreduce")
        out = self._sum(leaves)
        if average:
            out = [v / jnp.asarray(self.size, v.dtype) for v in out]
        return jax.tree_util.tree_unflatten(treedef, out)

    def allgather(self, x: PyTree) -> PyTree:
        """Stack every agent's value: each leaf becomes ``(size, *leaf.shape)``, row ``j``
        being agent ``j``'s (MPI_Allgather semantics)."""
        leaves, treedef = _float_leaves(x, "allgather")
        return jax.tree_util.tree_unflatten(treedef, self._gather(leaves))

    def _check_root(self, root, op: str) -> int:
        if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
            raise TypeError(f"{op}: root must be a static int in [0, {self.size}); got {root!r}.")
        if not 0 <= root < self.size:
            raise ValueError(f"{op}: root must be in [0, {self.size}); got {root}.")
        return int(root)

    def hierarchical_neighbor_allreduce(self, x: PyTree, machine_topology, t=None) -> PyTree:
        r"""Two-level mixing: average inside each machine, then mix machines.

        Agents are grouped into ``m = size / local_size`` machines of ``local_size``
        consecutive agents; with :math:`M(i)` the machine of agent ``i`` and
        :math:`\bar x_{M} = \frac{1}{L}\sum_{j \in M} x_j`,

        .. math:: x_i^{+} = \sum_{M'} W^{\text{machine}}_{M(i) M'}\; \bar x_{M'}.

        The cross-machine step is executed by each agent exchanging with the agent of the
        same local index on the neighbouring machines (the machine graph lifted to agents).

        Reference: Bluefog ``hierarchical_neighbor_allreduce`` (Ying et al., 2021).
        """
        op = "hierarchical_neighbor_allreduce"
        if not isinstance(machine_topology, (Topology, DynamicTopology)):
            raise TypeError(
                f"{op}: machine_topology must be a Topology or DynamicTopology over machines; "
                f"got {type(machine_topology).__name__}."
            )
        L = self.local_size
        if machine_topology.size * L != self.size:
            raise ValueError(
                f"{op}: machine_topology.size must be size / local_size = {self.size} / {L} = "
                f"{self.size // L if self.size % L == 0 else self.size / L}; got "
                f"{machine_topology.size}. Build the topology over machines, not agents."
            )
        leaves, treedef = _float_leaves(x, op)
        local = self._local_average(leaves)
        lifted = lift_machine_topology(machine_topology, L)
        out = self._select(lifted, t, lambda lv, p: self._mix(lv, p.schedule), local, op)
        return jax.tree_util.tree_unflatten(treedef, out)
