r"""Compute-time models of heterogeneous agents and link-latency matrices (plain NumPy).

Agent :math:`i`'s :math:`k`-th step takes

.. math:: c_i(k) = \mu_i\, u_{ik} + p\,\mathbb 1[k \equiv k_i \ (\mathrm{mod}\ P)],
          \qquad u_{ik} \sim \mathcal U[1 - j,\, 1 + j] \text{ i.i.d.},

with per-agent mean :math:`\mu_i` (a base mean, times ``slowdown`` for the stragglers: one
chosen agent, or a random fraction of them), relative jitter :math:`j \in [0, 1)` and optional
periodic pauses of length :math:`p` every :math:`P` steps (phase :math:`k_i` drawn per agent).
The draws depend only on the seed, so every method compared on this model sees the same
environment: a synchronous method pays :math:`\max_i c_i(k)` at step :math:`k`, an
asynchronous agent pays its own :math:`c_i(k)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..validation import check_nonnegative_int, check_positive_int, check_real, check_seed

__all__ = ["ComputeModel", "compute_model", "latency_matrix"]


@dataclass(frozen=True, eq=False)
class ComputeModel:
    """Per-agent compute-time distribution (see the module docstring).

    Attributes
    ----------
    means : numpy.ndarray (n,)
        :math:`\\mu_i`, stragglers' slowdown included.
    jitter : float
        Relative half-width :math:`j` of the uniform jitter.
    pause_every : int
        :math:`P` (0: no pauses).
    pause_length : float
        :math:`p`.
    seed : int
        Seed of every draw (jitter, pause phases, the random slow fraction).
    """

    means: np.ndarray
    jitter: float
    pause_every: int
    pause_length: float
    seed: int

    @property
    def size(self) -> int:
        """Number of agents."""
        return int(self.means.size)

    def durations(self, steps: int) -> np.ndarray:
        """``(n, steps)`` float64 matrix of step durations :math:`c_i(k)`, ``k < steps``.

        The first ``steps`` columns do not depend on ``steps`` (a longer draw extends a
        shorter one), so an asynchronous and a synchronous run see the same environment."""
        steps = check_positive_int(steps, "steps", where="ComputeModel.durations")
        rng = np.random.default_rng([self.seed, 1])
        out = np.empty((self.size, steps))
        for i in range(self.size):  # per-agent streams: extending steps keeps the prefix
            gen = np.random.default_rng([self.seed, 2, i])
            u = gen.uniform(1.0 - self.jitter, 1.0 + self.jitter, size=steps)
            out[i] = self.means[i] * u
        if self.pause_every:
            phase = rng.integers(0, self.pause_every, size=self.size)
            k = np.arange(steps)[None, :]
            out += self.pause_length * ((k % self.pause_every) == phase[:, None])
        return out


def compute_model(n: int, mean: float = 1.0, *, jitter: float = 0.0, straggler: int | None = None,
                  slow_fraction: float = 0.0, slowdown: float = 1.0, pause_every: int = 0,
                  pause_length: float = 0.0, seed: int = 0) -> ComputeModel:
    """Build a :class:`ComputeModel` for ``n`` agents.

    Parameters
    ----------
    n : int
    mean : float > 0
        Mean step time of a normal agent.
    jitter : float in [0, 1)
        Relative half-width of the uniform jitter.
    straggler : int, optional
        The one agent made ``slowdown`` times slower (e.g. ``straggler=0, slowdown=10``).
    slow_fraction : float in [0, 1)
        Alternatively, a random fraction of the agents (at least one when > 0) made
        ``slowdown`` times slower.
    slowdown : float >= 1
    pause_every : int >= 0
        Every ``pause_every``-th step of each agent (random phase) takes ``pause_length`` more.
    pause_length : float >= 0
    seed : int

    Raises
    ------
    TypeError, ValueError
        Naming the argument, the expected value and the fix.
    """
    where = "compute_model"
    n = check_positive_int(n, "n", where=where)
    mean = check_real(mean, "mean", low=0.0, low_open=True, where=where, example="mean=1.0")
    jitter = check_real(jitter, "jitter", low=0.0, high=1.0, high_open=True, where=where,
                        example="jitter=0.1")
    slowdown = check_real(slowdown, "slowdown", low=1.0, where=where, example="slowdown=10.0")
    slow_fraction = check_real(slow_fraction, "slow_fraction", low=0.0, high=1.0,
                               high_open=True, where=where, example="slow_fraction=0.1")
    pause_every = check_nonnegative_int(pause_every, "pause_every", where=where)
    pause_length = check_real(pause_length, "pause_length", low=0.0, where=where,
                              example="pause_length=5.0")
    seed = check_seed(seed, where=where)
    means = np.full(n, mean)
    if straggler is not None:
        if slow_fraction:
            raise ValueError(f"{where}: pass either straggler (one slow agent) or slow_fraction "
                             f"(a random fraction), not both; got straggler={straggler}, "
                             f"slow_fraction={slow_fraction}.")
        straggler = check_nonnegative_int(straggler, "straggler", where=where)
        if straggler >= n:
            raise ValueError(f"{where}: straggler must be an agent index in [0, {n}); got "
                             f"{straggler}.")
        means[straggler] *= slowdown
    elif slow_fraction:
        count = max(1, int(round(slow_fraction * n)))
        slow = np.random.default_rng([seed, 0]).choice(n, size=count, replace=False)
        means[slow] *= slowdown
    return ComputeModel(means, jitter, pause_every, pause_length, seed)


def latency_matrix(latency, n: int) -> np.ndarray:
    """``(n, n)`` float64 matrix ``L[i, j]`` (delay of a message from ``j`` to ``i``) from a
    non-negative scalar or matrix.

    Raises
    ------
    ValueError
        A negative, NaN or infinite delay, or a matrix of the wrong shape.
    """
    n = check_positive_int(n, "n", where="latency_matrix")
    if isinstance(latency, bool):
        raise TypeError(f"latency must be a non-negative float or an ({n}, {n}) array; got "
                        f"{latency!r}.")
    try:
        arr = np.asarray(latency, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"latency must be a non-negative float or an ({n}, {n}) array; got "
                        f"{type(latency).__name__}.") from err
    if arr.ndim == 0:
        arr = np.full((n, n), float(arr))
    if arr.shape != (n, n):
        raise ValueError(f"latency must be a scalar or an ({n}, {n}) matrix (entry [i, j]: delay "
                         f"from j to i); got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("latency must be finite; got NaN or inf. Use a large finite delay.")
    if np.any(arr < 0):
        i, j = (int(v) for v in np.argwhere(arr < 0)[0])
        raise ValueError(f"latency must be non-negative (a delay); got latency[{i}, {j}] = "
                         f"{arr[i, j]}. Use 0.0 for an instantaneous link.")
    return arr
