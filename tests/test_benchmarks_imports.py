"""Every import of a sibling module inside ``benchmarks/`` is relative, also inside
functions (``make compare`` once failed after minutes of measuring on a bare
``import mixing_scaling``), and every relative import resolves.

Oracle: the modules' own ``ast`` and ``importlib``.
"""

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SIBLINGS = {p.stem for p in BENCH.glob("*.py")} | {p.name for p in BENCH.iterdir() if p.is_dir()}


@pytest.mark.parametrize("path", sorted(BENCH.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_sibling_imports_are_relative_and_resolve(path):
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            bare = [a.name for a in node.names if a.name.split(".")[0] in SIBLINGS]
            assert not bare, f"{path.name}:{node.lineno} imports {bare} by bare name"
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                assert (node.module or "").split(".")[0] not in SIBLINGS, (
                    f"{path.name}:{node.lineno} imports {node.module} by bare name")
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            mod = importlib.import_module(".".join(base + ([node.module] if node.module else [])))
            for a in node.names:
                assert hasattr(mod, a.name) or importlib.util.find_spec(f"{mod.__name__}.{a.name}"), (
                    f"{path.name}:{node.lineno}: {a.name} not found in {mod.__name__}")
