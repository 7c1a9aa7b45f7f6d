"""MPI windows: a step with non-blocking overlap vs compute + blocking exchange.

``setup_cache`` launches ``python -m benchmarks.mpi_overlap`` once under ``mpiexec -n 2``
and once under ``mpiexec -n 4`` (a 1 MiB float64 window, a jitted matmul compute calibrated
to about one blocking exchange, methods interleaved per repetition, warm-up excluded) with
the launch environment ``bfrun`` uses. ``track_overlap_ratio`` reports the median
per-repetition ratio ``overlap / sequential`` step time (below 1: the transfer ran during the
compute; the ideal is ``max(c, x) / (c + x)``, ``track_ideal_ratio``), ``track_step_seconds``
the median seconds per step of each method. ``track_`` because the time is measured inside
the ranks. Everything skips (``NotImplementedError``) when ``mpiexec`` or mpi4py is missing.
"""

from benchmarks._mpi import run_module_json

RANKS = [2, 4]
FLOATS = 131072


def run_overlap(ranks, timeout=900):
    """One ``benchmarks.mpi_overlap`` result for ``ranks`` ranks, or why it could not run."""
    data = run_module_json("mpi_overlap", ["--floats", FLOATS, "--steps", 3, "--repeats", 3],
                           ranks, timeout)
    return data if isinstance(data, str) else data["results"][0]


def _cached(cache, ranks):
    if isinstance(cache[ranks], str):
        raise NotImplementedError(f"skipped: {cache[ranks]}")
    return cache[ranks]


class MpiWindowOverlap:
    """Median seconds per step of each method (sequential, overlap, compute, exchange)."""

    params = (RANKS, ["sequential", "overlap", "compute", "exchange"])
    param_names = ["ranks", "method"]
    timeout = 1800

    def setup_cache(self):
        return {n: run_overlap(n) for n in RANKS}

    def setup(self, cache, ranks, method):
        _cached(cache, ranks)

    def track_step_seconds(self, cache, ranks, method):
        return cache[ranks]["seconds"][method]


class MpiWindowOverlapRatio:
    """Median per-repetition ratio overlap / sequential, and the ideal max(c, x) / (c + x)."""

    params = [RANKS]
    param_names = ["ranks"]
    timeout = 1800

    def setup_cache(self):
        return {n: run_overlap(n) for n in RANKS}

    def setup(self, cache, ranks):
        _cached(cache, ranks)

    def track_overlap_ratio(self, cache, ranks):
        return cache[ranks]["overlap/sequential"]["median"]

    def track_ideal_ratio(self, cache, ranks):
        return cache[ranks]["ideal max(c,x)/(c+x)"]["median"]


MpiWindowOverlap.track_step_seconds.unit = "seconds"
MpiWindowOverlapRatio.track_overlap_ratio.unit = "ratio"
MpiWindowOverlapRatio.track_ideal_ratio.unit = "ratio"
