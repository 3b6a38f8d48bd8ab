"""The Great Expectations suite over LMDB manifests, dataset statistics and the ``rosetta data`` CLI."""
from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import lmdb
import pytest
from PIL import Image

from rosetta_infer.charset import Charset
from rosetta.cli import main as rosetta_main
from rosetta.config import ValidationConfig
from rosetta.params import PROJECT_ROOT
from rosetta.prep.stats import label_stats, lmdb_stats, merge_stats, write_plots
from rosetta.prep.validate import build_manifest, validate_lmdb


def _png(size=(80, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (240, 240, 240)).save(buf, "PNG")
    return buf.getvalue()


def _lmdb(path: Path, samples: list[tuple[bytes, str]]) -> Path:
    env = lmdb.open(str(path), map_size=1 << 24, lock=False)
    with env.begin(write=True) as txn:
        for i, (data, label) in enumerate(samples, 1):
            txn.put(b"image-%09d" % i, data)
            txn.put(b"label-%09d" % i, label.encode())
        txn.put(b"num-samples", str(len(samples)).encode())
    env.close()
    return path


@pytest.fixture()
def good(tmp_path) -> Path:
    return _lmdb(tmp_path / "good", [(_png((60 + i, 32)), w) for i, w in enumerate(
        ["Hello", "WORLD", "shop", "open", "24h", "exit", "cafe", "bus", "stop", "A1"])])


@pytest.fixture()
def bad(tmp_path) -> Path:
    samples = [(_png(), "fine"), (_png(), "good"), (_png((80, 4)), "flat"), (_png((900, 30)), "long"),
               (b"not an image", "x"), (b"", "y"), (b"\x89PNG broken", "z"),
               (_png(), "café"), (_png(), "東京"), (_png(), "ok!")]
    return _lmdb(tmp_path / "bad", samples)


def test_marks_are_read_past_and_letters_outside_the_charset_do_not_conform():
    latin = Charset()
    assert all(latin.conforms(w) for w in ["Hello", "it's", "ok!", "$20", "Sign-up", "(open"])
    assert not any(latin.conforms(w) for w in ["café", "東京", "!!", ""])
    with_marks = Charset("abc!", lowercase=False)
    assert with_marks.conforms("ab!") and with_marks.conforms("ab?") and not with_marks.conforms("Ab")


def test_manifest_columns(good, bad):
    df = build_manifest(bad, Charset(), workers=1)
    assert list(df.columns) == ["key", "label", "label_length", "in_charset", "decodable", "width", "height",
                                "aspect_ratio"]
    assert df["key"].tolist() == list(range(1, 11))
    assert (~df["decodable"]).sum() == 3 and df["in_charset"].sum() == 8
    assert df.loc[2, "height"] == 4 and df.loc[3, "aspect_ratio"] == 30
    assert build_manifest(good, Charset(), workers=2)["decodable"].all()


def test_suite_passes_on_good_data(good, tmp_path):
    result = validate_lmdb(good, Charset(), ValidationConfig(), tmp_path / "out" / "good.json", workers=1)
    assert result.success, result.summary
    assert result.summary == "good: all 6 checks passed on 10 samples"
    saved = json.loads((tmp_path / "out" / "good.json").read_text())
    assert saved["gx"]["success"] is True and len(saved["gx"]["results"]) == 6
    assert saved["metrics"]["undecodable_fraction"] == 0.0


def test_a_result_is_the_same_bytes_on_every_run_and_in_every_folder(good, tmp_path, monkeypatch):
    """The stored result is a DVC output: the same data checks to the same bytes, whenever and wherever it runs
    (GX's run times and random ids left out, the LMDB named relative to the project)."""
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "out" / "first.json", tmp_path / "again" / "first.json"
    validate_lmdb(good, Charset(), ValidationConfig(), first, workers=1)
    validate_lmdb(good, Charset(), ValidationConfig(), second, workers=1)
    assert first.read_bytes() == second.read_bytes()
    saved = json.loads(first.read_text())
    assert saved["lmdb"] == "good" and "validation_time" not in saved["gx"]["meta"]


def test_suite_fails_with_a_readable_summary(bad, tmp_path):
    cfg = ValidationConfig(max_undecodable_fraction=0.05, min_charset_conformity=0.95, min_height=8,
                           max_aspect_ratio=25, min_shape_conformity=0.99, min_samples=100)
    result = validate_lmdb(bad, Charset(), cfg, tmp_path / "bad.json", workers=1)
    assert not result.success
    summary = result.summary
    assert summary.startswith("bad: 5 of 6 checks failed: ")
    assert "samples: 10 (need at least 100)" in summary
    assert "undecodable images: 30.00 % (3 rows; allowed at most 5.00 %)" in summary
    assert "labels outside the charset: 20.00 % (2 rows; allowed at most 5.00 %)" in summary
    assert "images lower than 8 px: 14.29 % (1 rows" in summary  # of the 7 decodable images
    assert "images wider than 25:1: 14.29 %" in summary
    saved = json.loads((tmp_path / "bad.json").read_text())  # the full result is written all the same
    assert saved["gx"]["success"] is False and len(saved["failed"]) == 5
    # Thresholds come from the config: loose enough, the same data passes.
    loose = ValidationConfig(max_undecodable_fraction=0.5, min_charset_conformity=0.5, min_shape_conformity=0.5)
    assert validate_lmdb(bad, Charset(), loose, tmp_path / "loose.json", workers=1).success


def test_label_stats_and_plots(good, tmp_path):
    stats = label_stats(["ab", "A-b", "", "abc"], Charset())
    assert stats["samples"] == 4 and stats["trainable"] == 3 and stats["in_charset"] == 3  # "-" is read past
    assert stats["label_length"] == {"0": 1, "2": 1, "3": 2}
    assert stats["characters"]["b"] == 3 and stats["characters"]["-"] == 1
    assert merge_stats([stats, stats])["label_length"] == {"0": 2, "2": 2, "3": 4}
    tree = lmdb_stats(good.parent, Charset())
    assert list(tree["sets"]) == ["good"] and tree["total"]["samples"] == 10
    paths = write_plots(tree["total"], tmp_path / "plots", "good")
    rows = list(csv.reader(open(paths[0])))
    assert rows[0] == ["length", "count"] and ["5", "2"] in rows


def test_cli_validate_stats_convert_and_download(good, bad, tmp_path, capsys):
    params = ["-c", str(PROJECT_ROOT / "params.yaml"), "-o", "data.workers=1"]
    assert rosetta_main(["data", "validate", str(good), "--results", str(tmp_path / "r"), *params]) == 0
    assert rosetta_main(["data", "validate", str(bad), "--results", str(tmp_path / "r"), *params]) == 1
    out = capsys.readouterr().out
    assert "good: all 6 checks passed" in out and "bad: 4 of 6 checks failed" in out
    assert rosetta_main(["data", "stats", str(good), "--json", *params]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["samples"] == 10

    (tmp_path / "src" / "img").mkdir(parents=True)
    (tmp_path / "src" / "img" / "a.png").write_bytes(_png())
    (tmp_path / "src" / "gt.txt").write_text("img/a.png\tExit\n")
    with tarfile.open(tmp_path / "set.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src", arcname="set")
    assert rosetta_main(["data", "download", str(tmp_path / "set.tar.gz"), str(tmp_path / "raw"), *params]) == 0
    assert rosetta_main(["data", "convert", "--format", "gt-file", str(tmp_path / "raw" / "set" / "gt.txt"),
                 str(tmp_path / "lmdb"), *params]) == 0
    assert "lmdb: 1 samples written, rejected: none" in capsys.readouterr().out
    assert rosetta_main(["data", "download", "benchmarks", str(tmp_path / "b"), *params]) == 2
    assert "data.benchmarks.url is empty" in capsys.readouterr().err
