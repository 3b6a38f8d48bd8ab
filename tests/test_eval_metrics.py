"""PaddleOCR's RecMetric arithmetic, and ``evaluate``/``predict`` end to end on a model whose output is known:
a head that answers "a" for every input."""
from __future__ import annotations

import json
import math

import pytest
import torch

from model_fixtures import BytesSample, png_bytes, word_image
from rosetta_infer.charset import Charset
from rosetta.evaluation.evaluate import evaluate_benchmarks
from rosetta.evaluation.metrics import (SEVEN_SETS, SetMetrics, flat_metrics, headline_first, levenshtein,
                                        normalize_text, normalized_edit_distance, recognition_metrics, score_sample,
                                        set_metrics, summarize,
                                        validation_of)
from rosetta.modeling import build_model
from rosetta.prep.lmdb_writer import write_lmdb
from rosetta.recognition.checkpoint import inference_entries, save_checkpoint
from train_fixtures import tiny_config

CONFIDENCE = math.exp(10) / (math.exp(10) + 36)


def test_text_normalization_is_paddleocrs_filter():
    assert normalize_text("Hello, World!") == "helloworld"
    assert normalize_text("a b\tc") == "abc"
    assert normalize_text("Ümlaut-9") == "mlaut9"


def test_levenshtein_and_its_normalization():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert normalized_edit_distance("ab", "a") == 0.5
    assert normalized_edit_distance("", "") == 0.0


def test_accuracy_is_exact_match_after_case_folding_and_filtering():
    m = recognition_metrics(["joint", "STREET", "hote", ""], ["Joint", "street!", "hotel", "x"])
    assert (m.count, m.correct) == (4, 2)
    assert m.accuracy == 0.5
    assert m.norm_edit_dis == pytest.approx(1 - (0 + 0 + 0.2 + 1) / 4)


def test_summary_weights_totals_by_samples_and_means_the_sets():
    s = summarize({"A": SetMetrics(100, 90, 5.0), "B": SetMetrics(300, 150, 60.0)})
    assert s["accuracy_total"] == pytest.approx(240 / 400)
    assert s["accuracy_mean"] == pytest.approx((0.9 + 0.5) / 2)
    assert s["norm_edit_dis_total"] == pytest.approx(1 - 65 / 400)
    assert s["count_total"] == 400
    assert "accuracy_total7" not in s
    seven = summarize({**{name: SetMetrics(10, 5, 0.0) for name in SEVEN_SETS}, "IC13_857": SetMetrics(10, 10, 0.0)})
    assert seven["accuracy_total7"] == 0.5
    assert seven["accuracy_total"] == pytest.approx(45 / 80)
    flat = flat_metrics(seven)
    assert flat["SVT/accuracy"] == 0.5 and "IC13_857/norm_edit_dis" in flat and "accuracy_total7" in flat


def constant_a_checkpoint(path, cfg):
    """A checkpoint whose model says 'a' at every time step, whatever the image."""
    charset = Charset.from_config(cfg.charset)
    model = build_model(cfg.model, charset.num_classes)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        model.head.fc.bias[charset.characters.index("a") + 1] = 10.0
    return save_checkpoint(path, inference_entries(model, cfg.model, charset))


def write_set(path, labels, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    write_lmdb(path, [BytesSample(f"{i}.png", lab, png_bytes(word_image(lab, rng))) for i, lab in enumerate(labels)],
               workers=1)


def test_evaluate_end_to_end_with_known_predictions(tmp_path):
    cfg = tiny_config(tmp_path)
    ckpt = constant_a_checkpoint(tmp_path / "a.pt", cfg)
    write_set(tmp_path / "bench" / "setA", ["a", "A", "b"])
    write_set(tmp_path / "bench" / "setB", ["ab", "a!"])
    out = tmp_path / "eval"
    s = evaluate_benchmarks(ckpt, tmp_path / "bench", cfg, out)
    assert s["sets"]["setA"] == {"accuracy": pytest.approx(2 / 3), "norm_edit_dis": pytest.approx(2 / 3), "count": 3}
    assert s["sets"]["setB"] == {"accuracy": 0.5, "norm_edit_dis": pytest.approx(0.75), "count": 2}
    assert s["accuracy_total"] == pytest.approx(3 / 5)
    assert s["accuracy_mean"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert s["norm_edit_dis_total"] == pytest.approx(1 - 1.5 / 5)
    assert s["images_per_s"] > 0
    written = json.loads((out / "metrics.json").read_text())  # DVC's columns first: each set's accuracy by name
    assert list(written)[:3] == ["setA", "setB", "images_per_s"] and written["setB"] == 0.5
    assert {k: v for k, v in written.items() if k not in ("setA", "setB")} == s
    table = (out / "metrics.md").read_text()
    assert "| setA | 3 | 0.6667 | 0.6667 |" in table and "| 0.6000 |" in table
    assert (out / "gallery.png").read_bytes().startswith(b"\x89PNG")


def test_evaluate_cli_prints_json(tmp_path, rosetta_cli):
    cfg = tiny_config(tmp_path)
    ckpt = constant_a_checkpoint(tmp_path / "a.pt", cfg)
    write_set(tmp_path / "bench" / "only", ["a", "b"])
    proc = rosetta_cli("evaluate", "--model", str(ckpt), "--data", str(tmp_path / "bench"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sets"]["only"]["accuracy"] == 0.5
    missing = rosetta_cli("evaluate", "--model", str(tmp_path / "nope.pt"), "--data", str(tmp_path / "bench"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "checkpoint not found" in missing.stderr


def test_predict_prints_one_line_per_image_and_reports_unreadable_files(tmp_path, rosetta_cli):
    import numpy as np

    cfg = tiny_config(tmp_path)
    ckpt = constant_a_checkpoint(tmp_path / "a.pt", cfg)
    images = tmp_path / "images"
    images.mkdir()
    word_image("joint", np.random.default_rng(0)).save(images / "word_1.png")
    word_image("hotel", np.random.default_rng(1)).save(images / "word_2.jpg")
    (tmp_path / "broken.png").write_bytes(b"not an image")

    proc = rosetta_cli("predict", "--model", str(ckpt), str(tmp_path / "broken.png"), str(images),
                   str(tmp_path / "missing.png"), cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert lines == [f"{images / 'word_1.png'}\ta\t1.00", f"{images / 'word_2.jpg'}\ta\t1.00"]
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 2
    assert "broken.png" in errors[0] and "not a readable image" in errors[0]
    assert "missing.png" in errors[1] and "no such file" in errors[1]

    ok = rosetta_cli("predict", "--model", str(ckpt), str(images / "word_1.png"), "--json", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stderr == ""
    assert json.loads(ok.stdout) == {"image": str(images / "word_1.png"), "text": "a",
                                     "confidence": round(CONFIDENCE, 4), "abstained": False, "reading": "a"}


def test_predict_abstains_below_the_threshold(tmp_path, rosetta_cli):
    """A reading less confident than --abstain-below (or serve.abstain_below) is answered with no text, flagged,
    its reading kept for a program that wants it; above the threshold the text is given."""
    import numpy as np

    cfg = tiny_config(tmp_path)
    ckpt = constant_a_checkpoint(tmp_path / "a.pt", cfg)
    word_image("joint", np.random.default_rng(0)).save(tmp_path / "word.png")
    below = rosetta_cli("predict", "--model", str(ckpt), "word.png", "--json", "--abstain-below", "0.999",
                        cwd=tmp_path)
    assert below.returncode == 0, below.stderr
    assert json.loads(below.stdout) == {"image": "word.png", "text": "", "confidence": round(CONFIDENCE, 4),
                                        "abstained": True, "reading": "a"}
    human = rosetta_cli("predict", "--model", str(ckpt), "word.png", "-o", "serve.abstain_below=0.999", cwd=tmp_path)
    assert human.stdout == "word.png\t\t1.00\tabstained\n"
    above = rosetta_cli("predict", "--model", str(ckpt), "word.png", "--abstain-below", "0.998",
                        "--confidence", "min", cwd=tmp_path)
    assert above.stdout == "word.png\ta\t1.00\n"
    bad = rosetta_cli("predict", "--model", str(ckpt), "word.png", "--abstain-below", "2", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "serve.abstain_below" in bad.stderr


def test_evaluation_progress_is_per_set_with_its_eta():
    """Batches crossing set boundaries advance each set's bar in turn; in a log each set ends on a line of its own
    with its count and the time it took (tqdm's elapsed<remaining)."""
    import io
    from pathlib import Path

    from rosetta.data.dataset import LmdbSet
    from rosetta.evaluation.evaluate import SetProgress

    sets = [LmdbSet("IIIT5k_3000", Path("a"), 5, 5, 0), LmdbSet("empty", Path("b"), 3, 0, 5),
            LmdbSet("SVT_647", Path("c"), 7, 7, 5)]
    log = io.StringIO()
    progress = SetProgress(sets, log, quiet_interval=0)
    for n in (4, 4, 4):
        progress(n)
    lines = [line for line in log.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert any(line.startswith("evaluate IIIT5k_3000: 100%") and "5/5" in line for line in lines), lines
    assert any(line.startswith("evaluate SVT_647: 100%") and "7/7" in line and "<" in line for line in lines), lines
    assert not any("empty" in line for line in lines)


def test_validation_of_names_the_split_best_pt_was_chosen_on():
    real_run = {"steps": 9, "best_val_accuracy": 0.6, "selected_on": "real", "best_step": 8,
                "best_val_synth_accuracy": 0.9, "best_val_real_accuracy": 0.6, "final_val_accuracy": 0.5}
    assert validation_of(real_run) == {"synth": 0.9, "real": 0.6, "selected_on": "real"}
    summary = {"sets": {"S": {"accuracy": 0.25}}, "images_per_s": 3.0, "validation": validation_of(real_run)}
    assert list(headline_first(summary))[:3] == ["S", "images_per_s", "val_real_accuracy"]
    # A run from before the real source (no per-split accuracies) adds nothing.
    assert validation_of({"best_val_accuracy": 0.6}) == {}


def test_the_exact_protocol_keeps_case_and_punctuation_beside_the_folded_one():
    from rosetta.evaluation.metrics import exact_text
    from rosetta.evaluation.report import markdown_table

    assert exact_text("Sign-up €5 é") == "Sign-up5"
    folded_only = score_sample("sign up", "Sign-up")
    assert folded_only.correct and folded_only.exact is None
    assert score_sample("sign up", "Sign-up", exact=True).exact is False
    assert score_sample("Sign-up", "Sign-up ", exact=True).exact is True
    sets = {"A": set_metrics([score_sample("Sale!", "SALE!", True), score_sample("EXIT", "EXIT", True)]),
            "B": set_metrics([score_sample("$20", "$20", True)])}
    summary = summarize(sets, real=["A", "B"])
    assert summary["sets"]["A"]["accuracy"] == 1.0 and summary["sets"]["A"]["accuracy_exact"] == 0.5
    assert summary["accuracy_real_exact"] == summary["accuracy_total_exact"] == 2 / 3
    assert list(headline_first({**summary, "images_per_s": 1.0}))[:2] == ["accuracy_real", "accuracy_real_exact"]
    assert flat_metrics(summary)["A/accuracy_exact"] == 0.5
    table = markdown_table({**summary, "images_per_s": 1.0})
    assert "| set | count | accuracy | norm_edit_dis | exact |" in table and "| A | 2 | 1.0000 | " in table
    # A folded model's table and summary hold no exact column at all.
    folded = summarize({"A": set_metrics([score_sample("sale", "SALE!")])}, real=["A"])
    assert "accuracy_real_exact" not in folded and "exact" not in markdown_table({**folded, "images_per_s": 1.0})
