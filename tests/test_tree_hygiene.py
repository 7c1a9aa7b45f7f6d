"""The shape of the tree: small modules, short functions, no import cycle, no private name
imported across top-level packages.

Oracle: Python's own ``ast`` of every project file (not the code's view of itself).
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bluefog", "bluefog_sim", "bluefog_dist", "algorithms", "bluefog_train", "benchmarks")
MAX_FILE_LINES = 420
MAX_FUNCTION_CODE_LINES = 60


def _files():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _code_lines(node, source_lines) -> int:
    """Lines of a function that are code: no blank lines, comments or docstring."""
    doc = ast.get_docstring(node, clean=False)
    skip = set()
    if doc is not None and node.body and isinstance(node.body[0], ast.Expr):
        skip = set(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    count = 0
    for ln in range(node.lineno, node.end_lineno + 1):
        text = source_lines[ln - 1].strip()
        if ln in skip or not text or text.startswith("#"):
            continue
        count += 1
    return count


def test_no_file_over_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in _files()
            if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_over_the_limit():
    long = {}
    for path in _files():
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node, lines)
                if n > MAX_FUNCTION_CODE_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_CODE_LINES} lines of code: {long}"


def _imports(path: Path):
    """``(module, names, line)`` for every import in ``path``, relative ones resolved."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield base, [a.name for a in node.names], node.lineno


def test_no_private_name_imported_across_packages():
    bad = []
    for path in _files():
        top = _module(path).split(".")[0]
        for module, names, line in _imports(path):
            other = module.split(".")[0]
            if other not in PACKAGES or other == top:
                continue
            private_module = any(p.startswith("_") for p in module.split(".")[1:])
            private_names = [n for n in names if n.startswith("_")]
            if private_module or private_names:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module} {private_names}")
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)


def test_no_import_cycle_between_modules():
    """Module-level and function-local imports both count (a local import hides a cycle)."""
    modules = {_module(p): p for p in _files()}
    graph = defaultdict(set)
    for name, path in modules.items():
        for module, names, _ in _imports(path):
            for target in [module] + [f"{module}.{n}" for n in names]:
                if target in modules and target != name:
                    graph[name].add(target)
    # a package's __init__ importing its own submodules is how packages work: not a cycle
    def is_parent(a, b):
        return b.startswith(a + ".")

    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if is_parent(node, nxt) or is_parent(nxt, node):
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(modules):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])


@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_package_has_a_docstring_stating_its_purpose(pkg):
    init = ROOT / pkg / "__init__.py"
    assert init.exists(), f"{pkg} is not a package"
    assert ast.get_docstring(ast.parse(init.read_text())), f"{pkg}/__init__.py has no docstring"
