#!/usr/bin/env bash
# Create .venv at the repository root and install everything bluefog-jax needs: JAX (CPU),
# the MPICH wheel (mpicc, mpiexec), mpi4py, mpi4jax built against that same MPICH, and the
# dev tools. Idempotent: a stamp file records a finished install.
#
# The mpi4jax build trap (docs/architecture.md): its setup.py builds the CUDA extension whenever nvcc is
# on PATH, and fails where CUDA headers are missing; and it links against whichever mpicc is
# first on PATH. We therefore point CUDA_ROOT at an empty directory (CPU extension only; set
# BLUEFOG_MPI4JAX_CUDA=1 to keep CUDA) and MPI4JAX_BUILD_MPICC at the venv's own mpicc.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.bluefog-installed"
py="${PYTHON:-python3}"

if [ -f "$stamp" ] && [ "$stamp" -nt "$root/pyproject.toml" ] && [ "$stamp" -nt "$root/tools/setup_env.sh" ] \
    && [ "$stamp" -nt "$root/tools/pip_quiet.sh" ]; then
  exit 0
fi
command -v "$py" >/dev/null || { echo "setup_env.sh: '$py' not found; install Python >= 3.10 or set PYTHON=/path/to/python3" >&2; exit 1; }

echo "[setup] creating $venv" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
export PATH="$venv/bin:$PATH"
# Quiet on success; the whole pip log and a non-zero exit on failure.
label=setup
source "$root/tools/pip_quiet.sh"
pip_q --upgrade pip
echo "[setup] installing jax, mpich, mpi4py and the project (editable, dev extras)" >&2
pip_q mpi4py mpich
pip_q -e "$root[dev]"
"$venv/bin/python" -c "import jax, mpi4py, networkx, optax" || { echo "[setup] core install failed" >&2; exit 1; }
if [ "${BLUEFOG_MPI4JAX_CUDA:-0}" = "1" ]; then
  jax_version="$("$venv/bin/python" -c 'import jax; print(jax.__version__)')"
  echo "[setup] BLUEFOG_MPI4JAX_CUDA=1: installing jax[cuda12]==$jax_version" >&2
  pip_q "jax[cuda12]==$jax_version"
fi

if ! "$venv/bin/python" -c "import mpi4jax" >/dev/null 2>&1; then
  echo "[setup] building mpi4jax against the venv's MPICH ($venv/bin/mpicc)" >&2
  cuda_dir="$venv/.empty-cuda"
  mkdir -p "$cuda_dir"
  if [ "${BLUEFOG_MPI4JAX_CUDA:-0}" = "1" ]; then
    MPI4JAX_BUILD_MPICC="$venv/bin/mpicc" pip_q --no-cache-dir mpi4jax
  else
    CUDA_ROOT="$cuda_dir" CUDA_PATH="$cuda_dir" MPI4JAX_BUILD_MPICC="$venv/bin/mpicc" \
      pip_q --no-cache-dir mpi4jax
  fi
fi
"$venv/bin/python" -c "import mpi4jax" || { echo "[setup] mpi4jax failed to import; see the build log above" >&2; exit 1; }
touch "$stamp"
echo "[setup] done: $venv" >&2
