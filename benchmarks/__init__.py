"""bluefog-jax benchmarks: the asv suite lives in ``benchmarks/asv_bench``; the other modules
are command-line programs, run from the repository root as modules of this package
(``python -m benchmarks.<name> --help``), and import each other's helpers relatively
(``_timing``, ``_topologies``, ``_workload``, ``_mpi``)."""
