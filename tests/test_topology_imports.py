"""bluefog.topology has no import cycle, counting function-local imports (which hide cycles
from the interpreter but not from a reader).

Oracle: the module import graph read from the source with ``ast`` (every ``import`` and
``from ... import`` statement, at any depth), and a cycle search checked on a known cycle.
"""

import ast
import pathlib

import networkx as nx

import bluefog.topology as T

PACKAGE = pathlib.Path(T.__file__).resolve().parent
NAME = "bluefog.topology"


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")[: -node.level] if module != NAME else NAME.split(".")[: 1 - node.level]
        base = ".".join(parts + ([node.module] if node.module else []))
    if node.module is None:  # from . import x
        return [f"{base}.{a.name}" for a in node.names]
    return [base]


def import_graph(package: pathlib.Path = PACKAGE) -> nx.DiGraph:
    """Edges ``a -> b`` for every import of topology module ``b`` anywhere in module ``a``."""
    modules = {f"{NAME}.{p.stem}": p for p in package.glob("*.py") if p.stem != "__init__"}
    G = nx.DiGraph()
    G.add_nodes_from(modules)
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve(mod, node)
            for tgt in targets:
                if tgt in modules and tgt != mod:
                    G.add_edge(mod, tgt)
    return G


def test_cycle_search_finds_a_known_cycle():
    G = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")])
    assert list(nx.simple_cycles(G))


def test_import_graph_reads_function_local_imports(tmp_path):
    (tmp_path / "x.py").write_text("def f():\n    from .y import g\n")
    (tmp_path / "y.py").write_text("from . import x\n")
    G = import_graph(tmp_path)
    assert G.has_edge(f"{NAME}.x", f"{NAME}.y") and G.has_edge(f"{NAME}.y", f"{NAME}.x")


def test_no_import_cycle_in_bluefog_topology():
    G = import_graph()
    assert G.has_edge(f"{NAME}.drawing", f"{NAME}._topology")  # the graph is really read
    assert G.has_edge(f"{NAME}.one_peer", f"{NAME}.dynamic")
    cycles = list(nx.simple_cycles(G))
    assert cycles == [], f"import cycles in bluefog.topology: {cycles}"
