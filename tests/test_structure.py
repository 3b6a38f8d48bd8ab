"""The library's shape: argparse only in the CLI package, no import cycle (function-level imports
included), and no long module without a reason."""
from __future__ import annotations

import ast
from pathlib import Path

from import_graph import PACKAGE, SRC, imported_modules, modules

CLI = PACKAGE / "cli"
MAX_LINES = 400
LONG_REASON = "Longer than 400 lines because"


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules ``name`` imports, itself aside (a package's file imports from its own package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imported_modules(path, package, known) - {name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: _imports(name, path, set(found)) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None. A package's ``__init__`` importing its own
    submodules is how a package exposes them, not a cycle, unless a submodule imports the package back."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_only_the_cli_package_imports_argparse():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if CLI in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            if "argparse" in names:
                offenders.append(str(path.relative_to(SRC)))
    assert not offenders, f"argparse belongs in rosetta/cli/ only; imported by {sorted(set(offenders))}"


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_function_level_imports(tmp_path):
    # The finder itself must catch a cycle hidden in a function body, the kind this test exists for.
    graph = {"rosetta.a": {"rosetta.b"}, "rosetta.b": set()}
    src = tmp_path / "b.py"
    src.write_text("def f():\n    from rosetta.a import thing\n")
    graph["rosetta.b"] = _imports("rosetta.b", src, set(graph))
    assert find_cycle(graph) == ["rosetta.a", "rosetta.b", "rosetta.a"]


def test_long_modules_say_why():
    long = []
    for name, path in modules().items():
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > MAX_LINES and LONG_REASON not in doc:
            long.append(f"{name} ({text.count(chr(10))} lines)")
    assert not long, f"split these, or give the reason in the docstring ('{LONG_REASON} ...'): {long}"
