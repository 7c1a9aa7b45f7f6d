# Sourced by tools/setup_env.sh and tools/setup_system_mpi_env.sh, after they set $venv and
# $label: `pip_q ARGS...` runs `$venv/bin/python -m pip install ARGS...` quietly on success,
# and on failure prints the whole pip log and exits non-zero.
pip_q() {
  local log; log="$(mktemp)"
  if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "[$label] 'pip install $*' failed (log above)" >&2
    exit 1
  fi
  rm -f "$log"
}
