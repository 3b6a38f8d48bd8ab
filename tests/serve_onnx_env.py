"""A Python subprocess that can import only what the serve-onnx install holds: pyproject's ``serve-onnx``
distributions (by the installed packages' own metadata), the standard library and the inference package
``rosetta_infer``; ``rosetta`` and torch refused. The Dockerfile test and the registry test read words in it."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from rosetta.params import PROJECT_ROOT


def closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements pull in, by the installed packages' own metadata."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(name) or []]
    return seen


def serve_onnx_distributions() -> set[str]:
    extra = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return closure(extra["serve-onnx"])


def run_serve_onnx(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``script`` run by a fresh interpreter whose imports are limited to the serve-onnx install."""
    dists = serve_onnx_distributions()
    allowed = {mod for mod, names in metadata.packages_distributions().items()
               if any(canonicalize_name(d) in dists for d in names)} | {"rosetta_infer"}
    blocker = f"""import sys
allowed = set({sorted(allowed)!r})
class Block:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in allowed and top not in sys.stdlib_module_names and not top.startswith("_"):
            raise ModuleNotFoundError(f"{{name}} is not in the serve-onnx install")
sys.meta_path.insert(0, Block())
"""
    return subprocess.run([sys.executable, "-c", blocker + script, *args], capture_output=True, text=True,
                          timeout=timeout)
