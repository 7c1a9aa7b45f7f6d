"""MPI backend: per-op times measured inside the ranks of one ``mpiexec -n 4``.

``setup_cache`` launches ``python -m benchmarks.mpi_ranks`` once under ``mpiexec -n 4`` (the
timings are taken inside the ranks, between barriers, slowest rank per sample, median of
samples, the ops interleaved repetition by repetition); every ``track_*`` benchmark of
:class:`MpiOps` then reports one of its numbers in seconds per op, or (``track_ratio_*``,
unit "ratio") the median per-repetition ratio of an op of ours to raw MPI doing the same
work.
These are ``track_`` rather than ``time_`` benchmarks because asv's ``time_`` would time the
calling process, not the ranks. Everything skips (asv: ``NotImplementedError``) when
``mpiexec``, mpi4py or (for the JAX ops) mpi4jax / ``bluefog_dist`` are missing, e.g. in
asv's own environments, which do not build mpi4jax.
"""

from benchmarks._mpi import run_ranks as _run_ranks

RANKS = 4
FLOATS = [2, 4096, 262144]


def run_ranks(floats=FLOATS, ranks=RANKS, timeout=600, extra=()):
    """Run :mod:`benchmarks.mpi_ranks` under ``mpiexec -n ranks``; its JSON, or a reason."""
    return _run_ranks(floats, ranks, timeout, extra)


class MpiOps:
    """Seconds per op inside ``mpiexec -n 4`` ranks, by message size (float32 per rank)."""

    params = [FLOATS]
    param_names = ["floats_per_rank"]
    unit = "seconds"
    timeout = 900

    def setup_cache(self):
        return run_ranks()

    def setup(self, cache, d):
        if isinstance(cache, str):
            raise NotImplementedError(f"skipped: {cache}")

    def _get(self, cache, op, d):
        try:
            return cache["ops"][op][str(d)]
        except KeyError:
            raise NotImplementedError(f"skipped: {op} was not measured (library missing)")

    def track_raw_mpi4py_sendrecv(self, cache, d):
        return self._get(cache, "raw_sendrecv_ring", d)

    def track_raw_mpi4py_allreduce(self, cache, d):
        return self._get(cache, "raw_allreduce", d)

    def track_raw_exponential_exchange(self, cache, d):
        return self._get(cache, "raw_exchange_exponential", d)

    def track_mpi4jax_sendrecv(self, cache, d):
        return self._get(cache, "mpi4jax_sendrecv_loop", d)

    def track_neighbor_allreduce_per_call(self, cache, d):
        return self._get(cache, "bluefog_neighbor_allreduce", d)

    def track_neighbor_allreduce_in_loop(self, cache, d):
        return self._get(cache, "bluefog_neighbor_allreduce_loop", d)

    def track_one_peer_exponential_in_loop(self, cache, d):
        return self._get(cache, "bluefog_one_peer_loop", d)

    def track_allreduce_in_loop(self, cache, d):
        return self._get(cache, "bluefog_allreduce_loop", d)

    # ours / raw MPI doing the same work (float32): median of the per-repetition ratio of
    # the interleaved repetitions of the same run (< 1: ours faster); unit "ratio"
    def _ratio(self, cache, pair, d):
        try:
            return cache["ratios"][pair][str(d)]["median"]
        except KeyError:
            raise NotImplementedError(f"skipped: {pair} was not measured (library missing)")

    def track_ratio_neighbor_allreduce_loop_over_raw_with_sum(self, cache, d):
        return self._ratio(cache, "bluefog_neighbor_allreduce_loop / raw_exchange_exponential", d)

    def track_ratio_neighbor_allreduce_per_call_over_raw_with_sum(self, cache, d):
        return self._ratio(cache, "bluefog_neighbor_allreduce / raw_exchange_exponential", d)

    def track_ratio_allreduce_loop_over_raw_allreduce(self, cache, d):
        return self._ratio(cache, "bluefog_allreduce_loop / raw_allreduce", d)

    def track_ratio_mpi4jax_sendrecv_loop_over_raw_sendrecv(self, cache, d):
        return self._ratio(cache, "mpi4jax_sendrecv_loop / raw_sendrecv_ring", d)


for _name in dir(MpiOps):
    if _name.startswith("track_"):
        getattr(MpiOps, _name).unit = "ratio" if _name.startswith("track_ratio_") else "seconds"

