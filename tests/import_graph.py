"""The ``rosetta`` modules a Python file imports, read with ``ast``: at the top, in function bodies and
under TYPE_CHECKING alike. One reader for the import-cycle test and the DVC deps test."""
from __future__ import annotations

import ast
from pathlib import Path

from rosetta.config import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
PACKAGE = SRC / "rosetta"


def module_file(name: str) -> Path | None:
    """The file of module ``name`` (``rosetta.data.synth``), or None when it is no module of ours."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
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
