# bluefog-jax: the two commands of the README.
#   make demo   set up .venv (first time only) and run 64 simulated agents
#   make test   set up .venv (first time only) and run the whole test suite, mpiexec tests included
#   make test-system-mpi   the cluster install path: a second venv built against the system
#               MPI (mpicc on PATH), then the mpiexec tests in it (CI: Debian's MPICH)
#   make test-pip-recipe   the README's pip recipe run as written in a fresh copy (own .venv)
#   make docs   build the architecture page and the API reference (mkdocs --strict, build/site)
PY := .venv/bin/python
SETUP := .venv/.bluefog-installed

.PHONY: demo test test-system-mpi test-pip-recipe docs setup clean-venv compare

$(SETUP): pyproject.toml tools/setup_env.sh tools/pip_quiet.sh
	bash tools/setup_env.sh

setup: $(SETUP)

demo: $(SETUP)
	$(PY) examples/demo.py

test: $(SETUP)
	$(PY) -m pytest

# mpi4py and mpi4jax built from source against the mpicc on PATH, no mpich wheel, the project
# from .[mpi-system]; bfrun --check must find one MPI library; then the mpiexec tests.
SYSTEM_VENV := .venv-system-mpi
SYSTEM_MPI_TESTS := tests/test_dist_mpi.py tests/test_algorithms_mpi.py tests/test_dist_block.py \
	tests/test_dist_windows.py tests/test_train_mpi.py
test-system-mpi:
	bash tools/setup_system_mpi_env.sh $(SYSTEM_VENV)
	PATH="$(CURDIR)/$(SYSTEM_VENV)/bin:$$PATH" $(SYSTEM_VENV)/bin/bfrun --check
	PATH="$(CURDIR)/$(SYSTEM_VENV)/bin:$$PATH" $(SYSTEM_VENV)/bin/python -m pytest $(SYSTEM_MPI_TESTS)

# The README's "Installing with pip" recipe, exactly as written, in a fresh copy of the
# committed tree with its own .venv; then bfrun --check and bfrun -np 4 runs.
test-pip-recipe:
	bash tools/check_pip_recipe.sh

# API reference from the docstrings (mkdocstrings) + docs/architecture.md; warnings are errors.
docs: $(SETUP)
	$(PY) -m mkdocs build --strict

# Side-by-side benchmarks; rewrites the README's performance table (python -m benchmarks.compare).
compare: $(SETUP)
	$(PY) -m benchmarks.compare --write-readme

clean-venv:
	rm -rf .venv
