"""One step of every algorithm of the library, 64 simulated agents.

Topology: the symmetric exponential graph (base 4; symmetric doubly stochastic, so every
algorithm accepts it, EXTRA/NIDS included; falls back to the undirected ring).

Problem: decentralized least squares, agent ``i`` holds ``A_i`` (32 x 100) and ``b_i``.
``time_step`` is one jitted step per dispatch; ``time_step_scan10`` ten steps inside one
``lax.scan`` (what the runners do).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks._topologies import make_topology
from bluefog.algorithm import AgentContext, Problem
from bluefog_sim import agent_keys, spmd

N = 64
#: Factories tried when ``algorithms.REGISTRY`` is absent (name -> needs a step size).
KNOWN = ("consensus", "push_sum", "dgd", "diffusion", "exact_diffusion", "nids", "extra",
         "gradient_tracking", "push_diging")


def _registry():
    try:
        import algorithms
    except ImportError:
        return {}
    reg = getattr(algorithms, "REGISTRY", None)
    if isinstance(reg, dict) and reg:
        return dict(reg)
    return {k: getattr(algorithms, k) for k in KNOWN if callable(getattr(algorithms, k, None))}


def _build(factory):
    for kwargs in ({"lr": 0.01}, {}):
        try:
            return factory(**kwargs)
        except TypeError:
            continue
    raise NotImplementedError(f"skipped: cannot build {factory!r} with lr=0.01 or no args")


_REG = _registry()


def _topology():
    import bluefog.topology as T

    ctor = getattr(T, "symmetric_exponential_graph", None)
    return ctor(N) if ctor is not None else make_topology("ring", N)


def _problem():
    rng = np.random.default_rng(0)
    A = jnp.asarray(rng.standard_normal((N, 32, 100)) / np.sqrt(32), jnp.float32)
    b = jnp.asarray(rng.standard_normal((N, 32)), jnp.float32)
    return Problem(loss=lambda x, d: 0.5 * jnp.sum((d[0] @ x - d[1]) ** 2),
                   data=(A, b), init_params=jnp.zeros(100, jnp.float32), name="least_squares")


class AlgorithmStep:
    params = [sorted(_REG) or ["<no algorithms available>"]]
    param_names = ["algorithm"]
    timeout = 300

    def setup(self, name):
        if name not in _REG:
            raise NotImplementedError("skipped: the algorithms package has no algorithms yet")
        alg = _build(_REG[name])
        topo = _topology()
        problem = _problem()

        def ctx(comm, data, key):
            return AgentContext(comm, topo, problem, data, key)

        init = spmd(lambda c, data, key: alg.init(problem.init_params, ctx(c, data, key)), N)
        self.data, self.keys = problem.data, agent_keys(0, N)
        self.state = init(self.data, self.keys)
        self.step = spmd(lambda c, s, data, key: alg.step(s, ctx(c, data, key)), N)
        self.scan = spmd(lambda c, s, data, key: lax.scan(
            lambda st, _: (alg.step(st, ctx(c, data, key)), None), s, None, length=10)[0], N)
        jax.block_until_ready(self.step(self.state, self.data, self.keys))
        jax.block_until_ready(self.scan(self.state, self.data, self.keys))

    def time_step(self, name):
        jax.block_until_ready(self.step(self.state, self.data, self.keys))

    def time_step_scan10(self, name):
        jax.block_until_ready(self.scan(self.state, self.data, self.keys))
