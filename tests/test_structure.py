"""The package's shape: the search engine names no stage, and modules import each other without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

CAE = Path(__file__).resolve().parent.parent / "cae"


def module_name(path: Path) -> str:
    parts = path.relative_to(CAE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The ``cae.*`` modules ``path`` imports: everywhere, or only at module level (outside
    ``if TYPE_CHECKING:``), which is what an import cycle is made of."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cae") and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cae")}
    return found


MODULES = {module_name(p): p for p in CAE.rglob("*.py")}


def test_the_search_engine_imports_nothing_from_colorization():
    engine = {name: path for name, path in MODULES.items() if name.startswith("cae.search")}
    assert engine
    offenders = {name: sorted(i for i in imports(path, top_level_only=False) if i.startswith("cae.colorize"))
                 for name, path in engine.items()}  # fmt: skip
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycle_at_module_level():
    graph = {name: {i for i in imports(path, top_level_only=True) if i in MODULES and i != name}
             for name, path in MODULES.items()}  # fmt: skip
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
