"""MPI backend: per-op times measured inside the ranks of one ``mpiexec -n 4``.

``setup_cache`` launches ``benchmarks/mpi_ranks.py`` once under ``mpiexec -n 4`` (the
timings are taken inside the ranks, between barriers, slowest rank per sample, median of
samples); every ``track_*`` benchmark then reports one of its numbers in seconds per op.
These are ``track_`` rather than ``time_`` benchmarks because asv's ``time_`` would time the
calling process, not the ranks. Everything skips (asv: ``NotImplementedError``) when
``mpiexec``, mpi4py or (for the JAX ops) mpi4jax / ``bluefog_dist`` are missing, e.g. in
asv's own environments, which do not build mpi4jax.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

from . import BENCH_DIR

RANKS = 4
FLOATS = [2, 4096, 262144]
SCRIPT = os.path.join(BENCH_DIR, "mpi_ranks.py")


def _mpiexec():
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return cand if os.access(cand, os.X_OK) else shutil.which("mpiexec")


def rank_env(ranks: int) -> dict:
    """Environment for ``mpiexec``: one thread per rank and, when ranks outnumber cores,
    MPICH's yield-instead-of-busy-poll settings (``bluefog_dist.launcher``; oversubscribed
    ranks otherwise steal each other's cores)."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    try:
        from bluefog_dist.launcher import oversubscription_env
        extra = oversubscription_env(ranks)
    except ImportError:
        extra = ({"MPIR_CVAR_ENABLE_HEAVY_YIELD": "1", "MPIR_CVAR_POLLS_BEFORE_YIELD": "1"}
                 if ranks > (os.cpu_count() or 1) else {})
    for k, v in extra.items():
        env.setdefault(k, v)
    return env


def run_ranks(floats=FLOATS, ranks=RANKS, timeout=600, extra=()):
    """Run :mod:`mpi_ranks` under ``mpiexec -n ranks``; its JSON, or a ``str`` reason."""
    exe = _mpiexec()
    if exe is None:
        return "mpiexec not found (install the mpi extra: pip install -e .[mpi])"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed in this environment"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "mpi.json")
        cmd = [exe, "-n", str(ranks), sys.executable, SCRIPT, "--json", out, "--floats",
               *map(str, floats), *extra]
        env = rank_env(ranks)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return f"mpiexec -n {ranks} timed out after {timeout} s"
        if proc.returncode != 0 or not os.path.exists(out):
            return f"mpiexec failed (rc={proc.returncode}): {proc.stderr[-2000:]}"
        with open(out) as f:
            return json.load(f)


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


for _name in dir(MpiOps):
    if _name.startswith("track_"):
        getattr(MpiOps, _name).unit = "seconds"
