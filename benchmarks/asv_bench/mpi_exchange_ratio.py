"""MPI backend: neighbor exchange vs raw mpi4py ``Sendrecv`` + the same NumPy weighted sum.

``setup_cache`` launches ``python -m benchmarks.mpi_exchange`` once per rank count under
``mpiexec -n 2`` and ``-n 4`` (exponential graph, float32, 64 KiB, 1 MiB, 16 MiB and 64 MiB
per rank; the methods interleaved repetition by repetition, warm-up excluded, slowest rank
per repetition) with the launch environment ``bfrun`` uses; 128 MiB per rank per sample, so
the 16 and 64 MiB points run K = 3-8 exchanges per sample. Cost of the two large sizes,
measured with the same command at load 11-21 on 2 cores: the 2-rank launch took 125 s
instead of 54 s, the 4-rank one 225 s in all (``setup_cache``, once per ``asv run``; the CI
check, ``tests/test_asv_publish.py``, runs only ``topology_cost``). The ``track_*``
benchmarks report the median per-repetition ratio ``bluefog_loop / raw_sendrecv_mix``
(<= 1.11 means at least 0.9x the throughput of raw MPI doing the same sum) and
``bluefog_loop``'s median seconds per exchange. ``track_`` because the time is measured
inside the ranks. Everything skips (``NotImplementedError``) when ``mpiexec``, mpi4py or
mpi4jax are missing.
"""

from benchmarks._mpi import run_module_json

RANKS = [2, 4]
SIZES = [65536, 1048576, 16777216, 67108864]


def run_exchange(ranks, sizes=SIZES, timeout=900):
    """``{bytes: {"ratio_median", "seconds"}}`` of one mpi_exchange run, or why it could not run."""
    data = run_module_json("mpi_exchange",  # in bfrun's launch environment (rank_env)
                           ["--topologies", "exponential", "--sizes", ",".join(map(str, sizes)),
                            "--repeats", "5", "--no-gloo"],
                           ranks, timeout, needs=("mpi4py", "mpi4jax"))
    if isinstance(data, str):
        return data
    seconds = {r["bytes"]: r["seconds"] for r in data["results"] if r["method"] == "bluefog_loop"}
    return {r["bytes"]: {"ratio_median": r["median"], "seconds": seconds[r["bytes"]]}
            for r in data["ratios"]
            if r.get("method", "bluefog_loop") == "bluefog_loop" and r["vs"] == "raw_sendrecv_mix"}


class MpiExchangeVsRaw:
    """bluefog's jitted-loop exchange relative to raw MPI doing the same work."""

    params = (RANKS, SIZES)
    param_names = ["ranks", "bytes_per_rank"]
    timeout = 1800

    def setup_cache(self):
        return {r: run_exchange(r) for r in RANKS}

    def setup(self, cache, ranks, nbytes):
        if isinstance(cache[ranks], str):
            raise NotImplementedError(f"skipped: {cache[ranks]}")

    def _get(self, cache, ranks, nbytes, field):
        try:
            return cache[ranks][nbytes][field]
        except KeyError:
            raise NotImplementedError(f"skipped: {nbytes} B on {ranks} ranks was not measured")

    def track_loop_over_raw_with_sum(self, cache, ranks, nbytes):
        return self._get(cache, ranks, nbytes, "ratio_median")

    def track_loop_seconds(self, cache, ranks, nbytes):
        return self._get(cache, ranks, nbytes, "seconds")


MpiExchangeVsRaw.track_loop_over_raw_with_sum.unit = "ratio"
MpiExchangeVsRaw.track_loop_seconds.unit = "seconds"
