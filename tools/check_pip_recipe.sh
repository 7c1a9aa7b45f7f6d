#!/usr/bin/env bash
# Run the README's pip recipe ("Installing with pip", first bash block) exactly as written, in
# a fresh copy of the committed tree with its own new .venv, then use the result as a user
# would: bfrun --check, the write-once example under bfrun -np 4 (simulator vs MPI numbers)
# and bluefog-train under bfrun -np 4. Nothing of the development .venv is on PATH.
#
#   bash tools/check_pip_recipe.sh          (make test-pip-recipe; CI runs it)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/bluefog-pip-recipe.XXXXXX")"
trap 'rm -rf "$work"' EXIT
git -C "$root" archive HEAD | tar -x -C "$work"
recipe="$work/.recipe.sh"
"$py" - "$root/README.md" "$recipe" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
section = text[text.index("<!-- section:install -->"):text.index("<!-- /section:install -->")]
block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
open(sys.argv[2], "w").write(block)
PY
echo "[pip-recipe] the README's commands, in $work:" >&2
sed 's/^/[pip-recipe]   /' "$recipe" >&2
# A clean PATH: the system's, without any venv of this repository.
clean_path="$(echo "$PATH" | tr ':' '\n' | grep -v -e "$root/.venv" -e '/\.venv' | paste -sd: -)"
cd "$work"
env -u VIRTUAL_ENV PATH="$clean_path" PIP_DISABLE_PIP_VERSION_CHECK=1 bash -euo pipefail -c "
  # the recipe in a shell of its own, so that its first failing command ends it (errexit is
  # off on the left of ||); pip's output is long: shown on failure only
  bash -euo pipefail '$recipe' > '$work/.recipe.log' 2>&1 || { tail -60 '$work/.recipe.log'; exit 1; }
  tail -8 '$work/.recipe.log'
  source .venv/bin/activate
  echo '[pip-recipe] python examples/write_once.py --backend sim --agents 4' >&2
  python examples/write_once.py --backend sim --agents 4 | tail -3 > sim.txt
  echo '[pip-recipe] bfrun -np 4 python examples/write_once.py --backend mpi' >&2
  bfrun -np 4 python examples/write_once.py --backend mpi | tail -3 > mpi.txt
  cat sim.txt mpi.txt
  python - sim.txt mpi.txt <<'CMP'
import re, sys
rows = [[float(v) for v in re.findall(r'[0-9.]+e[-+][0-9]+', open(f).read())] for f in sys.argv[1:]]
assert rows[0] and len(rows[0]) == len(rows[1]), rows
worst = max(abs(a - b) / max(abs(a), 1e-30) for a, b in zip(*rows))
assert worst < 1e-3, f'simulator and MPI differ: {rows}'
print(f'[pip-recipe] simulator and bfrun -np 4 agree (largest relative difference {worst:.1e})')
CMP
  echo '[pip-recipe] bfrun -np 4 bluefog-train --steps 100 --no-progress --out runs/r.json' >&2
  bfrun -np 4 bluefog-train --steps 100 --no-progress --out runs/r.json | tail -2
  python -c 'import json; r = json.load(open(\"runs/r.json\")); assert r[\"config\"][\"backend\"] == \"mpi\" and r[\"config\"][\"agents\"] == 4, r[\"config\"]'
"
echo "[pip-recipe] OK" >&2
