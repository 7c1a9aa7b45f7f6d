"""bluefog-jax benchmarks: the asv suite lives in ``benchmarks/asv_bench``; the other modules
here are command-line scripts (``python benchmarks/<name>.py --help``)."""
