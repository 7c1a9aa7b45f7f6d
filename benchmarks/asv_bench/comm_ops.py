"""Simulator communication ops: topology family x agents x message size.

Each ``setup`` builds the jitted op, compiles it and runs it once; each ``time_*`` dispatches
one call and blocks until the result is ready. ``d`` is the number of float32 values each
agent sends.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks._topologies import FAMILIES, make_topology
from bluefog_sim import SimComm, spmd

AGENTS = [8, 64, 256]
SIZES = [1_000, 100_000]
#: Mixes inside one jitted fori_loop for the ``*_loop`` benchmarks.
LOOP = 10
#: Skip combinations whose arrays would exceed this many bytes (asv: NotImplementedError).
MAX_BYTES = 512 * 2 ** 20


def _data(n, d):
    return jnp.asarray(np.random.default_rng(0).standard_normal((n, d)), jnp.float32)


class _Neighbor:
    """Shared set-up of the topology-dependent ops (each subclass compiles only its op)."""

    params = (list(FAMILIES), AGENTS, SIZES)
    param_names = ["topology", "agents", "floats_per_agent"]
    timeout = 300

    def setup(self, family, n, d):
        topo = make_topology(family, n)
        rounds = max(p.schedule.num_rounds for p in topo.patterns)
        if n * d * 4 * (rounds + 2) > MAX_BYTES:
            raise NotImplementedError("skipped: too large for the benchmark machine")
        self.x = _data(n, d)
        self.t = jnp.zeros((n,), jnp.int32)
        self.fn = self.build(topo, n)
        jax.block_until_ready(self.fn(self.x, self.t))


class NeighborAllreduce(_Neighbor):
    """``neighbor_allreduce``, one jitted call per mix."""

    def build(self, topo, n):
        return spmd(lambda c, x, t: c.neighbor_allreduce(x, topo, t), n)

    def time_neighbor_allreduce(self, *_):
        jax.block_until_ready(self.fn(self.x, self.t))


class NeighborAllgather(_Neighbor):
    """``neighbor_allgather`` (one slot per schedule round)."""

    def build(self, topo, n):
        return spmd(lambda c, x, t: c.neighbor_allgather(x, topo, t).values, n)

    def time_neighbor_allgather(self, *_):
        jax.block_until_ready(self.fn(self.x, self.t))


class NeighborAllreduceLoop(_Neighbor):
    """Ten mixes inside one jitted ``fori_loop`` (divide by 10 for the per-mix cost): the
    form the runners use."""

    def build(self, topo, n):
        comm = SimComm(n)
        one = jax.vmap(lambda x, t: comm.neighbor_allreduce(x, topo, t), axis_name=comm.axis_name)
        return jax.jit(lambda x, t: lax.fori_loop(0, LOOP, lambda k, v: one(v, t + k), x))

    def time_neighbor_allreduce_loop10(self, *_):
        jax.block_until_ready(self.fn(self.x, self.t))


class _Global:
    """Shared set-up of the topology-free collectives."""

    params = (AGENTS, SIZES)
    param_names = ["agents", "floats_per_agent"]
    timeout = 300

    def setup(self, n, d):
        self.x = _data(n, d)
        self.fn = spmd(self.op, n)
        jax.block_until_ready(self.fn(self.x))


class Allreduce(_Global):
    """``allreduce`` (``psum`` over the agent axis, averaged)."""

    @staticmethod
    def op(c, x):
        return c.allreduce(x)

    def time_allreduce(self, *_):
        jax.block_until_ready(self.fn(self.x))


class Broadcast(_Global):
    """``broadcast`` from agent 0."""

    @staticmethod
    def op(c, x):
        return c.broadcast(x, 0)

    def time_broadcast(self, *_):
        jax.block_until_ready(self.fn(self.x))


class AllgatherOp:
    """``allgather``: every agent receives all ``n`` values (``n * n * d`` floats in all)."""

    params = (AGENTS, SIZES)
    param_names = ["agents", "floats_per_agent"]
    timeout = 300

    def setup(self, n, d):
        if n * n * d * 4 > MAX_BYTES:
            raise NotImplementedError("skipped: n * n * d floats exceed the memory budget")
        self.x = _data(n, d)
        self.allgather = spmd(lambda c, x: c.allgather(x), n)
        jax.block_until_ready(self.allgather(self.x))

    def time_allgather(self, *_):
        jax.block_until_ready(self.allgather(self.x))


class HierarchicalOps:
    """``hierarchical_neighbor_allreduce``: machines of 4 agents, exponential graph over
    machines."""

    params = (AGENTS, SIZES)
    param_names = ["agents", "floats_per_agent"]
    timeout = 300
    local_size = 4

    def setup(self, n, d):
        machines = make_topology("exponential", n // self.local_size)
        self.x = _data(n, d)
        self.op = spmd(lambda c, x: c.hierarchical_neighbor_allreduce(x, machines), n,
                       local_size=self.local_size)
        jax.block_until_ready(self.op(self.x))

    def time_hierarchical_neighbor_allreduce(self, *_):
        jax.block_until_ready(self.op(self.x))
