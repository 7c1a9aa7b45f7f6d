"""Simulator communication ops: topology family x agents x message size.

Each ``setup`` builds the jitted op, compiles it and runs it once; each ``time_*`` dispatches
one call and blocks until the result is ready. ``d`` is the number of float32 values each
agent sends.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import BENCH_DIR  # noqa: F401  (puts benchmarks/ on sys.path)
from _topologies import FAMILIES, make_topology  # noqa: E402

from bluefog_sim import SimComm, spmd  # noqa: E402

AGENTS = [8, 64, 256]
SIZES = [1_000, 100_000]
#: Mixes inside one jitted fori_loop for the ``*_loop`` benchmarks.
LOOP = 10
#: Skip combinations whose arrays would exceed this many bytes (asv: NotImplementedError).
MAX_BYTES = 512 * 2 ** 20


def _data(n, d):
    return jnp.asarray(np.random.default_rng(0).standard_normal((n, d)), jnp.float32)


class NeighborOps:
    """``neighbor_allreduce`` / ``neighbor_allgather`` for every topology family."""

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
        self.allreduce = spmd(lambda c, x, t: c.neighbor_allreduce(x, topo, t), n)
        self.allgather = spmd(lambda c, x, t: c.neighbor_allgather(x, topo, t).values, n)
        comm = SimComm(n)
        one = jax.vmap(lambda x, t: comm.neighbor_allreduce(x, topo, t), axis_name=comm.axis_name)
        self.loop = jax.jit(lambda x, t: lax.fori_loop(0, LOOP, lambda k, v: one(v, t + k), x))
        for f in (self.allreduce, self.allgather, self.loop):
            jax.block_until_ready(f(self.x, self.t))

    def time_neighbor_allreduce(self, *_):
        jax.block_until_ready(self.allreduce(self.x, self.t))

    def time_neighbor_allgather(self, *_):
        jax.block_until_ready(self.allgather(self.x, self.t))

    def time_neighbor_allreduce_loop10(self, *_):
        """Ten mixes inside one jitted ``fori_loop`` (divide by 10 for the per-mix cost)."""
        jax.block_until_ready(self.loop(self.x, self.t))


class GlobalOps:
    """Topology-free collectives: ``allreduce`` and ``broadcast``."""

    params = (AGENTS, SIZES)
    param_names = ["agents", "floats_per_agent"]
    timeout = 300

    def setup(self, n, d):
        self.x = _data(n, d)
        self.allreduce = spmd(lambda c, x: c.allreduce(x), n)
        self.broadcast = spmd(lambda c, x: c.broadcast(x, 0), n)
        for f in (self.allreduce, self.broadcast):
            jax.block_until_ready(f(self.x))

    def time_allreduce(self, *_):
        jax.block_until_ready(self.allreduce(self.x))

    def time_broadcast(self, *_):
        jax.block_until_ready(self.broadcast(self.x))


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
