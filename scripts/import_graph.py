"""The ``rosetta`` and ``rosetta_infer`` modules a Python file imports, read with ``ast`` (at the top, in function
bodies and under TYPE_CHECKING alike), and what follows from them: the import graph of the packages, a file's
import closure (the code deps of a DVC stage) and a picture of the packages.

One reader for the structure test, the DVC deps test, ``make dvc-deps`` (scripts/dvc_deps.py) and
``make import-graph``, which runs this file: ``python scripts/import_graph.py`` prints the package graph in
Graphviz's DOT language.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "rosetta"
# The inference package the registered model ships alone; it imports nothing of ``rosetta``.
INFERENCE = SRC / "rosetta_infer"


def module_file(name: str) -> Path | None:
    """The file of module ``name`` (``rosetta.prep.synth``), or None when it is no module of ours."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def modules() -> dict[str, Path]:
    """Every module of both packages by dotted name (a package by its own name)."""
    out = {}
    for path in sorted([*PACKAGE.rglob("*.py"), *INFERENCE.rglob("*.py")]):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_modules(path: Path, package: str, known: set[str]) -> set[str]:
    """The modules in ``known`` that ``path`` imports; relative imports resolve against ``package`` (the
    package the file is in). ``from a import b`` counts as importing ``a.b`` when that is a module, else ``a``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found & known


def package_of(path: Path) -> str:
    """The package a file is in, for its relative imports ("" outside ``src/``)."""
    return ".".join(path.relative_to(SRC).parent.parts) if path.is_relative_to(SRC) else ""


def module_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules ``name`` imports, itself aside (a package's file imports from its own package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imported_modules(path, package, known) - {name}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    found = modules()
    return {name: module_imports(name, path, set(found)) for name, path in found.items()}


def loaded_modules(path: Path, package: str | None = None) -> set[str]:
    """``rosetta`` and ``rosetta_infer`` modules ``path`` imports anywhere in its body, with the packages that run
    on the way (importing ``rosetta.data.x`` runs ``rosetta`` and ``rosetta.data`` too); relative imports resolve
    against ``package`` (default: the package the file is in)."""
    direct = imported_modules(path, package_of(path) if package is None else package, set(modules()))
    return {".".join(n.split(".")[:i]) for n in direct for i in range(1, n.count(".") + 2)}


def import_closure(script: Path) -> set[str]:
    """Project-relative paths of ``script`` and every ``rosetta`` and ``rosetta_infer`` module it can load."""
    files = {script}
    todo = [script]
    while todo:
        for name in loaded_modules(todo.pop()):
            path = module_file(name)
            if path not in files:
                files.add(path)
                todo.append(path)
    return {p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(p) for p in files}


def top_level(name: str) -> str | None:
    """The node a module is drawn as: its package below ``rosetta`` (``rosetta.prep.synth`` -> ``prep``), or the
    top-level module itself; the inference package as one node; None for ``rosetta``'s own ``__init__`` and
    ``__main__``."""
    parts = name.split(".")
    if parts[0] == INFERENCE.name:
        return INFERENCE.name
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else None


def package_graph() -> dict[str, set[str]]:
    """Top-level package (or module) -> those it imports: the graph ``make import-graph`` draws."""
    graph: dict[str, set[str]] = {}
    for name, imported in import_graph().items():
        if (node := top_level(name)) is None:
            continue
        targets = {top_level(i) for i in imported} - {node, None}
        graph.setdefault(node, set()).update(targets)
    return graph


def reduced(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """``graph`` without the arrows a longer path already implies (its transitive reduction; a DAG)."""
    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo += graph[node]
        return seen

    return {a: {b for b in targets if not any(b in reachable(c) for c in targets - {b})}
            for a, targets in graph.items()}


CORE = ("errors", "fsutil", "params", "config", "layout")


def dot(graph: dict[str, set[str]]) -> str:
    """``graph`` in Graphviz's DOT language, importers above what they import; the core modules in one box."""
    lines = ["digraph rosetta {",
             '  graph [rankdir=TB, nodesep=0.25, ranksep=0.4, fontname="Helvetica", fontsize=10,',
             '         label="src/rosetta and src/rosetta_infer: an arrow is an import (those a longer path implies left out)"];',
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica", fontsize=11];',
             '  edge [color="#7a869a", arrowsize=0.6];',
             '  subgraph cluster_core { label="core"; style="rounded"; color="#b0b8c4";']
    lines += [f'    "{n}" [label="{n}.py", fillcolor="#f6f6f6"];' for n in CORE if n in graph]
    lines.append("  }")
    for node in sorted(set(graph) - set(CORE)):
        label = ("src/rosetta_infer/" if node == INFERENCE.name else f"{node}/" if (PACKAGE / node).is_dir()
                 else f"{node}.py")
        lines.append(f'  "{node}" [label="{label}"];')
    for node in sorted(graph):
        lines += [f'  "{node}" -> "{target}";' for target in sorted(graph[node])]
    return "\n".join(lines + ["}"]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dot(reduced(package_graph())))
