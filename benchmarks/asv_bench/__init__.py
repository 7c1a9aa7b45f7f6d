"""asv suite of bluefog-jax (``benchmark_dir`` in ``asv.conf.json``).

Modules: :mod:`.comm_ops` (simulator communication ops), :mod:`.topology_cost`
(``track_*`` communication-cost numbers per topology), :mod:`.algorithm_steps` (one step of
every registered algorithm, 64 agents), :mod:`.mpi_ops` (MPI backend, times measured inside
the ranks of one ``mpiexec -n 4``). The shared helpers live one level up, in ``benchmarks/``.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_DIR = os.path.dirname(_HERE)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)
