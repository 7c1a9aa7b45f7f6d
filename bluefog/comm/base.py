r"""``ScheduleCommunicator``: every mixing op of the protocol, written once for all backends.

A backend subclasses it and supplies a handful of primitives (exchange one full permutation,
sum over all agents, gather all agents, broadcast, barrier, the agent index); the rounds,
weights, ``lax.switch`` over the patterns of a time-varying topology, hierarchical averaging
and Bluefog's per-call weights live here.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..topology import DynamicTopology, Topology
from ..topology.hierarchical import lift_machine_topology, machine_average_topology
from ..topology.schedule import Round, Schedule
from . import dynamic
from .compressed import check_compression_args, compressed_mix
from .faulty import copy_with_faults, faulty_mix, faulty_slot, refuse_compressed
from .leaves import float_leaves
from .mixing import uniform_counts
from .patterns import pattern_tables
from .protocol import NeighborValues, PyTree
from .window import WindowOps

__all__ = ["ScheduleCommunicator"]


class ScheduleCommunicator(WindowOps):
    """Backend-independent implementation of the protocol on top of a few primitives.

    Subclasses set ``size`` and ``local_size`` and implement :meth:`rank`,
    :meth:`_exchange` (one full-permutation round), :meth:`_sum` (sum over all agents),
    :meth:`_gather` (stack all agents), :meth:`broadcast`, :meth:`barrier` and
    :meth:`_uniform` (make a value that is equal on all agents usable as a ``lax.switch``
    index). A backend whose :meth:`rank` is a Python ``int`` (one agent per process) sets
    ``_static_rank = True`` and overrides :meth:`_agree_specs` to learn the other agents'
    per-call weights (see :meth:`neighbor_allreduce`).
    """

    size: int
    local_size: int = 1
    #: True where :meth:`rank` is a Python int (one agent per process, e.g. MPI); False
    #: where all agents are traced in one program (the simulator's ``vmap``).
    _static_rank: bool = False
    #: True where the backend can receive from a traced source (:meth:`_exchange_traced`):
    #: time-varying topologies then run as data (:mod:`bluefog.comm.patterns`), one
    #: exchange per round slot, instead of one ``lax.switch`` branch per pattern.
    _traced_patterns: bool = False
    #: The fault model every neighbor op applies (:mod:`bluefog.faults`); None: no faults.
    faults = None

    # ---- primitives ---------------------------------------------------------------------
    def rank(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _exchange(self, leaves: list, rnd: Round) -> list:  # pragma: no cover - abstract
        """Return, for this agent ``i``, the leaves held by agent ``rnd.sources[i]``."""
        raise NotImplementedError

    def _exchange_traced(self, leaves: list, source) -> list:  # pragma: no cover - abstract
        """Return the leaves of agent ``source`` (a traced int, this agent's source)."""
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

    def with_faults(self, faults):
        """This communicator applying ``faults`` (:class:`bluefog.faults.Faults`) to every
        neighbor op: a copy sharing the backend's resources (nothing collective runs)."""
        return copy_with_faults(self, faults)

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

    def _mix_topology(self, topology, t, leaves: list, op: str) -> list:
        """This agent's row of ``W(t) @ X``; patterns as data where the backend allows it."""
        traced = t is not None and not isinstance(t, (int, np.integer))
        if (self._traced_patterns and traced and len(topology.patterns) > 1
                and self.faults is None):  # faults: per-pattern schedules (bluefog.comm.faulty)
            return self._mix_tables(pattern_tables(topology), topology.index_traced(t), leaves)
        return self._select(topology, t, lambda lv, p: self._mix(lv, p.schedule, t), leaves, op)

    def _mix_tables(self, tables, k, leaves: list) -> list:
        r"""Pattern ``k`` (traced) of ``tables``: one traced-source exchange per round slot,
        :math:`s_{ki} x_i + \sum_r w_{kri} x_{\text{sources}[k, r, i]}` (sum-then-divide
        by the exact ``counts[k, i]`` when every pattern is a uniform average)."""
        i = self.rank()
        look = lambda table, dtype: jnp.asarray(table, dtype)[k, ..., i]  # noqa: E731
        sources = look(tables.sources, jnp.int32)
        if tables.counts is not None:
            active = look(tables.active, jnp.bool_)
            total = list(leaves)
            for r in range(tables.num_rounds):
                received = self._exchange_traced(leaves, sources[r])
                total = [acc + jnp.where(active[r], v, jnp.zeros_like(v))
                         for acc, v in zip(total, received)]
            return self._divide(total, tables.counts, lambda c, dtype: look(c, dtype))
        out = [look(tables.self_weights, leaf.dtype) * leaf for leaf in leaves]
        for r in range(tables.num_rounds):
            received = self._exchange_traced(leaves, sources[r])
            out = [acc + look(tables.weights[:, r], acc.dtype) * v
                   for acc, v in zip(out, received)]
        return out

    def _divide(self, total: list, counts: np.ndarray, lookup) -> list:
        """``total / counts[i]`` rounded once (see :meth:`_mix_uniform`)."""
        if np.all(np.exp2(np.round(np.log2(counts))) == counts):
            # 1/c is exact for powers of two: XLA's multiply-by-reciprocal is exact too
            return [acc / lookup(counts, acc.dtype) for acc in total]
        # XLA rewrites A / broadcast(c) into A * broadcast(1/c), rounding 1/c first (seen on
        # CPU, jax 0.10); a divisor hidden behind an optimization barrier keeps the one,
        # correctly rounded division, at the cost of one leaf-sized buffer of divisors.
        return [acc / lax.optimization_barrier(jnp.full(acc.shape, lookup(counts, acc.dtype)))
                for acc in total]

    def _mix(self, leaves: list, schedule: Schedule, t=None) -> list:
        r"""This agent's row of ``W @ X``: one exchange per round of ``schedule``.

        Uniform averages (every row :math:`1/c_i` on itself and each in-neighbor, see
        :func:`bluefog.comm.mixing.uniform_counts`) are summed, then divided once by the
        integer :math:`c_i`, as Bluefog does; other rows are
        :math:`s_i x_i + \sum_r w^{(r)}_i x_{\sigma_r(i)}`.
        """
        if self.faults is not None:  # the receiver's rule at step t (bluefog.comm.faulty)
            return faulty_mix(self, leaves, schedule, t)
        counts = uniform_counts(schedule)
        if counts is not None:
            return self._mix_uniform(leaves, schedule, counts)
        out = [self._table(schedule.self_weights, leaf.dtype) * leaf for leaf in leaves]
        for rnd in schedule.rounds:
            received = self._exchange(leaves, rnd)
            out = [acc + self._table(rnd.weights, acc.dtype) * r for acc, r in zip(out, received)]
        return out

    def _mix_uniform(self, leaves: list, schedule: Schedule, counts) -> list:
        """Sum-then-scale: add the received values of real edges, divide by ``counts[i]``."""
        total = list(leaves)
        for rnd in schedule.rounds:
            received = self._exchange(leaves, rnd)
            if rnd.active.all():
                total = [acc + r for acc, r in zip(total, received)]
            else:  # padding exchanges (weight 0) add nothing
                real = self._table(rnd.active, jnp.bool_)
                total = [acc + jnp.where(real, r, jnp.zeros_like(r))
                         for acc, r in zip(total, received)]
        return self._divide(total, counts, self._table)

    # ---- the protocol -------------------------------------------------------------------
    def neighbor_allreduce(self, x: PyTree, topology=None, t=None, *, self_weight=None,
                           src_weights=None, dst_weights=None, compressor=None,
                           key=None) -> PyTree:
        r"""Weighted neighbor average, from a topology or from Bluefog's per-call weights.

        **Topology form** ``neighbor_allreduce(x, topology, t)``:
        :math:`x_i^{+} = \sum_j W_{ij}(t)\, x_j`, executed as the schedule of full
        permutations (one exchange per round, see :mod:`bluefog.topology.schedule`):
        :math:`x_i^{+} = W_{ii}x_i + \sum_r W_{i\sigma_r(i)}\, x_{\sigma_r(i)}`. For a
        :class:`~bluefog.topology.DynamicTopology` the pattern at step ``t`` is picked inside
        ``jit`` with ``lax.switch``.

        **Compressed** ``neighbor_allreduce(x, topology, t, compressor=C, key=k)``: every
        agent sends the payload :math:`\mathcal C(x_j, \xi_j)` instead of :math:`x_j` and
        the result is :math:`\sum_j W_{ij}\,\mathcal D(\mathcal C(x_j, \xi_j))` (the
        agent's own term decompressed too); see :mod:`bluefog.comm.compressed`. ``key`` is
        this agent's PRNG key (e.g. ``fold_in(ctx.key, count)``).

        **Per-call form** ``neighbor_allreduce(x, self_weight=s, src_weights={j: a_j},
        dst_weights={k: b_k})`` (Bluefog's dynamic ``neighbor_allreduce``): agent ``i``
        sends :math:`b_k x_i` to every ``k`` in ``dst_weights`` and computes

        .. math:: x_i^{+} = s\, x_i + \sum_{j \in \mathrm{src}(i)} a_j\,\bigl(b^{(j)}_{i}\, x_j\bigr),

        i.e. one step with :math:`W_{ii} = s`, :math:`W_{ij} = a_j b^{(j)}_i`. Each of
        ``self_weight``, ``src_weights``, ``dst_weights`` is a plain value or a callable
        ``rank -> value`` evaluated in Python for a static int rank (MPI: this rank; the
        simulator: every rank ``0 .. n-1``, at trace time). In the simulator the rank is
        traced, so per-agent peers must be given by a callable, e.g.
        ``src_weights=lambda r: {(r - 1) % n: 0.5}``; a non-empty plain dict is refused.
        ``dst_weights`` may be a dict ``{rank: weight}``, a list of ranks (weight 1) or
        ``None`` (weight 1 to every agent that lists this one in its ``src_weights``). The
        keys of ``src_weights`` on agent ``i`` must be exactly the agents whose
        ``dst_weights`` contain ``i``; a mismatch raises the same ``ValueError`` naming the
        agents on every rank. The agreed edges are compiled into a schedule of full
        permutations exactly like a topology (cached per set of specs). Under MPI one host
        ``allgather`` of the specs runs each time the call is *traced*.

        Parameters
        ----------
        x : pytree of floating arrays (this agent's value)
        topology : Topology or DynamicTopology with ``size == self.size`` (topology form)
        t : int or traced int, optional
            Step counter; required for time-varying topologies (topology form).
        self_weight : float, or callable ``rank -> float`` (per-call form)
        src_weights : dict ``{int: float}``, or callable ``rank -> dict`` (per-call form)
        dst_weights : dict ``{int: float}``, sequence of int, None, or callable ``rank ->``
            one of those (per-call form)
        compressor : bluefog.compression.Compressor, optional (topology form)
        key : PRNG key, required with ``compressor``

        Returns
        -------
        pytree of the structure, shapes and dtypes of ``x``

        References
        ----------
        Bluefog ``bf.neighbor_allreduce(tensor, self_weight, src_weights, dst_weights)``
        (B. Ying et al., "BlueFog: make decentralized algorithms practical for optimization
        and deep learning", arXiv:2111.04287, 2021).
        """
        op = "neighbor_allreduce"
        if self_weight is None and src_weights is None and dst_weights is None:
            if topology is None:
                raise TypeError(
                    "neighbor_allreduce: pass a topology, neighbor_allreduce(x, topology, t), or "
                    "the dynamic form neighbor_allreduce(x, self_weight=0.5, src_weights={j: "
                    "0.5}, dst_weights={k: 1.0}); got neither."
                )
            self._check_topology(topology, op)
            leaves, treedef = float_leaves(x, op)
            if compressor is not None:
                refuse_compressed(self.faults, op)
                check_compression_args(compressor, key, op)
                mix = lambda lv, p: compressed_mix(  # noqa: E731
                    self, jax.tree_util.tree_unflatten(treedef, lv), p.schedule, compressor, key)
                return jax.tree_util.tree_unflatten(treedef,
                                                    self._select(topology, t, mix, leaves, op))
            return jax.tree_util.tree_unflatten(treedef,
                                                self._mix_topology(topology, t, leaves, op))
        if compressor is not None:
            raise TypeError("neighbor_allreduce: compressor works with the topology form "
                            "neighbor_allreduce(x, topology, t, compressor=C, key=k); got the "
                            "per-call weights form.")
        if topology is not None or t is not None:
            raise TypeError(
                "neighbor_allreduce: the dynamic form (self_weight/src_weights/dst_weights) "
                "replaces the topology for one call; got a topology or t as well. Call either "
                "neighbor_allreduce(x, topology, t) or neighbor_allreduce(x, self_weight=..., "
                "src_weights=..., dst_weights=...)."
            )
        leaves, treedef = float_leaves(x, op)
        schedule = self._dynamic_schedule(self_weight, src_weights, dst_weights)
        return jax.tree_util.tree_unflatten(treedef, self._mix(leaves, schedule))

    def _dynamic_schedule(self, self_weight, src_weights, dst_weights) -> Schedule:
        """Every agent's per-call weights, agreed on and compiled (see :mod:`.dynamic`)."""
        n = self.size
        if not self._static_rank:
            dynamic.check_rank_independent(src_weights, dst_weights, n)
        specs = self._agree_specs(
            lambda r: dynamic.rank_spec(r, n, self_weight, src_weights, dst_weights))
        return dynamic.dynamic_schedule(specs)

    def _agree_specs(self, spec_of) -> tuple:
        """All agents' specs in rank order; here every agent is evaluated in this process.

        A backend with one agent per process overrides this with a collective (MPI: one host
        ``allgather`` of ``dynamic.attempt(spec_of, own_rank)``).
        """
        return dynamic.agreed([dynamic.attempt(spec_of, r) for r in range(self.size)])

    def neighbor_allgather(self, x: PyTree, topology, t=None) -> NeighborValues:
        """Gather the in-neighbors' values, one slot per schedule round.

        Returns :class:`NeighborValues` with ``values[r] = x_{sigma_r(i)}``,
        ``sources[r] = sigma_r(i)`` and ``weights[r] = W[i, sigma_r(i)]`` (0 for padding).
        For time-varying topologies all patterns are padded to the largest round count
        (padding slots: zeros, source -1, weight 0). ``sum_r weights[r] * values[r] +
        W[i, i] * x`` equals :meth:`neighbor_allreduce`. With ``faults``, a lost message's
        slot has value 0 and weight 0 (its source is kept).
        """
        op = "neighbor_allgather"
        self._check_topology(topology, op)
        leaves, treedef = float_leaves(x, op)
        R = max(1, max(p.schedule.num_rounds for p in topology.patterns))
        wdtype = jnp.result_type(*[leaf.dtype for leaf in leaves])

        def gather(lv, pattern):
            sched = pattern.schedule
            vals = [[] for _ in lv]
            srcs, ws = [], []
            for rnd in sched.rounds:
                received, w = self._exchange(lv, rnd), self._table(rnd.weights, wdtype)
                if self.faults is not None:  # lost: value 0, weight 0 (bluefog.comm.faulty)
                    received, w = faulty_slot(self, rnd, t, received, w)
                for slot, r in zip(vals, received):
                    slot.append(r)
                srcs.append(self._table(rnd.sources.astype(np.int32), jnp.int32))
                ws.append(w)
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
        leaves, treedef = float_leaves(x, "allreduce")
        out = self._sum(leaves)
        if average:
            out = [v / jnp.asarray(self.size, v.dtype) for v in out]
        return jax.tree_util.tree_unflatten(treedef, out)

    def allgather(self, x: PyTree) -> PyTree:
        """Stack every agent's value: each leaf becomes ``(size, *leaf.shape)``, row ``j``
        being agent ``j``'s (MPI_Allgather semantics)."""
        leaves, treedef = float_leaves(x, "allgather")
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
        same local index on the neighboring machines (the machine graph lifted to agents).

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
        leaves, treedef = float_leaves(x, op)
        local = self._local_average(leaves)
        lifted = lift_machine_topology(machine_topology, L)
        out = self._mix_topology(lifted, t, local, op)
        return jax.tree_util.tree_unflatten(treedef, out)
