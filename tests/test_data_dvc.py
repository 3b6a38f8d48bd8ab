"""The data stages under the real ``dvc``, in a scratch git repository holding a copy of the pipeline."""
from __future__ import annotations

import json

import pytest

from dvc_fixtures import TINY_DATA, always_changed, dvc, needs_dvc, project_copy, set_params, stages_run

pytestmark = [pytest.mark.slow, needs_dvc]


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
