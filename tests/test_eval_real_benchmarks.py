"""Real benchmark sets beside the synthetic one: DTRB gt-file folders converted and scored with the field's
protocol, the data.real_benchmarks stages under the real ``dvc`` (fingerprint, convert once per change, one
line where the folder is missing), and an image that does not decode scored as wrong, never replaced.
Every set here is made by the test; none is the shared data."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest

from dvc_fixtures import dvc, needs_dvc, project_copy, run, stages_run
from model_fixtures import config, png_bytes, word_image
from rosetta.errors import RosettaError
from rosetta.evaluation.evaluate import evaluate_benchmarks
from rosetta.prep.benchmarks import (MANIFEST, ORIGIN_ENV, convert_real_benchmarks, describe, real_lmdbs,
                                     real_manifest, write_real_manifest)
from rosetta.prep.convert import import_benchmarks
from test_eval_metrics import constant_a_checkpoint, write_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = ["train.device=cpu", "train.threads=1", "data.workers=1", "eval.batch_size=16", "eval.gallery_size=4"]


def small_config(tmp_path: Path):
    return config(*SMALL, f"data.root={tmp_path / 'data'}")


def make_gt_set(folder: Path, labels: list[str], seed: int = 0) -> Path:
    """A benchmark set in DTRB's gt-file layout: ``images/word_N.png`` and ``gt.txt`` lines ``path<TAB>label``."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    lines = []
    for i, label in enumerate(labels, 1):
        word_image(label, rng).save(folder / "images" / f"word_{i}.png")
        lines.append(f"images/word_{i}.png\t{label}")
    (folder / "gt.txt").write_text("\n".join(lines) + "\n")
    return folder


def make_real_folder(root: Path) -> Path:
    # Mixed case, punctuation, and a label with nothing in 0-9a-z (no word to read: not scored, as in the field).
    make_gt_set(root / "IIIT_tiny", ["A", "a!", "B", "-"], seed=1)
    make_gt_set(root / "SVT_tiny", ["AB", "a"], seed=2)
    return root


def test_gt_file_folder_scores_directly_with_the_fields_protocol(tmp_path, rosetta_cli):
    cfg = small_config(tmp_path)
    ckpt = constant_a_checkpoint(tmp_path / "a.pt", cfg)  # reads "a" in every image
    bench = make_real_folder(tmp_path / "bench")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = rosetta_cli("evaluate", "--model", str(ckpt), "--data", str(bench), "--json",
                       *(a for o in SMALL for a in ("-o", o)), cwd=tmp_path, env=rosetta_cli.env(TMPDIR=str(scratch)))
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    # "A" and "a!" match "a" once case and punctuation are dropped; "B" does not; "-" is no word.
    assert s["sets"]["IIIT_tiny"] == {"accuracy": pytest.approx(2 / 3), "norm_edit_dis": pytest.approx(2 / 3),
                                      "count": 3}
    assert s["sets"]["SVT_tiny"]["accuracy"] == 0.5 and s["sets"]["SVT_tiny"]["count"] == 2
    assert s["accuracy_total"] == pytest.approx(3 / 5)
    assert list(scratch.iterdir()) == []  # the LMDBs converted on the way are gone
    assert not list(bench.rglob("data.mdb"))  # and were never written beside the sets


def test_real_sets_convert_once_and_score_beside_the_benchmarks(tmp_path):
    cfg = small_config(tmp_path)
    ckpt = constant_a_checkpoint(tmp_path / "a.pt", cfg)
    real = make_real_folder(tmp_path / "shared" / "benchmarks")
    project = tmp_path / "project"
    project.mkdir()
    manifest = write_real_manifest("../shared/benchmarks", project / "data" / "real" / MANIFEST, project)
    assert list(manifest["sets"]) == ["IIIT_tiny", "SVT_tiny"]
    assert manifest["sets"]["SVT_tiny"]["kind"] == "gt-file" and manifest["sets"]["SVT_tiny"]["files"] == 3
    assert describe(manifest) == "real benchmarks at ../shared/benchmarks: IIIT_tiny, SVT_tiny"

    converted = project / "data" / "real" / "lmdb"
    reports = convert_real_benchmarks(project / "data" / "real" / MANIFEST, converted, workers=1, project_dir=project)
    assert reports["IIIT_tiny"]["written"] == 4 and reports["SVT_tiny"]["written"] == 2
    assert json.loads((converted / MANIFEST).read_text()) == manifest
    assert real_lmdbs(converted) == converted

    write_set(tmp_path / "bench" / "synth_test", ["a", "b"])
    out = tmp_path / "eval"
    s = evaluate_benchmarks(ckpt, tmp_path / "bench", cfg, out, real_dir=converted)
    assert list(s["sets"]) == ["synth_test", "IIIT_tiny", "SVT_tiny"]
    assert s["real_sets"] == ["IIIT_tiny", "SVT_tiny"]
    assert s["accuracy_real"] == pytest.approx(3 / 5) and s["count_real"] == 5
    assert s["accuracy_total"] == pytest.approx(4 / 7)
    table = (out / "metrics.md").read_text()
    assert "| **real total** (IIIT_tiny, SVT_tiny) | 5 | 0.6000 |" in table
    assert (out / "gallery.png").read_bytes().startswith(b"\x89PNG")

    # A set changed after its fingerprint is not converted as if it were the one fingerprinted.
    (real / "SVT_tiny" / "gt.txt").write_text("images/word_1.png\tAC\nimages/word_2.png\ta\n")
    assert real_manifest("../shared/benchmarks", project) != manifest
    with pytest.raises(RosettaError, match="changed since"):
        convert_real_benchmarks(project / "data" / "real" / MANIFEST, converted, workers=1, project_dir=project)


def test_a_benchmark_folder_may_mix_lmdbs_and_gt_file_sets(tmp_path):
    """What data.benchmarks.url and --data accept: every set becomes an LMDB named by its folder."""
    make_gt_set(tmp_path / "src" / "gt" / "SVT_tiny", ["AB", "a"])
    write_set(tmp_path / "src" / "evaluation" / "CUTE_tiny", ["a"])
    reports = import_benchmarks(tmp_path / "src", tmp_path / "out", workers=1)
    assert list(reports) == ["SVT_tiny"] and reports["SVT_tiny"]["written"] == 2
    assert sorted(p.parent.name for p in (tmp_path / "out").glob("*/data.mdb")) == ["CUTE_tiny", "SVT_tiny"]
    with pytest.raises(RosettaError, match="no benchmark set there"):
        import_benchmarks(tmp_path / "src" / "gt" / "SVT_tiny" / "images", tmp_path / "none")


def test_missing_real_folder_is_one_line_and_no_set(tmp_path):
    manifest = real_manifest("../shared/benchmarks", tmp_path)
    assert manifest == {"real_benchmarks": "../shared/benchmarks", "sets": {}}
    line = describe(manifest)
    assert "\n" not in line and line.startswith("no real benchmark found at ../shared/benchmarks")
    converted = tmp_path / "data" / "real" / "lmdb"
    write_real_manifest("../shared/benchmarks", tmp_path / MANIFEST, tmp_path)
    assert convert_real_benchmarks(tmp_path / MANIFEST, converted, project_dir=tmp_path) == {}
    assert (converted / MANIFEST).is_file() and real_lmdbs(converted) is None


def test_an_image_that_does_not_decode_is_scored_wrong_not_replaced(tmp_path):
    cfg = small_config(tmp_path)
    ckpt = constant_a_checkpoint(tmp_path / "a.pt", cfg)
    good = png_bytes(word_image("a", np.random.default_rng(0)))
    (tmp_path / "bench" / "broken").mkdir(parents=True)
    env = lmdb.open(str(tmp_path / "bench" / "broken"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for i, data in enumerate([good, b"not an image", good], 1):
            txn.put(b"image-%09d" % i, data)
            txn.put(b"label-%09d" % i, b"a")
        txn.put(b"num-samples", b"3")
    env.close()
    out = tmp_path / "eval"
    s = evaluate_benchmarks(ckpt, tmp_path / "bench", cfg, out)
    # A neighbour in its place would have read "a" and made it 3 of 3.
    assert s["sets"]["broken"]["count"] == 3 and s["sets"]["broken"]["accuracy"] == pytest.approx(2 / 3)
    assert s["unreadable"] == {"broken": 1}
    assert "1 images of broken do not decode: scored as wrong" in (out / "metrics.md").read_text()


# --------------------------------------------------------------------------- the stages under the real dvc


@pytest.mark.slow
@needs_dvc
def test_dvc_converts_real_sets_once_per_change_and_says_one_line_without_them(tmp_path):
    real = make_real_folder(tmp_path / "shared" / "benchmarks")
    # Outside the repository, as ../shared/benchmarks is.
    repo = project_copy(tmp_path / "repo", {"data.real_benchmarks": "../shared/benchmarks", "data.workers": 1})

    first = dvc(repo, "repro", "convert_real")
    assert stages_run(first) == ["real_benchmarks", "convert_real"], first
    assert "real benchmarks at ../shared/benchmarks: IIIT_tiny, SVT_tiny" in first
    for name in ("IIIT_tiny", "SVT_tiny"):
        assert (repo / "data" / "real" / "lmdb" / name / "data.mdb").is_file()

    # The evaluate stage's script, as DVC runs it, scores them beside synth_test; dvc metrics show has them.
    write_set(repo / "data" / "lmdb" / "benchmarks" / "synth_test", ["a", "b"])
    # The real training sets' held-out split best.pt was chosen on: the stage calibrates confidence on it.
    for split in ("train", "val"):
        write_set(repo / "data" / "realtrain" / "lmdb" / split / "REAL_train", ["a", "b"])
    (repo / "data" / "realtrain" / "lmdb" / "manifest.json").write_text(
        json.dumps({"real_train": "../shared/realtrain", "sets": {"REAL_train": {}}}))
    constant_a_checkpoint(repo / "runs" / "train" / "best.pt", config(*SMALL))
    (repo / "runs" / "train" / "run.json").write_text(json.dumps({"run_id": None}))
    (repo / "runs" / "train" / "train_metrics.json").write_text(json.dumps(
        {"best_val_accuracy": 0.75, "selected_on": "real", "best_val_synth_accuracy": 0.5,
         "best_val_real_accuracy": 0.75}))
    printed = run(repo, sys.executable, "stages/evaluate.py")
    assert "best.pt was chosen on the real validation split: accuracy 0.7500" in printed
    shown = json.loads(dvc(repo, "metrics", "show", "--json", stdout_only=True))
    metrics = next(iter(shown.values()))["data"]["runs/eval/metrics.json"]["data"]
    # The real validation split best.pt was chosen on, beside the benchmarks it is scored on.
    assert list(metrics)[:6] == ["accuracy_real", "IIIT_tiny", "SVT_tiny", "synth_test", "images_per_s",
                                 "val_real_accuracy"] and metrics["val_real_accuracy"] == 0.75
    assert metrics["sets"]["IIIT_tiny"]["accuracy"] == pytest.approx(2 / 3)
    assert metrics["sets"]["synth_test"]["accuracy"] == 0.5 and metrics["accuracy_real"] == pytest.approx(3 / 5)

    again = dvc(repo, "repro", "convert_real")
    assert stages_run(again) == ["real_benchmarks"], again  # fingerprinted again, nothing converted

    (real / "SVT_tiny" / "gt.txt").write_text("images/word_1.png\tAC\nimages/word_2.png\ta\n")
    changed = dvc(repo, "repro", "convert_real")
    assert stages_run(changed) == ["real_benchmarks", "convert_real"], changed

    shutil.rmtree(tmp_path / "shared")
    missing = dvc(repo, "repro", "convert_real")
    notices = [line for line in missing.splitlines() if "real benchmark" in line]
    assert notices == ["no real benchmark found at ../shared/benchmarks (data.real_benchmarks); evaluating on "
                       "data.benchmarks only"], missing
    assert real_lmdbs(repo / "data" / "real" / "lmdb") is None


def test_real_totals_pool_only_the_real_sets_and_reach_mlflow_names():
    from rosetta.evaluation.metrics import SetMetrics, flat_metrics, summarize

    s = summarize({"synth_test": SetMetrics(100, 95, 1.0), "IIIT5k_3000": SetMetrics(30, 12, 9.0),
                   "SVT_647": SetMetrics(10, 2, 6.0)}, real=["IIIT5k_3000", "SVT_647"])
    assert s["accuracy_real"] == pytest.approx(14 / 40) and s["count_real"] == 40
    assert s["norm_edit_dis_real"] == pytest.approx(1 - 15 / 40)
    assert s["accuracy_total"] == pytest.approx(109 / 140)
    flat = flat_metrics(s)
    assert flat["accuracy_real"] == s["accuracy_real"] and flat["IIIT5k_3000/accuracy"] == 0.4
    assert "accuracy_real" not in summarize({"synth_test": SetMetrics(1, 1, 0.0)})


def test_a_team_worker_s_clone_reads_the_sets_of_the_project_it_came_from(tmp_path, monkeypatch):
    """``rosetta team up`` gives each worker ROSETTA_ORIGIN_PROJECT: ``../shared/benchmarks`` is the project's, so the
    clone's manifest (and what DVC records of it) is the project's; a worker that cannot see the project stops."""
    project, clone = tmp_path / "work" / "project", tmp_path / "work" / "project" / ".team" / "workspaces" / "w1"
    make_gt_set(tmp_path / "work" / "shared" / "benchmarks" / "SVT_tiny", ["AB", "a"])
    clone.mkdir(parents=True)
    expected = real_manifest("../shared/benchmarks", project)
    assert list(expected["sets"]) == ["SVT_tiny"]
    monkeypatch.chdir(clone)
    assert real_manifest("../shared/benchmarks")["sets"] == {}  # the clone on its own: nothing there
    monkeypatch.setenv(ORIGIN_ENV, str(project))
    assert real_manifest("../shared/benchmarks") == expected
    write_real_manifest("../shared/benchmarks", clone / MANIFEST)
    assert list(convert_real_benchmarks(clone / MANIFEST, clone / "lmdb", workers=1)) == ["SVT_tiny"]
    assert real_manifest("../shared/nothing")["sets"] == {}  # what the project lacks, the worker lacks: one line
    monkeypatch.setenv(ORIGIN_ENV, str(tmp_path / "elsewhere"))  # a worker on a host without the project
    with pytest.raises(RosettaError) as err:
        real_manifest("../shared/benchmarks")
    assert str(err.value) == (f"data.real_benchmarks: ../shared/benchmarks is relative to the project "
                              f"{tmp_path / 'elsewhere'}, which this team worker cannot see; run the worker where the "
                              "project is, or set data.real_benchmarks to a folder every worker sees (or to '' for "
                              "none) and commit params.yaml")
