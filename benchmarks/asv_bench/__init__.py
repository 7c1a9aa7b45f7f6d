"""asv suite of bluefog-jax (``benchmark_dir`` in ``asv.conf.json``).

Modules: :mod:`.comm_ops` (simulator communication ops), :mod:`.topology_cost`
(``track_*`` communication-cost numbers per topology), :mod:`.algorithm_steps` (one step of
every registered algorithm, 64 agents), :mod:`.mpi_ops` (MPI backend, times measured inside
the ranks of one ``mpiexec -n 4``). The shared helpers live one level up, in the
``benchmarks`` package, and are imported from it by name (``benchmarks._topologies``).

asv imports this directory as a top-level package named ``asv_bench`` (its parent directory
put on ``sys.path``), so relative imports cannot reach ``benchmarks``; and ``benchmarks`` is
not installed (asv's environments install only the library). This is therefore the one place
that puts the repository root on ``sys.path``: it runs before any module of the suite.
"""

import os
import sys

#: The repository root (holds the ``benchmarks`` package).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
