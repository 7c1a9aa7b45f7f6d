"""bluefog_dist: the MPI backend (mpi4jax), one agent per rank."""
