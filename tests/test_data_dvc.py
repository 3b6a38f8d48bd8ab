"""The data stages under the real ``dvc``, in a scratch git repository holding a copy of the pipeline."""
from __future__ import annotations

import json

import pytest

from dvc_fixtures import TINY_DATA, dvc, needs_dvc, project_copy, set_params, stages_run

pytestmark = [pytest.mark.slow, needs_dvc]


def test_dvc_repro_builds_data_then_skips_then_reruns_only_validate(tmp_path):
    repo = project_copy(tmp_path / "repo", TINY_DATA)

    first = dvc(repo, "repro", "validate")
    assert stages_run(first)[:3] == ["download", "convert", "validate"]
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
    assert "synth_train" in dvc(repo, "metrics", "show", "--json")

    second = dvc(repo, "repro", "validate")
    assert stages_run(second) == [], second

    set_params(repo, {"data.validation.min_height": 10})
    third = dvc(repo, "repro", "validate")
    assert stages_run(third) == ["validate"], third
