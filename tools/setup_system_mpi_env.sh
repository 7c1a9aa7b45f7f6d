#!/usr/bin/env bash
# The cluster install path, tested: a second virtual environment whose mpi4py and mpi4jax are
# built against a system MPI (the mpicc on PATH, e.g. Debian's `libmpich-dev`), with no
# `mpich` wheel to shadow it, and the project installed with the `mpi-system` extra.
#
#   tools/setup_system_mpi_env.sh [VENV]      # default: .venv-system-mpi
#
# With BLUEFOG_INSTALL_SYSTEM_MPI=1 and no mpicc on PATH it first installs Debian's MPICH
# (apt-get install libmpich-dev mpich; needs root). Idempotent: a stamp records a finished
# install. `bfrun --check` in the new environment must then report one MPI library for
# mpi4py and mpi4jax.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(realpath -m "${1:-$root/.venv-system-mpi}")"  # absolute: pip builds elsewhere
stamp="$venv/.bluefog-installed"
py="${PYTHON:-python3}"

if [ -f "$stamp" ] && [ "$stamp" -nt "$root/pyproject.toml" ] \
    && [ "$stamp" -nt "$root/tools/setup_system_mpi_env.sh" ]; then
  exit 0
fi
if ! command -v mpicc >/dev/null 2>&1; then
  if [ "${BLUEFOG_INSTALL_SYSTEM_MPI:-0}" = "1" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[system-mpi] installing Debian's MPICH (libmpich-dev mpich)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmpich-dev mpich) \
      >/dev/null
  else
    echo "setup_system_mpi_env.sh: no mpicc on PATH. Load the site's MPI (module load ...), or" \
         "install one (Debian: apt-get install libmpich-dev mpich), or set" \
         "BLUEFOG_INSTALL_SYSTEM_MPI=1 to let this script run apt-get." >&2
    exit 1
  fi
fi
mpicc_path="$(command -v mpicc)"
echo "[system-mpi] creating $venv against $mpicc_path" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
label=system-mpi
source "$root/tools/pip_quiet.sh"
pip_q --upgrade pip
pip_q cython setuptools wheel nanobind  # build tools (no build isolation: the builds must see mpicc)
echo "[system-mpi] building mpi4py from source with $mpicc_path" >&2
MPICC="$mpicc_path" pip_q --no-binary mpi4py --no-cache-dir --no-build-isolation mpi4py
pip_q jax
echo "[system-mpi] building mpi4jax with $mpicc_path" >&2
cuda_dir="$venv/.empty-cuda"
mkdir -p "$cuda_dir"
CUDA_ROOT="$cuda_dir" CUDA_PATH="$cuda_dir" MPI4JAX_BUILD_MPICC="$mpicc_path" \
  pip_q --no-cache-dir --no-build-isolation mpi4jax
pip_q "$root[mpi-system]"
pip_q pytest pytest-timeout scikit-learn scipy  # the test suite (the dev extra minus docs/asv)
if "$venv/bin/python" -c "import mpich" >/dev/null 2>&1; then
  echo "[system-mpi] the mpich wheel got installed and would shadow the system MPI" >&2
  exit 1
fi
touch "$stamp"
echo "[system-mpi] done: $venv" >&2
