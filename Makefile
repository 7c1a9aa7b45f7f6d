# bluefog-jax: the two commands of the README.
#   make demo   set up .venv (first time only) and run 64 simulated agents
#   make test   set up .venv (first time only) and run the whole test suite, mpiexec tests included
#   make docs   build the architecture page and the API reference (mkdocs --strict, build/site)
PY := .venv/bin/python
SETUP := .venv/.bluefog-installed

.PHONY: demo test docs setup clean-venv compare

$(SETUP): pyproject.toml tools/setup_env.sh
	bash tools/setup_env.sh

setup: $(SETUP)

demo: $(SETUP)
	$(PY) examples/demo.py

test: $(SETUP)
	$(PY) -m pytest

# API reference from the docstrings (mkdocstrings) + docs/architecture.md; warnings are errors.
docs: $(SETUP)
	$(PY) -m mkdocs build --strict

# Side-by-side benchmarks; rewrites the README's performance table (python -m benchmarks.compare).
compare: $(SETUP)
	$(PY) -m benchmarks.compare --write-readme

clean-venv:
	rm -rf .venv
