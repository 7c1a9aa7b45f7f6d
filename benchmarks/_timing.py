"""Timing helpers shared by the benchmark scripts (not an asv suite)."""

from __future__ import annotations

import os
import statistics
import time

import jax


def block(x):
    """Wait for every array in the pytree ``x`` (asynchronous dispatch)."""
    return jax.block_until_ready(x)


def median_time(fn, *, repeats: int = 7, warmup: int = 1, min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup`` calls.

    ``fn`` must block until its result is ready (call :func:`block` inside). With
    ``min_time > 0`` each sample loops ``fn`` until ``min_time`` seconds have passed and
    reports the mean per call of that sample (for calls much shorter than the timer
    resolution / scheduler noise).
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        k = 0
        t0 = time.perf_counter()
        while True:
            fn()
            k += 1
            el = time.perf_counter() - t0
            if el >= min_time:
                break
        samples.append(el / k)
    return statistics.median(samples)


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
