r"""Time-varying topologies: a finite pool of static patterns and a rule ``t -> pattern``.

Inside ``jit`` the pattern is chosen with ``lax.switch`` over static branches (mpi4jax needs
static peers), so a dynamic topology is a tuple of :class:`~bluefog.topology.Topology`
``patterns`` plus an index rule that is computed identically in NumPy (:meth:`index`) and in
traced JAX (:meth:`index_traced`):

* periodic (``period = P``): pattern ``t mod P``;
* non-periodic (``period = None``): pattern ``h(seed, t) mod K`` with ``h`` a 32-bit
  integer hash (the "lowbias32" finalizer), i.e. an i.i.d.-looking draw from the pool that
  every agent and every rank computes identically without communication.
"""

from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np

from ._topology import Topology
from .validation import check_num_agents, check_positive_int

__all__ = ["DynamicTopology", "RHO_HORIZON", "random_matching"]

_MASK = 0xFFFFFFFF

#: Steps whose product defines ``rho`` for a non-periodic topology (the pool has no period).
RHO_HORIZON = 64


def _hash32(seed: int, t: int) -> int:
    x = (int(t) * 0x9E3779B9 + int(seed)) & _MASK
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK
    x ^= x >> 16
    return x


def _hash32_traced(seed: int, t):
    import jax.numpy as jnp

    x = jnp.asarray(t).astype(jnp.uint32) * jnp.uint32(0x9E3779B9) + jnp.uint32(int(seed) & _MASK)
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    x = x ^ (x >> 16)
    return x


class DynamicTopology:
    """A time-varying topology over a fixed pool of static patterns.

    Parameters
    ----------
    patterns : sequence of Topology
        All of the same size.
    period : int or None
        ``None`` selects patterns by the hash rule (non-periodic); an int ``P`` selects
        ``patterns[t mod P]`` and requires ``len(patterns) == P``.
    seed : int
        Seed of the hash rule (non-periodic only).
    name : str
    """

    def __init__(self, patterns, *, period: int | None, seed: int = 0, name: str = "dynamic"):
        patterns = tuple(patterns)
        if not patterns or not all(isinstance(p, Topology) for p in patterns):
            raise TypeError(
                "patterns must be a non-empty sequence of Topology objects; got "
                f"{[type(p).__name__ for p in patterns]}."
            )
        sizes = {p.size for p in patterns}
        if len(sizes) != 1:
            raise ValueError(f"all patterns must have the same size; got sizes {sorted(sizes)}.")
        if period is not None:
            period = check_positive_int(period, "period")
            if period != len(patterns):
                raise ValueError(
                    f"period must equal len(patterns) for a periodic topology; got period="
                    f"{period} with {len(patterns)} patterns."
                )
        self._patterns = patterns
        self._period = period
        self._seed = int(seed)
        self._name = name

    @property
    def size(self) -> int:
        return self._patterns[0].size

    @property
    def period(self) -> int | None:
        """Number of steps after which the sequence repeats; ``None`` if non-periodic."""
        return self._period

    @property
    def patterns(self) -> tuple[Topology, ...]:
        return self._patterns

    @property
    def name(self) -> str:
        return self._name

    def _check_t(self, t) -> int:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"t must be a non-negative int step counter; got {t!r}.")
        if t < 0:
            raise ValueError(f"t must be >= 0; got {t}.")
        return int(t)

    def index(self, t: int) -> int:
        """Index into :attr:`patterns` of the pattern used at step ``t`` (NumPy rule)."""
        t = self._check_t(t)
        if self._period is not None:
            return t % self._period
        return _hash32(self._seed, t) % len(self._patterns)

    def index_traced(self, t):
        """The same rule as :meth:`index` for a traced integer ``t`` (returns int32)."""
        import jax.numpy as jnp

        if self._period is not None:
            return (jnp.asarray(t).astype(jnp.int32) % self._period).astype(jnp.int32)
        k = len(self._patterns)
        return (_hash32_traced(self._seed, t) % jnp.uint32(k)).astype(jnp.int32)

    def at(self, t: int) -> Topology:
        """The static topology in force at step ``t``."""
        return self._patterns[self.index(t)]

    def mean_weights(self, steps: int) -> np.ndarray:
        """Product ``W(steps-1) ... W(1) W(0)`` (the dense oracle for ``steps`` rounds)."""
        M = np.eye(self.size)
        for t in range(steps):
            M = self.at(t).weights @ M
        return M

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(f"{self._period}|{self._seed}|".encode())
        for p in self._patterns:
            h.update(p.fingerprint.encode())
        return h.hexdigest()

    @property
    def rho_horizon(self) -> int:
        """Steps :math:`H` whose product defines :attr:`period_rho`: the period, or
        :data:`RHO_HORIZON` steps of the hash sequence for a non-periodic topology."""
        return self._period if self._period is not None else RHO_HORIZON

    @cached_property
    def period_rho(self) -> float:
        r"""Contraction of one period, :math:`\rho_{\text{period}} = \|W(H-1) \cdots W(1) W(0)
        - J\|_2`, :math:`J = \tfrac1n \mathbf 1\mathbf 1^\top`, :math:`H` = :attr:`rho_horizon`.

        For doubly stochastic patterns, :math:`\|x(t + H) - \bar x \mathbf 1\| \le
        \rho_{\text{period}} \|x(t) - \bar x \mathbf 1\|` at period boundaries; ``0`` means
        exact averaging after one period (one-peer exponential graph, ``n`` a power of 2).
        For a non-periodic topology it is the value for the first :data:`RHO_HORIZON` steps.

        References
        ----------
        A. Nedic, A. Olshevsky, M. Rabbat, "Network topology and communication-computation
        tradeoffs in decentralized optimization", Proc. IEEE 106(5) (2018), Sec. III
        (products of time-varying mixing matrices).
        """
        n = self.size
        if n == 1:
            return 0.0
        P = self.mean_weights(self.rho_horizon)
        return float(np.linalg.norm(P - np.full((n, n), 1.0 / n), ord=2))

    @cached_property
    def rho(self) -> float:
        r"""Per-step consensus rate over one period, :math:`\rho = \rho_{\text{period}}^{1/H}`
        (see :attr:`period_rho`); comparable with a static :attr:`Topology.rho`, e.g. in
        "steps until :math:`\rho^k \le \epsilon`". Not the rate of any single pattern: most
        one-peer patterns alone are disconnected and have :math:`\|W(t) - J\|_2 = 1`.
        """
        return float(self.period_rho ** (1.0 / self.rho_horizon))

    @property
    def spectral_gap(self) -> float:
        """``1 - rho`` (per step): larger means faster mixing."""
        return 1.0 - self.rho

    def __repr__(self) -> str:
        return (f"DynamicTopology({self._name}, size={self.size}, period={self._period}, "
                f"patterns={len(self._patterns)}, rho={self.rho:.4f})")


def random_matching(n: int, seed: int = 0, pool_size: int = 16) -> DynamicTopology:
    r"""Randomized pairwise gossip: at each step agents are paired by a random perfect
    matching (one agent idles when ``n`` is odd) and each pair averages,
    :math:`x_i^+ = x_j^+ = (x_i + x_j)/2`.

    The matching at step ``t`` is drawn from a pool of ``pool_size`` matchings sampled once
    with ``seed``, by the hash rule of :class:`DynamicTopology` (``period=None``): every
    agent and MPI rank computes the same matching with no communication, and inside ``jit``
    the pool becomes ``pool_size`` static ``lax.switch`` branches.

    Reference: S. Boyd, A. Ghosh, B. Prabhakar, D. Shah, "Randomized gossip algorithms",
    IEEE Trans. Inf. Theory 52(6) (2006).
    """
    n = check_num_agents(n, "n")
    pool_size = check_positive_int(pool_size, "pool_size")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int; got {seed!r}.")
    rng = np.random.default_rng(seed)
    patterns = []
    for _ in range(pool_size):
        W = np.eye(n)
        perm = rng.permutation(n)
        for a, b in zip(perm[0::2], perm[1::2]):
            W[a, a] = W[b, b] = W[a, b] = W[b, a] = 0.5
        # Each single matching is disconnected by design; connectivity holds over time.
        patterns.append(Topology(W, name=f"matching(n={n})", require="doubly",
                                 check_connected=False))
    return DynamicTopology(patterns, period=None, seed=seed, name=f"random_matching(n={n}, seed={seed})")
