"""MPI backend: compressed vs dense ``neighbor_allreduce``, timed inside ``mpiexec -n 4`` ranks.

``setup_cache`` launches ``python -m benchmarks.compressed_exchange`` once under
``mpiexec -n 4`` (ring, float32; inside the ranks dense and compressed exchanges run
``K`` times in one jitted ``fori_loop``, interleaved repetition by repetition, slowest rank
per repetition, warm-up excluded). The ``track_*`` benchmarks report its medians in seconds
per exchange and the median per-repetition ratio compressed / dense, by model size and
compressor. ``track_`` rather than ``time_`` because asv's ``time_`` would time the calling
process, not the ranks. Everything skips (asv: ``NotImplementedError``) when ``mpiexec``,
mpi4py or mpi4jax are missing, as in asv's own environments.
"""

from benchmarks._mpi import run_module_json

RANKS = 4
SIZES_MIB = ["0.25", "4"]
COMPRESSORS = ["top_k(1%)", "int8", "sign"]


def run_exchange(sizes=SIZES_MIB, compressors=COMPRESSORS, ranks=RANKS, timeout=600):
    """Run :mod:`benchmarks.compressed_exchange` under ``mpiexec -n ranks``: its rows keyed
    by ``(size_mib, compressor)`` as ``"size|compressor"``, or the reason it could not run."""
    data = run_module_json("compressed_exchange",
                           ["--repeats", "3", "--sizes-mib", *sizes, "--compressors", *compressors],
                           ranks, timeout, needs=("mpi4py", "mpi4jax"))
    if isinstance(data, str):
        return data
    return {f"{float(r['size_mib']):g}|{r['compressor']}": r for r in data["rows"]}

class MpiCompressedExchange:
    """Seconds per ring exchange inside ``mpiexec -n 4`` ranks, dense vs compressed."""

    params = ([float(s) for s in SIZES_MIB], COMPRESSORS)
    param_names = ["model_mib", "compressor"]
    timeout = 900

    def setup_cache(self):
        return run_exchange()

    def setup(self, cache, mib, name):
        if isinstance(cache, str):
            raise NotImplementedError(f"skipped: {cache}")

    def _get(self, cache, mib, name, field):
        try:
            return cache[f"{mib:g}|{name}"][field]
        except KeyError:
            raise NotImplementedError(f"skipped: {mib:g} MiB / {name} was not measured")

    def track_dense_seconds(self, cache, mib, name):
        return self._get(cache, mib, name, "dense_s")

    def track_compressed_seconds(self, cache, mib, name):
        return self._get(cache, mib, name, "compressed_s")

    def track_compressed_over_dense(self, cache, mib, name):
        return self._get(cache, mib, name, "ratio_median")

    def track_bytes_fraction(self, cache, mib, name):
        dense = self._get(cache, mib, name, "dense_bytes_per_exchange")
        return self._get(cache, mib, name, "compressed_bytes_per_exchange") / max(dense, 1)


MpiCompressedExchange.track_dense_seconds.unit = "seconds"
MpiCompressedExchange.track_compressed_seconds.unit = "seconds"
MpiCompressedExchange.track_compressed_over_dense.unit = "ratio"
MpiCompressedExchange.track_bytes_fraction.unit = "fraction of dense bytes"
