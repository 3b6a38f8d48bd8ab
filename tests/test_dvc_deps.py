"""dvc.yaml's code deps and train params cannot drift from the code, and the committed dvc.lock cannot drift from
dvc.yaml.

Each stage's deps must list exactly the ``rosetta`` modules its script can import (the import closure, read
with ``ast``, function-level imports included): a missing one would let an edit go unnoticed by ``dvc status``,
an extra one reruns the stage (a 15-minute training) for code it never runs. The train stage's params are the
settings that can change the model (``rosetta.config.OPERATIONAL`` marks the others). ``make dvc-deps`` writes
both. The committed ``dvc.lock`` must record exactly those files with their current hashes, so a fresh clone
sees the pipeline as the commit left it. The run paths in dvc.yaml are ``RunLayout``'s.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from dvc_deps import CODE_PREFIXES, code_deps, train_stage_params
from import_graph import import_closure, loaded_modules
from rosetta.config import load_config
from rosetta.layout import RunLayout
from rosetta.params import PROJECT_ROOT

REFRESH = ("refresh the lock: `dvc repro` in the project (or `dvc commit -f <stage>` when the outputs are "
           "known to be unchanged), then commit dvc.lock")


def _stages() -> dict[str, dict]:
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


def _dep_paths(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def deps_problems(stages: dict[str, dict]) -> list[str]:
    """What differs between each stage's code deps and its script's import closure, both ways."""
    problems = []
    for name, stage in stages.items():
        listed = {d for d in _dep_paths(stage) if d.startswith(CODE_PREFIXES)}
        wanted = set(code_deps(stage))
        if missing := sorted(wanted - listed):
            problems.append(f"{name}: add to deps " + ", ".join(missing))
        if extra := sorted(listed - wanted):
            problems.append(f"{name}: remove from deps (its script never imports them) " + ", ".join(extra))
    return problems


def test_every_stage_depends_on_exactly_its_import_closure():
    problems = deps_problems(_stages())
    assert not problems, ("dvc.yaml's code deps differ from the stage scripts' imports (`make dvc-deps` rewrites "
                          "them):\n" + "\n".join(problems))


def test_a_missing_or_extra_dep_fails():
    stage = dict(_stages()["evaluate"])
    deps = _dep_paths(stage)
    stage["deps"] = [d for d in deps if d != "src/rosetta_infer/charset.py"] + ["src/rosetta/registry/versions.py"]
    assert deps_problems({"evaluate": stage}) == [
        "evaluate: add to deps src/rosetta_infer/charset.py",
        "evaluate: remove from deps (its script never imports them) src/rosetta/registry/versions.py"]


def test_the_train_stage_params_are_the_settings_that_change_the_model():
    listed = _stages()["train"]["params"]
    assert listed == train_stage_params(), "dvc.yaml's train params differ from rosetta.config (`make dvc-deps`)"
    assert "train.channels_last" not in listed and "train.threads" not in listed  # operational
    assert {"train.nproc", "train.eval_every", "train.val_samples", "train.lr"} <= set(listed)


def test_the_closure_follows_function_level_and_relative_imports(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from rosetta.data import lmdb_io\n")
    closure = import_closure(script)
    assert {"src/rosetta/__init__.py", "src/rosetta/data/__init__.py", "src/rosetta/data/lmdb_io.py"} <= closure
    relative = tmp_path / "module.py"
    relative.write_text("from . import lmdb_io\nfrom ..layout import DataLayout\n")
    assert {"rosetta.data.lmdb_io", "rosetta.layout"} <= loaded_modules(relative, "rosetta.data")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_the_committed_lock_records_the_code_as_it_is():
    """A fresh clone must see no stage changed by code: the lock's code deps are dvc.yaml's, hashes current."""
    lock = yaml.safe_load((PROJECT_ROOT / "dvc.lock").read_text())["stages"]
    problems = []
    for name, stage in _stages().items():
        wanted = {d for d in _dep_paths(stage) if d.startswith(CODE_PREFIXES)}
        recorded = {d["path"]: d for d in lock.get(name, {}).get("deps", []) if d["path"].startswith(CODE_PREFIXES)}
        for path in sorted(wanted - set(recorded)):
            problems.append(f"{name}: {path} is a dep in dvc.yaml but not in dvc.lock")
        for path in sorted(set(recorded) - wanted):
            problems.append(f"{name}: {path} is in dvc.lock but no longer a dep in dvc.yaml")
        for path in sorted(wanted & set(recorded)):
            if recorded[path].get("md5") != _md5(PROJECT_ROOT / path):
                problems.append(f"{name}: {path} differs from the hash dvc.lock records")
    assert not problems, "the committed dvc.lock is stale:\n" + "\n".join(problems) + f"\n{REFRESH}"


def test_dvc_yaml_names_the_run_layout_files():
    """dvc.yaml's run outputs are the files RunLayout gives the code (default params)."""
    layout = RunLayout.from_config(load_config(PROJECT_ROOT / "params.yaml"), root=Path("."))
    named = set()
    for stage in _stages().values():
        for kind in ("outs", "metrics", "plots"):
            named.update(o if isinstance(o, str) else next(iter(o)) for o in stage.get(kind, []))
    # The checkpoints are no output: the resumable state is no result, and `dvc exp apply` could not restore it.
    expected = {layout.best_checkpoint, layout.run_json, layout.train_metrics, layout.loss_csv,
                layout.val_csv, layout.curve_png, layout.eval_metrics, layout.eval_table, layout.gallery_png,
                layout.reliability_png,
                layout.onnx, layout.parity, layout.decision}
    assert {p.as_posix() for p in expected} <= named
    assert {p for p in named if p.startswith("runs/")} == {p.as_posix() for p in expected}


def test_editing_charset_changes_train_and_evaluate(tmp_path):
    """A real ``dvc status`` in a copy of the project, after editing src/rosetta_infer/charset.py."""
    repo = tmp_path / "project"
    repo.mkdir()
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(PROJECT_ROOT / name, repo / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("stages", "src"):
        shutil.copytree(PROJECT_ROOT / folder, repo / folder, ignore=skip)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "DVC_NO_ANALYTICS": "1"}
    dvc = str(Path(sys.executable).parent / "dvc")
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    with (repo / "src" / "rosetta_infer" / "charset.py").open("a") as fh:
        fh.write("\n# edited\n")
    out = subprocess.run([dvc, "status", "--json"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)

    def charset_changed(stage: str) -> bool:
        return any("src/rosetta_infer/charset.py" in entry.get("changed deps", {}) for entry in status.get(stage, [])
                   if isinstance(entry, dict))

    assert charset_changed("train") and charset_changed("evaluate"), status
    assert not charset_changed("download"), status
