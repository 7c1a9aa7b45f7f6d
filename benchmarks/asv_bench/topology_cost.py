"""Communication-cost numbers per topology, tracked over commits (``track_*``)."""

import jax.numpy as jnp
import numpy as np

from benchmarks._topologies import FAMILIES, make_topology, rounds_per_step
from bluefog_sim import spmd

#: Message of the bytes benchmark: 1000 float32 values per agent.
FLOATS = 1000
#: Mixing rounds for the consensus-error benchmark.
K = 10


class TopologyCost:
    """Bytes, rounds and consensus error per ``neighbor_allreduce`` step."""

    params = (list(FAMILIES), [8, 64, 256])
    param_names = ["topology", "agents"]

    def setup(self, family, n):
        self.topo = make_topology(family, n)

    def track_rounds_per_step(self, *_):
        """Schedule rounds (sends per agent) per step; mean over one period if dynamic."""
        return rounds_per_step(self.topo)

    track_rounds_per_step.unit = "rounds"

    def track_bytes_sent_per_agent(self, *_):
        """Bytes each agent sends per step for a 1000-float32 message (every round of a
        schedule is a full permutation: one send per agent per round)."""
        return rounds_per_step(self.topo) * FLOATS * 4

    track_bytes_sent_per_agent.unit = "bytes"

    def track_consensus_error_after_10_rounds(self, family, n):
        r"""``||X_K - 1 xbar^T||_F / ||X_0 - 1 xbar^T||_F`` after K = 10 simulated mixing
        steps from a fixed random start (d = 16); smaller is better."""
        x0 = np.random.default_rng(1).standard_normal((n, 16))
        mix = spmd(lambda c, x, t: c.neighbor_allreduce(x, self.topo, t), n)
        x = jnp.asarray(x0, jnp.float32)
        for t in range(K):
            x = mix(x, jnp.full((n,), t, jnp.int32))
        # Row-stochastic mixing preserves the average only if W is doubly stochastic; the
        # error is measured against the start's average, which is what consensus must reach.
        avg = x0.mean(axis=0, keepdims=True)
        return float(np.linalg.norm(np.asarray(x, np.float64) - avg) / np.linalg.norm(x0 - avg))

    track_consensus_error_after_10_rounds.unit = "relative error"
