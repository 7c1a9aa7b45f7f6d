"""MPI one-sided windows: ``MpiWindows`` put / accumulate / get vs raw ``MPI.Win`` Put / Get.

``setup_cache`` launches ``python -m benchmarks.mpi_windows`` once under ``mpiexec -n 2``
(8 B and 1 MiB payloads, methods interleaved per repetition, warm-up excluded) with the
launch environment ``bfrun`` uses. The ``track_*`` benchmarks report the median
per-repetition ratio bluefog / raw (latency at 8 B, bandwidth at 1 MiB) and bluefog's median
seconds per op. ``track_`` because the time is measured inside the ranks. Everything skips
(``NotImplementedError``) when ``mpiexec`` or mpi4py is missing.
"""

from benchmarks._mpi import run_module_json

FLOATS = [1, 131072]
PAIRS = ["bluefog_put/raw_put", "bluefog_accumulate/raw_put", "bluefog_get/raw_get"]


def run_windows(timeout=600):
    """``{floats: result}`` of one ``benchmarks.mpi_windows`` run, or why it could not run."""
    data = run_module_json("mpi_windows", ["--floats", ",".join(map(str, FLOATS))], 2, timeout)
    if isinstance(data, str):
        return data
    return {r["floats"]: r for r in data["results"]}

class MpiWindowsVsRaw:
    """bluefog's one-sided window ops relative to raw ``MPI.Win`` on the same buffers."""

    params = (FLOATS, PAIRS)
    param_names = ["floats", "pair"]
    timeout = 900

    def setup_cache(self):
        return run_windows()

    def setup(self, cache, floats, pair):
        if isinstance(cache, str):
            raise NotImplementedError(f"skipped: {cache}")

    def track_ratio_over_raw(self, cache, floats, pair):
        return cache[floats][pair]["median"]

    def track_bluefog_seconds(self, cache, floats, pair):
        return cache[floats]["seconds"][pair.split("/")[0]]


MpiWindowsVsRaw.track_ratio_over_raw.unit = "ratio"
MpiWindowsVsRaw.track_bluefog_seconds.unit = "seconds"
