"""Data under faults and hostile input, on real files: damaged images in a gt-file set are scored as wrong (as in
an LMDB), gt paths that leave their set's folder are never read, a symlinked set counts, a missing LMDB record
and the label statistics are told as they are, and a check by hand never writes the pipeline's reports."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest

from disk_fixtures import SmallDisk
from model_fixtures import WORDS, config, png_bytes, word_image, write_gt_set, write_word_lmdb
from rosetta_infer.charset import Charset
from rosetta.cli import main
from rosetta.data.dataset import LmdbDataset
from rosetta.data.lmdb_io import NUM_SAMPLES_KEY, image_key, label_key
from rosetta.evaluation.evaluate import evaluate_benchmarks
from rosetta.prep.convert import convert_gt_file
from rosetta.prep.stats import lmdb_stats

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _damage(images: Path) -> None:
    """Four of a set's images as a careless copy leaves them: truncated, random bytes, empty and missing."""
    truncated = images / "0.png"
    truncated.write_bytes(truncated.read_bytes()[:100])
    (images / "1.png").write_bytes(os.urandom(3000))
    (images / "2.png").write_bytes(b"")
    (images / "3.png").unlink()


def _raw_lmdb(folder: Path, set_dir: Path) -> None:
    """The gt-file set as another tool writes an LMDB of it: every line a sample, each image's bytes as they are
    (a missing file: no image record)."""
    lines = (set_dir / "gt.txt").read_text().splitlines()
    folder.mkdir(parents=True)
    env = lmdb.open(str(folder), map_size=16 << 20)
    with env.begin(write=True) as txn:
        for i, line in enumerate(lines, 1):
            rel, label = line.split("\t")
            txn.put(label_key(i), label.encode())
            if (set_dir / rel).is_file():
                txn.put(image_key(i), (set_dir / rel).read_bytes())
        txn.put(NUM_SAMPLES_KEY, str(len(lines)).encode())
    env.close()


def test_damaged_images_of_a_gt_file_set_are_scored_as_wrong_as_in_an_lmdb(tmp_path, untrained_model, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sets = tmp_path / "sets"
    write_gt_set(sets / "S", (WORDS * 2)[:20], seed=5)
    _damage(sets / "S" / "images")
    _raw_lmdb(sets / "L", sets / "S")
    cfg = config(f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    summary = evaluate_benchmarks(untrained_model.onnx, sets, cfg)
    assert summary["sets"]["S"]["count"] == summary["sets"]["L"]["count"] == 20
    assert summary["unreadable"] == {"S": 4, "L": 4}
    assert summary["sets"]["S"] == summary["sets"]["L"]
    # The conversion says which and why: the four kept as samples without an image.
    report = convert_gt_file(sets / "S" / "gt.txt", tmp_path / "S_lmdb", workers=1, keep_unreadable=True)["S_lmdb"]
    assert report["written"] == 20 and report["unreadable_total"] == 4
    assert report["unreadable"] == {"empty_image": 1, "missing": 1, "undecodable": 2}


def test_gt_paths_that_leave_the_set_folder_are_never_read(tmp_path, capsys):
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(png_bytes(word_image("secret", np.random.default_rng(0))))
    write_gt_set(tmp_path / "S", ["joint", "hotel"])
    (tmp_path / "S" / "images" / "link.png").symlink_to(secret)
    (tmp_path / "S" / "images" / "inside.png").symlink_to(tmp_path / "S" / "images" / "0.png")  # stays inside
    with open(tmp_path / "S" / "gt.txt", "a") as f:
        f.write(f"../outside/secret.png\tdotdot\n{secret}\tabsolute\nimages/link.png\tlink\nimages/inside.png\tok\n")
    out = tmp_path / "lmdb"
    assert main(["data", "convert", "--format", "gt-file", str(tmp_path / "S" / "gt.txt"), str(out),
                 "-o", "data.workers=1"]) == 0
    printed = capsys.readouterr().out
    assert "lmdb: 3 samples written, rejected: outside_folder 3" in printed
    assert ("3 path(s) of the gt file leave the set's folder (../outside/secret.png, " f"{secret}, images/link.png) "
            "and were not read") in printed
    report = json.loads((out / "report.json").read_text())
    assert report["rejected"] == {"outside_folder": 3}
    stored = (out / "data.mdb").read_bytes()
    assert secret.read_bytes()[:64] not in stored
    assert [label for _, label in LmdbDataset(out, Charset())] == ["joint", "hotel", "ok"]


def test_a_symlinked_set_folder_is_a_set(tmp_path, untrained_model, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_gt_set(tmp_path / "elsewhere" / "G", ["joint", "hotel", "exit"])
    write_word_lmdb(tmp_path / "elsewhere" / "L", 5, seed=3)
    (tmp_path / "sets").mkdir()
    write_word_lmdb(tmp_path / "sets" / "own", 4, seed=4)
    (tmp_path / "sets" / "G").symlink_to(tmp_path / "elsewhere" / "G")
    (tmp_path / "sets" / "L").symlink_to(tmp_path / "elsewhere" / "L")
    (tmp_path / "sets" / "loop").symlink_to(tmp_path / "sets")  # a link loop ends
    cfg = config(f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    summary = evaluate_benchmarks(untrained_model.onnx, tmp_path / "sets", cfg)
    assert {name: m["count"] for name, m in summary["sets"].items()} == {"G": 3, "L": 5, "own": 4}


def test_a_deleted_record_is_told_as_missing_and_stats_count_the_records(tmp_path, caplog):
    path = write_word_lmdb(tmp_path / "L", 6, seed=1)
    env = lmdb.open(str(path), map_size=16 << 20)
    with env.begin(write=True) as txn:
        txn.delete(image_key(2))  # a record deleted, its label kept
        txn.delete(image_key(4))
        txn.delete(label_key(4))  # a sample gone whole: num-samples still claims it
    env.close()
    dataset = LmdbDataset(path, Charset(), substitute_bad_images=False)
    assert dataset[1][0] is None
    assert "image-000000002: no such record" in caplog.text and "the file is empty" not in caplog.text
    stats = lmdb_stats(path, Charset())["total"]
    labels = [WORDS[i] for i in (0, 1, 2, 4, 5)]
    assert stats["samples"] == 5
    assert stats["mean_label_length"] == round(sum(map(len, labels)) / 5, 3)


def test_validating_a_folder_by_hand_leaves_the_pipeline_reports_alone(tmp_path, capsys):
    write_word_lmdb(tmp_path / "mine", 8, seed=2)
    pipeline = tmp_path / "data" / "reports" / "validation"
    pipeline.mkdir(parents=True)
    (pipeline / "synth_train.json").write_text('{"the pipeline": "result"}')
    assert main(["data", "validate", str(tmp_path / "mine"), "-o", f"data.root={tmp_path / 'data'}",
                 "-o", "data.workers=1"]) == 0
    assert f"GX results written to {tmp_path / 'data' / 'reports' / 'checks' / 'mine'}" in capsys.readouterr().out
    assert sorted(p.name for p in pipeline.iterdir()) == ["synth_train.json"]
    assert (pipeline / "synth_train.json").read_text() == '{"the pipeline": "result"}'
    assert list((tmp_path / "data" / "reports" / "checks" / "mine").glob("*.json"))


def _many_words(folder: Path, n: int) -> Path:
    """A gt-file set of ``n`` small word images, quick to write."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        word_image(word, rng).save(folder / "images" / f"{i}.png")
        lines.append(f"images/{i}.png\t{word}\n")
    (folder / "gt.txt").write_text("".join(lines))
    return folder / "gt.txt"


@pytest.mark.slow
def test_two_conversions_into_one_output_one_is_refused_naming_the_other(tmp_path, rosetta_cli):
    gt = _many_words(tmp_path / "S", 1200)
    out = tmp_path / "OUT"
    args = ["data", "convert", "--format", "gt-file", str(gt), str(out), "-o", "data.workers=1"]
    first = subprocess.Popen(rosetta_cli.command(*args), env=rosetta_cli.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".OUT.partial-*")):  # converting: caught in the act and held there
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)
        second = rosetta_cli(*args, timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2, second.stdout + second.stderr
    assert second.stderr.startswith(f"error: {out}: another process is writing this output (pid {first.pid} on ")
    assert second.stderr.count("\n") == 1 and "rosetta data convert" in second.stderr
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert "OUT: 1200 samples written" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT", "S"]  # no partial folder, no lock file
    # A builder killed outright leaves its partial folder; the next build removes it and completes.
    killed = subprocess.Popen(rosetta_cli.command(*args[:-3], str(tmp_path / "NEW"), *args[-2:]),
                              env=rosetta_cli.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list(tmp_path.glob(".NEW.partial-*")):
        assert killed.poll() is None
        time.sleep(0.01)
    killed.kill()
    killed.wait()
    again = rosetta_cli(*args[:-3], str(tmp_path / "NEW"), *args[-2:], timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["NEW", "OUT", "S"]


@pytest.mark.slow
def test_a_full_disk_during_conversion_is_one_sentence_and_the_rerun_completes(tmp_path, rosetta_cli):
    gt = _many_words(tmp_path / "S", 300)
    disk = SmallDisk(tmp_path / "disk", 0.5)
    try:
        out = disk.path / "lmdb"
        command = rosetta_cli.command("data", "convert", "--format", "gt-file", str(gt), str(out),
                                      "-o", "data.workers=1")
        full = subprocess.run(command, env=rosetta_cli.env(), capture_output=True, text=True, timeout=300,
                              preexec_fn=disk.preexec())
        assert full.returncode == 2, (disk.kind, full.stdout, full.stderr)
        lines = full.stderr.strip().splitlines()
        assert lines[-1].startswith(f"error: {out}: no room left to write the LMDB (the disk is full, or a "
                                    "file-size limit was reached; it needs about "), (disk.kind, full.stderr)
        assert "Traceback" not in full.stderr and "free some space and run the same command again" in lines[-1]
        assert list(disk.path.iterdir()) == []  # nothing half-written, no lock file
        disk.resize(16)
        done = subprocess.run(command, env=rosetta_cli.env(), capture_output=True, text=True, timeout=300,
                              preexec_fn=disk.preexec())
        assert done.returncode == 0, done.stderr
        assert "lmdb: 300 samples written" in done.stdout
    finally:
        disk.close()


def test_a_file_of_the_users_in_a_finished_output_is_never_deleted(tmp_path, capsys):
    """A second `data download` or `data convert` into a finished output that someone has since put a file in
    (at its top or deeper) is one sentence naming that file; the file and the output stay as they were."""
    for folder, text in (("A", "a"), ("B", "b")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{text}.txt").write_text(text)
    out = tmp_path / "OUT"
    assert main(["data", "download", str(tmp_path / "A"), str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["data", "download", str(tmp_path / "B"), str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {out / 'notes.txt'}: rosetta did not write this into the finished output {out}, and "
                   "building the output again replaces the whole folder; move it out of the folder, or give another "
                   "folder for the output\n")
    assert (out / "notes.txt").read_text() == "mine" and (out / "a.txt").read_text() == "a"
    gt = write_gt_set(tmp_path / "S", WORDS[:4])
    lmdb_out = tmp_path / "LMDB"
    args = ["data", "convert", "--format", "gt-file", str(gt / "gt.txt"), str(lmdb_out), "-o", "data.workers=1"]
    assert main(args) == 0
    (lmdb_out / "mine").mkdir()
    (lmdb_out / "mine" / "labels.csv").write_text("kept")
    capsys.readouterr()
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(f"error: {lmdb_out / 'mine'}: rosetta did not write this")
    assert (lmdb_out / "mine" / "labels.csv").read_text() == "kept" and (lmdb_out / "data.mdb").is_file()
    (lmdb_out / "mine" / "labels.csv").unlink()
    (lmdb_out / "mine").rmdir()
    assert main(args) == 0  # the output as rosetta wrote it is rebuilt as before


def test_a_bom_keeps_the_first_sample_and_unscored_labels_are_said(tmp_path, untrained_model, capsys, monkeypatch):
    """A gt file saved with a UTF-8 BOM (as Windows editors do) scores its first sample like the others; samples
    PaddleOCR's rules leave out (an empty label, one over charset.max_text_length) are counted in a line."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    labels = ["joint", "", "x" * 30, *WORDS[3:8]]
    gt = write_gt_set(tmp_path / "sets" / "S", labels) / "gt.txt"
    gt.write_bytes(b"\xef\xbb\xbf" + gt.read_bytes())
    assert main(["evaluate", "--model", str(untrained_model.onnx), "--data", str(tmp_path / "sets"),
                 "-o", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}"]) == 0
    out = capsys.readouterr().out
    assert "| S | 6 |" in out and "do not decode" not in out  # images/0.png, behind the BOM, read
    assert ("2 samples of S are not scored, as PaddleOCR leaves them out: 1 with an empty label, 1 with a label "
            "over charset.max_text_length") in out.splitlines()
