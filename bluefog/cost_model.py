r"""Alpha-beta (Hockney) cost model of the communication in one decentralized step.

A point-to-point message of :math:`m` bytes costs

.. math:: T_{p2p}(m) = \alpha + \beta\, m,

with latency :math:`\alpha` (seconds) and inverse bandwidth :math:`\beta` (seconds per byte)
(Hockney 1994). From it follow the per-step communication times of the operations that
decentralized algorithms use (every agent holds an :math:`m`-byte message, :math:`n` agents):

=============================  ======================================================
operation                      predicted time per step
=============================  ======================================================
ring allreduce                 :math:`2(n-1)\,\alpha + 2\frac{n-1}{n}\, m\,\beta`
                               (reduce-scatter + allgather; Thakur, Rabenseifner &
                               Gropp 2005, Patarasuk & Yuan 2009)
recursive-doubling allreduce   :math:`\lceil\log_2 n\rceil\,(\alpha + m\beta)`
                               (short messages in MPICH; Thakur et al. 2005)
neighbor exchange, schedule    :math:`R\,(\alpha + m\beta)` for a schedule of :math:`R`
of :math:`R` rounds            rounds of full permutations
static exponential graph       :math:`\lceil\log_2 n\rceil\,(\alpha + m\beta)`
one-peer exponential graph     :math:`\alpha + m\beta`
=============================  ======================================================

A schedule round (:mod:`bluefog.topology.schedule`) is a *full permutation*: every agent sends
one message and receives one message, so with full-duplex links and no contention a round
costs one point-to-point time, whatever :math:`n`. Computation (the weighted sums) is not
modelled: on the networks the model is meant for it is a few flops per byte, orders of
magnitude below :math:`\beta^{-1}`; on a shared-memory machine where ranks share cores the
measured time will exceed the prediction, and the report says by how much.

References
----------
R. W. Hockney, "The communication challenge for MPP: Intel Paragon and Meiko CS-2",
Parallel Computing 20(3):389-398, 1994.

R. Thakur, R. Rabenseifner, W. Gropp, "Optimization of collective communication operations
in MPICH", Int. J. High Performance Computing Applications 19(1):49-66, 2005.

P. Patarasuk, X. Yuan, "Bandwidth optimal all-reduce algorithms for clusters of
workstations", J. Parallel Distrib. Comput. 69(2):117-124, 2009.

B. Ying, K. Yuan, Y. Chen, H. Hu, P. Pan, W. Yin, "Exponential graph is provably efficient
for decentralized deep training", NeurIPS 2021.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .topology import DynamicTopology, Topology
from .topology.schedule import Schedule
from .topology.validation import check_positive_int

__all__ = [
    "AlphaBeta",
    "fit_alpha_beta",
    "ring_allreduce_time",
    "recursive_doubling_allreduce_time",
    "schedule_time",
    "exponential_exchange_time",
    "one_peer_exponential_time",
    "neighbor_allreduce_time",
]


class AlphaBeta(NamedTuple):
    r"""Parameters of the Hockney model :math:`T(m) = \alpha + \beta m`.

    Attributes
    ----------
    alpha : float
        Latency in seconds (the time of a zero-byte message).
    beta : float
        Inverse bandwidth in seconds per byte (``1 / beta`` is bytes per second).
    """

    alpha: float
    beta: float

    def p2p(self, nbytes) -> float | np.ndarray:
        r"""Point-to-point time :math:`\alpha + \beta m` of an ``nbytes`` message."""
        m = _check_nbytes(nbytes)
        return self.alpha + self.beta * m

    @property
    def bandwidth(self) -> float:
        """``1 / beta`` in bytes per second (``inf`` when ``beta == 0``)."""
        return math.inf if self.beta == 0 else 1.0 / self.beta


def _check_nbytes(nbytes, name: str = "nbytes"):
    if isinstance(nbytes, bool):
        raise TypeError(f"{name} must be a number of bytes (int or array of ints); got a bool.")
    arr = np.asarray(nbytes, dtype=np.float64) if not isinstance(nbytes, (int, float)) else None
    if arr is None:
        if not math.isfinite(nbytes) or nbytes < 0:
            raise ValueError(f"{name} must be a finite number >= 0; got {nbytes!r}.")
        return float(nbytes)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0 everywhere; got {nbytes!r}.")
    return arr


def _check_model(model) -> AlphaBeta:
    if not isinstance(model, AlphaBeta):
        raise TypeError(
            f"model must be an AlphaBeta(alpha, beta); got {type(model).__name__}. Fit one with "
            "fit_alpha_beta(sizes, times) or build AlphaBeta(alpha=2e-6, beta=1e-10)."
        )
    if not (math.isfinite(model.alpha) and math.isfinite(model.beta)) or model.alpha < 0 \
            or model.beta < 0:
        raise ValueError(
            f"model must have finite alpha >= 0 and beta >= 0; got alpha={model.alpha!r}, "
            f"beta={model.beta!r}."
        )
    return model


def fit_alpha_beta(nbytes, times, *, relative: bool = True) -> AlphaBeta:
    r"""Fit :math:`\alpha, \beta \ge 0` to measured point-to-point times by least squares.

    Minimises :math:`\sum_k w_k^2 (\alpha + \beta m_k - t_k)^2` over
    :math:`\alpha, \beta \ge 0`, with :math:`w_k = 1/t_k` when ``relative`` (every size
    counts by its relative error, so small messages pin :math:`\alpha` and large ones
    :math:`\beta`, although they differ by orders of magnitude in time) or :math:`w_k = 1`
    (ordinary least squares, dominated by the largest messages). With two unknowns the
    non-negative least-squares problem is solved exactly: the unconstrained solution if it
    is non-negative, otherwise the better of the two one-parameter fits on the boundary
    (Lawson & Hanson, *Solving Least Squares Problems*, 1974, ch. 23).

    Parameters
    ----------
    nbytes : array_like of shape (K,)
        Message sizes in bytes; at least two distinct values.
    times : array_like of shape (K,)
        Measured one-way point-to-point times in seconds (e.g. half a ping-pong round
        trip, or one ``Sendrecv`` in a ring), all > 0.
    relative : bool
        Weight residuals by ``1 / times`` (default) or not.

    Returns
    -------
    AlphaBeta

    Reference: R. W. Hockney, Parallel Computing 20(3), 1994 (the model and its fit).
    """
    m = np.asarray(nbytes, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if m.ndim != 1 or t.ndim != 1 or m.shape != t.shape:
        raise ValueError(
            f"nbytes and times must be 1-D arrays of the same length; got shapes {m.shape} and "
            f"{t.shape}. Pass one time per message size."
        )
    if not isinstance(relative, bool):
        raise TypeError(f"relative must be a bool; got {relative!r}.")
    if not (np.all(np.isfinite(m)) and np.all(m >= 0)):
        raise ValueError(f"nbytes must be finite and >= 0; got {m.tolist()}.")
    if not (np.all(np.isfinite(t)) and np.all(t > 0)):
        raise ValueError(f"times must be finite and > 0 seconds; got {t.tolist()}.")
    if np.unique(m).size < 2:
        raise ValueError(
            f"nbytes must contain at least two distinct message sizes to separate alpha from "
            f"beta; got {np.unique(m).tolist()}. Measure e.g. 8 B and 1 MiB messages."
        )
    w = 1.0 / t if relative else np.ones_like(t)
    A = np.stack([np.ones_like(m), m], axis=1) * w[:, None]
    b = t * w
    (alpha, beta), *_ = np.linalg.lstsq(A, b, rcond=None)
    if alpha >= 0 and beta >= 0:
        return AlphaBeta(float(alpha), float(beta))
    # Boundary solutions of the 2-variable NNLS: alpha = 0 or beta = 0.
    cands = []
    a_col, m_col = A[:, 0], A[:, 1]
    beta0 = max(0.0, float(m_col @ b) / float(m_col @ m_col)) if m_col @ m_col > 0 else 0.0
    cands.append(AlphaBeta(0.0, beta0))
    alpha0 = max(0.0, float(a_col @ b) / float(a_col @ a_col))
    cands.append(AlphaBeta(alpha0, 0.0))
    resid = [float(np.sum((A @ np.array(c) - b) ** 2)) for c in cands]
    return cands[int(np.argmin(resid))]


def ring_allreduce_time(model: AlphaBeta, n: int, nbytes) -> float | np.ndarray:
    r"""Ring allreduce of an ``nbytes`` vector over ``n`` agents.

    .. math:: T = 2(n-1)\,\alpha + 2\frac{n-1}{n}\, m\, \beta

    (a reduce-scatter then an allgather, each of :math:`n-1` steps moving :math:`m/n`
    bytes; bandwidth-optimal). ``n = 1`` costs nothing.

    Reference: Thakur, Rabenseifner & Gropp (2005), sec. 4; Patarasuk & Yuan (2009).
    """
    model = _check_model(model)
    n = check_positive_int(n, "n")
    m = _check_nbytes(nbytes)
    return 2 * (n - 1) * model.alpha + 2 * (n - 1) / n * m * model.beta


def recursive_doubling_allreduce_time(model: AlphaBeta, n: int, nbytes) -> float | np.ndarray:
    r"""Recursive-doubling allreduce: :math:`\lceil\log_2 n\rceil\,(\alpha + m\beta)`.

    In step :math:`k` every agent exchanges its full partial sum with the agent
    :math:`2^k` away (exact for :math:`n` a power of two). MPICH uses it for short messages,
    where its :math:`\log_2 n` latencies beat the ring's :math:`2(n-1)`; computation
    (:math:`\gamma` in the reference) is not modelled.

    Reference: Thakur, Rabenseifner & Gropp (2005), sec. 4.4.
    """
    model = _check_model(model)
    n = check_positive_int(n, "n")
    rounds = 0 if n == 1 else math.ceil(math.log2(n))
    return rounds * model.p2p(nbytes)


def schedule_time(model: AlphaBeta, schedule: Schedule, nbytes) -> float | np.ndarray:
    r"""One execution of a compiled schedule: :math:`R\,(\alpha + m\beta)`.

    Each of the :math:`R` rounds is a full permutation, in which every agent sends and
    receives exactly one ``nbytes`` message concurrently with all others.
    """
    model = _check_model(model)
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"schedule must be a bluefog.topology.Schedule; got {type(schedule).__name__}. "
            "Use topology.schedule."
        )
    return schedule.num_rounds * model.p2p(nbytes)


def exponential_exchange_time(model: AlphaBeta, n: int, nbytes) -> float | np.ndarray:
    r"""Static exponential graph (base 2): :math:`\lceil\log_2 n\rceil\,(\alpha + m\beta)`.

    Agent :math:`i` receives from :math:`i + 2^k \bmod n` for every :math:`2^k < n`, i.e.
    :math:`\lceil \log_2 n\rceil` distinct offsets, one schedule round each.

    Reference: Ying et al., NeurIPS 2021 (static exponential graph).
    """
    model = _check_model(model)
    n = check_positive_int(n, "n")
    rounds = 0 if n == 1 else math.ceil(math.log2(n))
    return rounds * model.p2p(nbytes)


def one_peer_exponential_time(model: AlphaBeta, n: int, nbytes) -> float | np.ndarray:
    r"""One-peer exponential graph: one round per step, :math:`\alpha + m\beta`
    (0 for ``n = 1``).

    Reference: Ying et al., NeurIPS 2021 (one-peer exponential graph).
    """
    model = _check_model(model)
    n = check_positive_int(n, "n")
    rounds = 0 if n == 1 else 1
    return rounds * model.p2p(nbytes)


def neighbor_allreduce_time(model: AlphaBeta, topology, nbytes) -> float | np.ndarray:
    r"""Predicted ``neighbor_allreduce`` time for any topology, from its schedule.

    For a static :class:`~bluefog.topology.Topology`: :func:`schedule_time`. For a periodic
    :class:`~bluefog.topology.DynamicTopology`: the mean over one period,
    :math:`\frac1P\sum_{p} R_p\,(\alpha + m\beta)`; for a non-periodic one (random
    matchings), the mean over its pattern pool (the long-run average, as every pattern is
    equally likely).
    """
    model = _check_model(model)
    if isinstance(topology, Topology):
        return schedule_time(model, topology.schedule, nbytes)
    if isinstance(topology, DynamicTopology):
        rounds = [p.schedule.num_rounds for p in topology.patterns]
        if topology.period is not None:
            rounds = [topology.patterns[topology.index(t)].schedule.num_rounds
                      for t in range(topology.period)]
        return float(np.mean(rounds)) * model.p2p(nbytes)
    raise TypeError(
        f"topology must be a Topology or DynamicTopology; got {type(topology).__name__}. "
        "Build one with bluefog.topology constructors."
    )
