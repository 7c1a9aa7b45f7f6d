"""The README's code runs as written and prints what it claims.

Every ```python block of README.md runs, on its own, in a fresh interpreter (a new user
pastes one block at a time), from an empty directory. A block that is not meant to run
carries ``<!-- skip-test: <reason> -->`` on the line before its opening fence; the reason is
reported as the skip reason. A claimed output is written in the block as a comment line
``# prints: <text>``; the block's standard output must contain ``<text>`` as a whole line.

The shell commands are checked for what a fresh shell needs: the environment is activated
(``source .venv/bin/activate``) before the first command that relies on it, and every
benchmark program is run as a module of the ``benchmarks`` package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
SKIP = re.compile(r"<!-- skip-test: (.+?) -->\s*$")
CLAIM = re.compile(r"^\s*# prints: (.+?)\s*$", re.M)


def blocks(language: str) -> list[tuple[str, str, str | None]]:
    """``(name, code, skip reason or None)`` of every ```<language> block; the name is the
    README section (``<!-- section:NAME -->``) and the block's number in it, e.g.
    ``algorithms-1``, stable while other sections change."""
    found, count = [], {}
    for m in FENCE.finditer(README):
        if m.group(1) != language:
            continue
        sections = re.findall(r"<!-- section:([\w-]+) -->", README[:m.start()])
        section = sections[-1] if sections else "intro"
        count[section] = count.get(section, 0) + 1
        before = README[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        found.append((f"{section}-{count[section]}", m.group(2), skip.group(1) if skip else None))
    return found


PYTHON = blocks("python")


def test_readme_has_python_blocks_and_claims():
    """The extraction itself: the README's snippets are found, and some make claims."""
    assert len(PYTHON) >= 5
    assert sum(len(CLAIM.findall(code)) for _, code, _ in PYTHON) >= 4


@pytest.mark.slow  # each block is a fresh interpreter (JAX import + compile); ~1-2 min in all
@pytest.mark.parametrize("name,code,skip", PYTHON, ids=[b[0] for b in PYTHON])
def test_python_block_runs_and_prints_its_claims(tmp_path, name, code, skip):
    if skip:
        pytest.skip(f"README block {name}: {skip}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env.update(JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"README block {name} failed:\n{proc.stderr[-4000:]}"
    printed = [ln.strip() for ln in proc.stdout.splitlines()]
    for claim in CLAIM.findall(code):
        assert claim in printed, (f"README block {name} claims '{claim}' but printed:\n"
                                  f"{proc.stdout[-2000:]}")


def _commands() -> list[str]:
    """Every command line of every ```bash block, in README order (comments removed)."""
    lines = []
    for _, code, _ in blocks("bash"):
        for ln in code.replace("\\\n", " ").splitlines():
            ln = ln.split("#", 1)[0].strip()
            if ln:
                lines.append(ln)
    return lines


def test_shell_commands_activate_the_environment_first():
    """`make` sets the environment up itself; every later command (python, bfrun,
    bluefog-train, asv) needs `source .venv/bin/activate`, which must come first."""
    cmds = _commands()
    activate = cmds.index("source .venv/bin/activate")
    needs_env = re.compile(r"^(python|bfrun|bluefog-train|asv)\b")
    assert all(not needs_env.match(c) for c in cmds[:activate]), cmds[:activate]
    assert any(needs_env.match(c) for c in cmds[activate + 1:])
    # one convention: after activation, no command spells the environment's path (an
    # activation itself, e.g. the pip recipe's `python -m venv .venv && source ...`, may)
    spelled = [c for c in cmds[activate + 1:]
               if ".venv/bin/" in c.replace("source .venv/bin/activate", "")]
    assert spelled == []


def test_benchmark_programs_are_run_as_package_modules():
    """`benchmarks/` is a package: its programs run as `python -m benchmarks.<name>` (a path
    `benchmarks/<name>.py` would fail on the relative imports); every such name exists."""
    programs = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    used = re.findall(r"python -m benchmarks\.(\w+)", README)
    assert used and set(used) <= programs, set(used) - programs
    as_paths = re.findall(r"python (?:\S*/)?benchmarks/(\w+)\.py", README)
    # train_throughput.py keeps its own path set-up (owned by the training application)
    assert set(as_paths) <= {"train_throughput"}, as_paths
