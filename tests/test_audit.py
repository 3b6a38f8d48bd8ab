"""``rosetta data audit``: labels corrupted on purpose come first in its ranking, the page shows their crops
offline, and the set is only read."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from model_fixtures import WORDS, BytesSample, png_bytes
from rosetta.data.dataset import LmdbDataset
from rosetta.evaluation.audit import AuditSample, Suspect, audit, count_samples, rank_suspects, set_samples
from rosetta.params import PROJECT_ROOT
from rosetta.prep.lmdb_writer import write_lmdb
from rosetta.recognition.model_file import load_recognizer
from rosetta_infer.charset import Charset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CORRUPTED = (3, 11, 17, 26, 38)  # samples whose label the test changes to another word


def _corrupted_samples(tiny_data: Path) -> list[tuple[str, str, bytes]]:
    """The 40 training images the reading model learned, as (name, label, PNG bytes), five labels changed."""
    train = LmdbDataset(tiny_data / "lmdb" / "synth" / "train", Charset())
    out = []
    for i in range(len(train)):
        image, label = train[i]
        if i in CORRUPTED:
            label = next(w for w in WORDS[i % len(WORDS) + 5:] + WORDS if w != label and len(w) > 2)
        out.append((f"images/{i}.png", label, png_bytes(image)))
    return out


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # trains the reading model
def test_audit_ranks_the_corrupted_labels_first_and_changes_nothing(tmp_path, tiny_data, reading_model, rosetta_cli):
    samples = _corrupted_samples(tiny_data)
    folder = tmp_path / "my_set"
    (folder / "images").mkdir(parents=True)
    for name, _, data in samples:
        (folder / name).write_bytes(data)
    (folder / "gt.txt").write_text("".join(f"{name}\t{label}\n" for name, label, _ in samples), encoding="utf-8")
    before = _files(folder)

    done = rosetta_cli("data", "audit", str(folder), "--model", str(reading_model), "--out", str(tmp_path / "out"),
                       "-c", str(PROJECT_ROOT / "params.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _files(folder) == before  # the data is only read
    with open(tmp_path / "out" / "audit.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    top = [row["sample"] for row in rows[:10]]
    assert {f"my_set/images/{i}.png" for i in CORRUPTED} <= set(top), rows[:10]
    first = rows[0]
    assert first["label"] != first["reading"] and float(first["confidence"]) > 0.5
    page = (tmp_path / "out" / "audit.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == len(rows)  # every crop embedded: the page works offline
    assert "http" not in page and "src=\"images/" not in page
    assert f"{len(samples)} samples" in done.stdout and "audit.html" in done.stdout

    # The same samples in an LMDB rank the same way.
    write_lmdb(tmp_path / "lmdb_set", [BytesSample(name, label, data) for name, label, data in samples], workers=1)
    recognizer = load_recognizer(reading_model, batch_size=16, threads=1, confidence="min")
    report = audit(recognizer, set_samples(tmp_path / "lmdb_set"), count_samples(tmp_path / "lmdb_set"))
    assert report.samples == count_samples(tmp_path / "lmdb_set") == len(samples)
    assert {f"lmdb_set/image-{i + 1:09d}" for i in CORRUPTED} <= {s.sample.where for s in report.suspects[:10]}


def test_a_confident_reading_far_from_its_label_ranks_first():
    def suspect(where, reading, confidence, distance):
        return Suspect(AuditSample(where, "label", lambda: None), "label", reading, confidence, distance)

    unsure = suspect("unsure", "xxxxx", 0.3, 1.0)
    near = suspect("near", "labe", 0.99, 0.2)
    sure_far = suspect("sure_far", "hotel", 0.95, 1.0)
    assert [s.sample.where for s in rank_suspects([unsure, near, sure_far])] == ["sure_far", "unsure", "near"]
