"""The data stages under the real ``dvc``, in a scratch git repository holding a copy of the pipeline."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dvc_fixtures import (TINY_DATA, VENV_BIN, always_changed, command_env, dvc, needs_dvc, project_copy, set_params,
                          stages_run)

pytestmark = [pytest.mark.slow, needs_dvc]


def test_the_venvs_dvc_runs_the_stages_with_no_python_on_path(tmp_path):
    """`.venv/bin/dvc repro` from a shell with neither `python` nor `python3` on PATH (only the tools a shell
    has): dvc.yaml's `sh stages/python.sh` finds the project's .venv/bin/python, also from below a folder."""
    repo = project_copy(tmp_path / "repo", TINY_DATA)
    (repo / ".venv").symlink_to(VENV_BIN.parent)
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("sh", "dirname", "git"):
        (tools / tool).symlink_to(shutil.which(tool))
    env = command_env(PATH=str(tools))
    assert subprocess.run(["sh", "-c", "command -v python || command -v python3"], env=env).returncode != 0
    out = dvc(repo, "repro", "download", env=env)
    assert stages_run(out)[-1] == "download" and (repo / "data" / "raw" / "synth").is_dir(), out
    (repo / ".venv").unlink()
    proc = subprocess.run(["sh", "stages/python.sh", "stages/download.py"], cwd=repo, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: no Python for the stage: neither python nor python3 is on PATH, and no .venv/bin/python is in "
        f"{repo} or a folder above it; run `make install` in the project, or put a Python with rosetta on PATH")


def test_dvc_repro_builds_data_then_skips_then_reruns_only_validate(tmp_path):
    repo = project_copy(tmp_path / "repo", TINY_DATA)

    first = dvc(repo, "repro", "validate")
    real = ["real_benchmarks", "convert_real", "real_train", "convert_real_train"]  # none beside the copy: one line
    assert [s for s in stages_run(first) if s not in real] == ["download", "convert", "validate"]
    assert set(real) <= set(stages_run(first))
    data = repo / "data"
    for split in ("train", "val", "test"):
        assert (data / "lmdb" / "synth" / split / "data.mdb").is_file()
    assert (data / "lmdb" / "benchmarks" / "synth_test" / "data.mdb").is_file()
    assert not list(data.rglob("lock.mdb"))
    metrics = json.loads((data / "reports" / "data_metrics.json").read_text())
    assert metrics["synth_train"]["samples"] == 40 and metrics["synth_train"]["passed"]
    assert metrics["benchmarks_synth_test"]["samples"] == 10
    assert (data / "reports" / "validation" / "synth_val.json").is_file()
    assert (data / "reports" / "plots" / "label_length" / "synth_test.csv").is_file()
    assert "synth_train" in dvc(repo, "metrics", "show", "--json", "data/reports/data_metrics.json")
    docs = (data / "reports" / "data_docs" / "index.html").read_text()  # GX's Data Docs, every LMDB checked
    assert all(name in docs for name in ("synth_train", "synth_val", "benchmarks_synth_test"))

    every_time = always_changed(repo)  # they fingerprint folders outside the repository; their outputs stay
    second = dvc(repo, "repro", "validate")
    assert [s for s in stages_run(second) if s not in every_time] == [], second

    set_params(repo, {"data.validation.min_height": 10})
    third = dvc(repo, "repro", "validate")
    assert [s for s in stages_run(third) if s not in every_time] == ["validate"], third


def test_the_venvs_dvc_runs_the_stages_without_the_venv_on_path(tmp_path):
    """`.venv/bin/dvc repro` from a shell whose `python` is an interpreter without the project (the venv not on
    PATH): `stages/python.sh` passes over it and each stage runs under the project's .venv/bin/python all the same;
    with no .venv to turn to, it ends in one sentence naming the Pythons it passed over."""
    repo = project_copy(tmp_path / "repo", TINY_DATA)
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys._base_executable)  # the interpreter the venv was made from: no rosetta
    others = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p).resolve() != VENV_BIN.resolve()]
    env = command_env(PATH=os.pathsep.join([str(bare), *others]))
    installed = subprocess.run(["python", "-c", "import importlib.metadata as m; m.distribution('rosetta-pipeline')"],
                               env=env, capture_output=True)
    assert installed.returncode == 1  # (with PYTHONPATH=src it may find the package's source, never its dependencies)

    (repo / ".venv").symlink_to(VENV_BIN.parent)  # the project's venv, as `make install` makes it
    out = dvc(repo, "repro", "download", env=env)
    assert stages_run(out)[-1] == "download" and (repo / "data" / "raw" / "synth").is_dir(), out

    (repo / ".venv").unlink()
    proc = subprocess.run(["sh", "stages/python.sh", "stages/download.py"], cwd=repo, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    passed_over = ", ".join(shutil.which(name, path=env["PATH"]) for name in ("python", "python3")
                            if shutil.which(name, path=env["PATH"]))
    assert proc.stderr.strip() == (f"error: no Python for the stage has rosetta installed: not {passed_over}, "
                                   f"and no .venv/bin/python is in {repo} or a folder above it; run `make install` in "
                                   "the project, or put the environment rosetta is installed in first on PATH")
