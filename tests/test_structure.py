"""The package's shape: the search engine names no stage, modules import each other without cycles, no
private name of a library is used, and importing the package (and its command line) loads no TensorFlow."""

from __future__ import annotations

import ast
import sys
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


# The libraries whose private names (a leading underscore) are no contract, and the standard library.
LIBRARIES = {
    "optuna",
    "optuna_integration",
    "optuna_dashboard",
    "mlflow",
    "keras",
    "keras_tuner",
    "tensorflow",
    "sqlalchemy",
    "requests",
    "urllib3",
    "numpy",
    "PIL",
    "matplotlib",
    "yaml",
    "scipy",
}
STDLIB = set(sys.stdlib_module_names)


def private_names(source: str, name: str) -> list[str]:
    """``name:line: what`` for each private name of a library or the standard library that ``source`` uses:
    an import of or from a private module or name, an attribute with a leading underscore reached from an
    imported module, ``getattr`` of such a name, or ``keras.src``."""
    tree = ast.parse(source)
    modules: set[str] = set()  # local names bound to imported library modules
    found: list[str] = []

    def private(part: str) -> bool:
        return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))

    def library(module: str) -> bool:
        root = module.split(".")[0]
        return root in LIBRARIES or root in STDLIB

    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if library(alias.name):
                    modules.add((alias.asname or alias.name).split(".")[0])
                    if any(private(p) for p in alias.name.split(".")) or ".src" in alias.name:
                        found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and library(node.module):
            parts = node.module.split(".")
            if any(private(p) for p in parts) or (parts[0] == "keras" and "src" in parts):
                found.append(f"{where}: from {node.module} import ...")
            for alias in node.names:
                if private(alias.name):
                    found.append(f"{where}: from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in modules:
                found.append(f"{where}: {ast.unparse(node)}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and private(node.args[1].value)
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in modules
        ):
            found.append(f"{where}: {ast.unparse(node)}")
    return found


def test_no_private_names_of_the_libraries_or_the_standard_library():
    """A name with a leading underscore in Optuna, MLflow, Keras ... or the standard library is no contract:
    the package uses public APIs only (where none answers, the code says so and uses SQL on Optuna's
    schema, not its private modules)."""
    offenders = [
        line
        for _, path in sorted(MODULES.items())
        for line in private_names(path.read_text(), str(path.relative_to(CAE.parent)))
    ]
    assert not offenders, "\n".join(["private library names in cae/:", *offenders])


def test_the_private_name_check_itself():
    assert private_names("from optuna.storages import _CachedStorage\n", "m.py") == [
        "m.py:1: from optuna.storages import _CachedStorage"
    ]
    assert private_names("from optuna.storages._heartbeat import BaseHeartbeat\n", "m.py") != []
    assert private_names("import os\nos._exit(1)\n", "m.py") == ["m.py:2: os._exit"]
    assert private_names("import threading\ngetattr(threading, '_register_atexit')\n", "m.py") != []
    assert private_names("from keras.src import ops\n", "m.py") != []
    assert private_names("import optuna\noptuna.storages.RDBStorage\nself._x = 1\nobj._y\n", "m.py") == []


def test_importing_cae_and_its_cli_loads_no_tensorflow():
    """`import cae` and the command line's modules load no TensorFlow (nor MLflow, Optuna): a bad input is
    answered in about a second (tests/test_preflight.py runs the bad inputs themselves)."""
    import subprocess

    heavy = "{'tensorflow', 'keras', 'mlflow', 'optuna'}"
    script = f"import sys, cae, cae.cli; print(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy}))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=CAE.parent, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
