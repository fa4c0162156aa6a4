"""The package's shape: the search engine names no stage, modules import each other without cycles, and
an import of the package's own modules inside a function says why it is not at the top."""

from __future__ import annotations

import ast
import io
import re
import tokenize
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
    offenders = {
        name: sorted(i for i in imports(path, top_level_only=False) if i.startswith("cae.colorize"))
        for name, path in engine.items()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycle_at_module_level():
    graph = {
        name: {i for i in imports(path, top_level_only=True) if i in MODULES and i != name}
        for name, path in MODULES.items()
    }
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


LAZY = re.compile(r"#\s*lazy:")


def _is_cae_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or node.module == "cae" or (node.module or "").startswith("cae.")
    return isinstance(node, ast.Import) and any(a.name == "cae" or a.name.startswith("cae.") for a in node.names)


def unexplained_imports(source: str, name: str) -> list[str]:
    """``name:line: import`` for each ``cae`` import inside a function that no ``# lazy:`` comment explains.

    An import inside a function hides a dependency from the file's top, so it must say why it is there
    (an import cycle, or TensorFlow, MLflow, matplotlib or Optuna kept out of a module that imports
    without them). The rule: a comment that starts ``# lazy:`` and stands either

    1. within the innermost function holding the import (trailing the import, above it, anywhere in that
       function's lines), which explains that function's ``cae`` imports; or
    2. at column 0 outside every function, which explains every in-function ``cae`` import of the module
       (for a module lazy by design, e.g. ``cae/commands.py``).
    """
    tree = ast.parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    comments = [
        tok.start
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT and LAZY.match(tok.string)
    ]
    if any(col == 0 and not any(f.lineno <= line <= f.end_lineno for f in functions) for line, col in comments):
        return []
    found: list[str] = []

    def visit(node: ast.AST, function: ast.AST | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child)
                continue
            if function is not None and _is_cae_import(child):
                if not any(function.lineno <= line <= function.end_lineno for line, _ in comments):
                    found.append(f"{name}:{child.lineno}: {ast.unparse(child)}")
            visit(child, function)

    visit(tree, None)
    return found


def test_an_import_inside_a_function_says_why():
    """Every ``cae`` import inside a function has a ``# lazy:`` reason by the rule of :func:`unexplained_imports`."""
    offenders = [
        line
        for name, path in sorted(MODULES.items())
        for line in unexplained_imports(path.read_text(), str(path.relative_to(CAE.parent)))
    ]
    heading = "imports of cae modules inside a function without a # lazy: reason (move them to the top, or say why):"
    assert not offenders, "\n".join([heading, *offenders])


def test_the_lazy_rule_itself():
    bare = "import json\n\ndef f():\n    from cae.train import predict\n    return predict\n"
    assert unexplained_imports(bare, "m.py") == ["m.py:4: from cae.train import predict"]
    assert unexplained_imports(bare.replace("json\n", "json\n# not lazy here\n"), "m.py") != []
    trailing = bare.replace("import predict\n", "import predict  # lazy: TensorFlow\n")
    assert unexplained_imports(trailing, "m.py") == []
    in_function = bare.replace("    return", "    # lazy: TensorFlow\n    return")
    assert unexplained_imports(in_function, "m.py") == []
    module_wide = bare.replace("import json\n", "import json\n# lazy: every function loads what it runs\n")
    assert unexplained_imports(module_wide, "m.py") == []
    # A reason in another function does not count; a third-party import needs none; a relative one is cae's.
    other = bare + "\ndef g():\n    import keras  # lazy: Keras\n"
    assert unexplained_imports(other, "m.py") == ["m.py:4: from cae.train import predict"]
    relative = "def f():\n    import numpy\n    from . import x\n"
    assert unexplained_imports(relative, "m.py") == ["m.py:3: from . import x"]
