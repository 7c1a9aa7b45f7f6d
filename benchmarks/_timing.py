"""Timing helpers shared by the benchmark scripts (not an asv suite).

One rule for every side-by-side comparison (issue 13, item 8): each method is warmed up
(excluded), then the repetitions are **interleaved** - every repetition times every method
once, the order rotated by one per repetition (:func:`interleaved`) - so that a change of
machine load hits all methods alike, and a comparison is reported as the **min and median
of the per-repetition ratio** (:func:`ratio_stats`), never as a ratio of medians taken at
different times. Under MPI a sample is the slowest rank's time between two barriers
(:func:`slowest_rank_sample`).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Mapping, Sequence


def block(x):
    """Wait for every array in the pytree ``x`` (JAX's asynchronous dispatch)."""
    import jax

    return jax.block_until_ready(x)


def call_time(fn: Callable[[], object], *, min_time: float = 0.0, clock=time.perf_counter) -> float:
    """One timing sample of ``fn``: the mean wall time per call in seconds.

    Calls ``fn()`` ``k >= 1`` times, until ``min_time`` seconds have passed, and returns
    :math:`t = (c_{end} - c_{start}) / k` where :math:`c` is ``clock()``.

    Parameters
    ----------
    fn : callable
        Does one unit of work and blocks until it is done (call :func:`block` inside).
    min_time : float
        Seconds one sample should at least last (for calls much shorter than the timer
        resolution / scheduler noise); ``0`` times one call.
    clock : callable
        Monotonic clock in seconds (``time.perf_counter``; a fake one in tests).

    Returns
    -------
    float
        Seconds per call.

    References
    ----------
    Python's ``timeit`` (``autorange``: repeat the statement until the total time is long
    enough to measure).
    """
    if min_time < 0:
        raise ValueError(f"call_time: min_time must be >= 0 seconds, got {min_time!r}; "
                         "pass 0 to time a single call")
    k = 0
    t0 = clock()
    while True:
        fn()
        k += 1
        el = clock() - t0
        if el >= min_time:
            return el / k


def median_time(fn, *, repeats: int = 7, warmup: int = 1, min_time: float = 0.0) -> float:
    """Median over ``repeats`` samples of :func:`call_time` after ``warmup`` calls.

    For ONE method only: to compare methods use :func:`interleaved` and :func:`ratio_stats`.
    """
    for _ in range(warmup):
        fn()
    return statistics.median(call_time(fn, min_time=min_time) for _ in range(repeats))


def interleaved(fns: Mapping[str, Callable[[], object]], repeats: int, *,
                sample: Callable[[Callable[[], object]], float] = call_time,
                warmup: int = 1) -> dict[str, list[float]]:
    """Per-repetition times of several methods, repetitions interleaved, order rotated.

    Every method is called ``warmup`` times first (compilation, connection set-up, first
    touch of buffers; excluded). Then repetition :math:`r = 0, \\dots, R-1` times every
    method once, in the order of ``fns`` rotated left by :math:`r \\bmod M` (``M`` methods),
    so each method is first, second, ... equally often and neighbouring samples of two
    methods are taken under the same machine state. ``times[m][r]`` is method ``m``'s
    sample of repetition ``r``: the pairs ``(times[a][r], times[b][r])`` are what
    :func:`ratio_stats` divides.

    Parameters
    ----------
    fns : mapping of str to callable
        Method name -> zero-argument callable doing one unit of work (blocking).
    repeats : int
        Number of repetitions ``R >= 1``.
    sample : callable
        ``sample(fn) -> seconds`` of one sample (default :func:`call_time`; e.g.
        ``functools.partial(call_time, min_time=0.1)``, :func:`slowest_rank_sample` under
        MPI, or ``lambda fn: fn()`` when each ``fn`` measures and returns its own time).
    warmup : int
        Untimed calls of every method before the first repetition (``>= 0``).

    Returns
    -------
    dict of str to list of float
        ``R`` samples per method, in repetition order.

    References
    ----------
    A. Georges, D. Buytaert, L. Eeckhout, "Statistically rigorous Java performance
    evaluation", OOPSLA 2007 (steady state after warm-up; compare under the same
    conditions); T. Hoefler, R. Belli, "Scientific benchmarking of parallel computing
    systems", SC 2015 (report the spread; ratios between paired measurements).
    """
    if not isinstance(fns, Mapping) or not fns:
        raise ValueError(f"interleaved: fns must be a non-empty mapping name -> callable, got "
                         f"{fns!r}; pass e.g. {{'mine': f, 'baseline': g}}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"interleaved: repeats must be an int >= 1, got {repeats!r}; "
                         "pass the number of interleaved repetitions, e.g. 5")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"interleaved: warmup must be an int >= 0, got {warmup!r}; "
                         "pass 0 to skip the warm-up calls")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(float(sample(fns[name])))
    return times


def ratio_stats(num: Sequence[float], den: Sequence[float]) -> tuple[float, float]:
    """Min and median of the per-repetition ratios :math:`q_r = a_r / b_r`.

    Parameters
    ----------
    num, den : sequence of float
        Paired samples of the same repetitions (from :func:`interleaved`), same length.

    Returns
    -------
    (float, float)
        :math:`(\\min_r q_r, \\operatorname{median}_r q_r)`.

    References
    ----------
    T. Hoefler, R. Belli, SC 2015 (rule 5: summarize ratios of paired measurements, not
    ratios of summaries).
    """
    num, den = list(num), list(den)
    if not num or len(num) != len(den):
        raise ValueError(f"ratio_stats: num and den must be paired samples of the same "
                         f"non-empty length, got {len(num)} and {len(den)}; pass two "
                         "lists of one interleaved() result")
    if any(b <= 0 for b in den):
        raise ValueError(f"ratio_stats: den must hold positive times, got {den!r}")
    q = [a / b for a, b in zip(num, den)]
    return min(q), statistics.median(q)


def slowest_rank_sample(comm, fn: Callable[[], object], inner: int = 1) -> float:
    """One MPI sample: barrier, ``fn()``, the slowest rank's seconds per ``inner`` op.

    :math:`t = \\max_p (c^{(p)}_{end} - c^{(p)}_{start}) / \\text{inner}` over the ranks
    ``p`` of ``comm`` (a step is as slow as the slowest rank); every rank returns it.

    Parameters
    ----------
    comm : mpi4py communicator
        Used for ``Barrier()`` and ``allgather`` (collective: every rank must call this
        with the same ``inner`` at the same point).
    fn : callable
        Does ``inner`` operations and blocks until they are done.
    inner : int
        Operations per call of ``fn``.

    References
    ----------
    MPI 4.0 standard, section 5.3 (``MPI_Barrier``); T. Hoefler, R. Belli, SC 2015
    (time collectives across processes by the slowest one).
    """
    comm.Barrier()
    t0 = time.perf_counter()
    fn()
    dt = (time.perf_counter() - t0) / inner
    return max(comm.allgather(dt))


def load_average() -> str:
    """``os.getloadavg()`` as ``"l1 l5 l15"`` (``"n/a"`` where unavailable)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every OS
        return "n/a"


def machine_load() -> str:
    """``load average`` of the last 1/5/15 minutes and the core count, for reports."""
    try:
        l1, l5, l15 = os.getloadavg()
        return f"load average {l1:.2f}, {l5:.2f}, {l15:.2f} on {os.cpu_count()} cores"
    except OSError:  # pragma: no cover - not on every OS
        return f"{os.cpu_count()} cores (load average unavailable)"


def fmt_time(seconds: float) -> str:
    """Human-readable time (ns / us / ms / s)."""
    if seconds != seconds:  # NaN
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
