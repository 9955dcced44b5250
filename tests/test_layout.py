"""The house's rules, read from the code: imports point one way (no module imports, even
for type hints or inside a function, one that imports it back), and a connector imports only
`connectors.*` and ragsync's leaf modules, never the store, the model or the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONNECTOR_MAY_IMPORT = {"ragsync.source", "ragsync.times", "ragsync.answer", "ragsync.errors", "ragsync.retry"}


def modules() -> dict[str, Path]:
    found = {}
    for package in ("ragsync", "connectors"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project's modules that `name` imports anywhere in its text."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_imports_point_one_way():
    edges, cycles = graph(), []
    state: dict[str, int] = {}                   # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2
    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == [], "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def test_a_connector_knows_no_qdrant_and_no_model():
    edges = graph()
    for name, deps in edges.items():
        if name.startswith("connectors"):
            stray = {d for d in deps if d.startswith("ragsync")} - CONNECTOR_MAY_IMPORT
            assert not stray, f"{name} imports {sorted(stray)}"
