"""Evaluation through ONNX Runtime: an exported model scores every set exactly as its checkpoint does, on the
threads ``eval.threads`` sets, and the table says how fast it went."""
from __future__ import annotations

import pytest

from model_fixtures import config
from rosetta.evaluation.evaluate import evaluate_benchmarks
from rosetta.evaluation.report import markdown_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_evaluate_gives_identical_numbers_with_the_pt_and_the_onnx_model(tmp_path, tiny_data, untrained_model):
    cfg = config(f"data.root={tiny_data}", "eval.batch_size=5", "eval.threads=1",
                 f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    sets = tiny_data / "lmdb"  # synth/{train,val} and benchmarks/synth_test: 64 images in three sets
    by_pt = evaluate_benchmarks(untrained_model.best, sets, cfg, tmp_path / "eval_pt")
    by_onnx = evaluate_benchmarks(untrained_model.onnx, sets, cfg, tmp_path / "eval_onnx")
    assert by_pt["count_total"] == 64 and len(by_pt["sets"]) == 3
    assert by_pt["norm_edit_dis_total"] > 0  # the model reads something, so equal numbers mean equal texts
    speed = {by_pt.pop("images_per_s"), by_onnx.pop("images_per_s")}
    assert by_pt.pop("model")["sha256"] != by_onnx.pop("model")["sha256"]  # each names the file it scored
    assert by_pt == by_onnx
    assert all(s > 0 for s in speed)
    assert markdown_table({**by_onnx, "images_per_s": 123.4}).rstrip().endswith("123 images/s")


def test_a_batch_cut_into_slices_on_two_threads_gives_the_probabilities_of_one_run(untrained_model):
    import numpy as np

    from rosetta_infer.onnx_runtime import load_onnx_recognizer

    batch = np.random.default_rng(0).uniform(-1, 1, (16, 3, 32, 100)).astype(np.float32)
    one = load_onnx_recognizer(untrained_model.onnx, threads=1).probs_fn(batch)
    sliced = load_onnx_recognizer(untrained_model.onnx, threads=2).probs_fn(batch)
    assert sliced.shape == one.shape == (16, 25, 37)
    np.testing.assert_allclose(sliced, one, rtol=1e-5, atol=1e-6)
