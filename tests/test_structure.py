"""The library's shape: the folder tree is the pipeline's table of contents, layered (no import from a lower
layer to a higher one, function-level imports included, and no cycle), argparse only in the CLI package, no
long module outside the list below, and the README's Layout table naming the tree as it is."""
from __future__ import annotations

import ast
import re

import pytest

from import_graph import PACKAGE, ROOT, SRC, import_graph, module_imports, modules

CLI = PACKAGE / "cli"
MAX_LINES = 400
# Modules allowed past MAX_LINES, and why: a reason here, not in the module's docstring.
LONG_MODULES = {
    "rosetta.config": "the params schema, one dataclass per params.yaml section with its checks: params.yaml reads "
                      "against one file",
}
# Every top-level module and package of src/rosetta/, lowest layer first: a module may import from its own layer
# and those below, never from a higher one. The README's Layout table lists them in this order.
LAYERS = [
    ("errors.py", 0), ("fsutil.py", 1), ("params.py", 1), ("config.py", 2), ("layout.py", 3),
    ("modeling/", 4),
    ("data/", 6),
    ("prep/", 7),
    ("tracking/", 8),
    ("recognition/", 9),
    ("evaluation/", 10),
    ("training/", 11),
    ("delivery/", 12),
    ("registry/", 13),
    ("bench/", 14),
    ("orchestration/", 15),
    ("cli/", 16),
]
# The package's own __init__ imports nothing (every module runs it on the way); ``python -m rosetta`` runs the CLI.
ENTRY_POINTS = {"rosetta": 0, "rosetta.__main__": 17}
# The inference package (src/rosetta_infer/, what a registered model ships as its code) lies below every layer of
# ``rosetta``: it imports none of them.
INFERENCE_LAYER = -1
# Modules below their package's layer, and why: reading the registry (a version resolved, its files checked) is what
# recognition and training load a registered model with; writing it logs the pyfunc model, a delivery.
LOWER_MODULES = {"rosetta.registry.refs": "tracking/"}


def layer(module: str) -> int:
    if module.split(".")[0] == "rosetta_infer":
        return INFERENCE_LAYER
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    if module in LOWER_MODULES:
        return dict(LAYERS)[LOWER_MODULES[module]]
    top = module.split(".")[1]
    for name, rank in LAYERS:
        if name.rstrip("/").removesuffix(".py") == top:
            return rank
    raise AssertionError(f"{module}: {top} has no layer; add it to LAYERS in tests/test_structure.py (and to the "
                         "README's Layout table)")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
                  for a, targets in graph.items() for b in targets if layer(b) > layer(a))


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


def test_no_import_goes_up_a_layer():
    upward = upward_imports(import_graph())
    assert not upward, "imports from a higher layer (move the code down, or the caller up):\n" + "\n".join(upward)


def test_the_checks_see_function_level_imports(tmp_path):
    # Both checks must catch an import hidden in a function body, the kind they exist for.
    src = tmp_path / "b.py"
    src.write_text("def f():\n    from rosetta.training import trainer\n")
    known = {"rosetta.training.trainer", "rosetta.data.splits"}
    graph = {"rosetta.training.trainer": {"rosetta.data.splits"},
             "rosetta.data.splits": module_imports("rosetta.data.splits", src, known)}
    assert find_cycle(graph) == ["rosetta.data.splits", "rosetta.training.trainer", "rosetta.data.splits"]
    assert upward_imports(graph) == ["rosetta.data.splits (layer 6) imports rosetta.training.trainer (layer 11)"]


def test_every_module_is_in_a_layer():
    for name in modules():
        layer(name)  # raises for a top-level module or package LAYERS does not place


def test_long_modules_are_listed():
    long = {name: path.read_text().count("\n") for name, path in modules().items()}
    long = {name: n for name, n in long.items() if n > MAX_LINES}
    unlisted = [f"{name} ({n} lines)" for name, n in long.items() if name not in LONG_MODULES]
    assert not unlisted, f"split these by responsibility (or list them in LONG_MODULES with the reason): {unlisted}"
    stale = sorted(set(LONG_MODULES) - set(long))
    assert not stale, f"no longer over {MAX_LINES} lines: remove {stale} from LONG_MODULES"


def readme_layout_rows() -> list[str]:
    """The src/rosetta/ entries of the README's Layout table, in order: ``errors.py``, ``data/``, ..."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `  ([\w.]+/?)`", table, re.M)


def test_the_readme_layout_table_is_the_package_tree():
    tree = sorted(p.name + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir()
                  if p.name not in ("__init__.py", "__main__.py", "py.typed", "__pycache__")
                  and (p.suffix == ".py" or (p / "__init__.py").is_file()))
    assert sorted(name for name, _ in LAYERS) == tree, "LAYERS must name every top-level module and package"
    assert readme_layout_rows() == [name for name, _ in LAYERS], (
        "the README's Layout table must list src/rosetta/'s modules and packages one per row, lowest layer first, "
        "as tests/test_structure.py's LAYERS does")


@pytest.mark.parametrize("package", sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()))
def test_every_package_says_what_it_owns(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc, f"src/rosetta/{package}/__init__.py: start with a docstring saying what the package owns"


# What a stage script may import beside its step's function: reading params, one-sentence errors, the paths.
STAGE_PLUMBING = {"load_config", "run_guarded", "RosettaError", "RunLayout", "DataLayout", "markdown_table"}


def _rosetta_names(path) -> set[str]:
    return {a.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rosetta") for a in node.names}


@pytest.mark.parametrize("stage", sorted(p.stem for p in (ROOT / "stages").glob("*.py") if (CLI / p.name).is_file()))
def test_a_stage_and_its_command_call_the_same_function(stage):
    # One door per step: the DVC stage and `rosetta <stage>` share the call that decides what the step does.
    steps = _rosetta_names(ROOT / "stages" / f"{stage}.py") - STAGE_PLUMBING
    assert steps and steps <= _rosetta_names(CLI / f"{stage}.py"), (
        f"stages/{stage}.py calls {sorted(steps)}, not all of which src/rosetta/cli/{stage}.py calls: give both one "
        "library function to call")
