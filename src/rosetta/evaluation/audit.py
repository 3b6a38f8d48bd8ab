"""``rosetta data audit``: the likely label errors of a labelled set, the samples a model reads as something else
with confidence, ranked and written as a TSV and an offline HTML page of the crops. The data is only read: a
person decides what to fix (docTR #1284's "which of my labels are wrong?")."""
from __future__ import annotations

import base64
import csv
import html
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from rosetta.data.lmdb_io import image_key, iter_labels, num_samples, open_lmdb
from rosetta_infer.preprocess import ImageDecodeError, ImageLimits, decode_image, read_image_file
from rosetta.errors import RosettaError
from rosetta.evaluation.metrics import normalized_edit_distance
from rosetta.prep.convert import GT_FILE, find_benchmark_sets, gt_samples
from rosetta.prep.lmdb_writer import FileSample
from rosetta_infer.recognizer import Recognizer

THUMB_HEIGHT = 48  # pixels of a crop on the page: small enough for hundreds of rows in one file


@dataclass(frozen=True)
class AuditSample:
    """A sample of a set: where it is (``<set>/<image path>`` of a gt file, ``<set>/image-000000042`` of an
    LMDB), its label as stored, and how to read its image."""

    where: str
    label: str
    load: Callable[[], Image.Image]


@dataclass(frozen=True)
class Suspect:
    """A sample the model reads otherwise: the label as the model is trained on it (``sample.label`` is the label as
    stored, what a person fixes), and the reading."""

    sample: AuditSample
    label: str
    reading: str
    confidence: float
    distance: float  # normalized edit distance between the label and the reading, in (0, 1]

    @property
    def score(self) -> float:
        """How likely the label is wrong: a confident reading far from the label first. A confident reading is
        rarely wrong, so a reading both sure and far from the label points at the label."""
        return self.confidence * self.distance


def rank_suspects(suspects: list[Suspect]) -> list[Suspect]:
    """Highest ``score`` first; on a tie the more confident reading, then the set's order."""
    order = sorted(range(len(suspects)), key=lambda i: (-suspects[i].score, -suspects[i].confidence, i))
    return [suspects[i] for i in order]


def set_samples(root: str | Path, limits: ImageLimits | None = None) -> Iterator[AuditSample]:
    """Every sample of the sets at or below ``root`` (gt-file sets and LMDBs, ``find_benchmark_sets``), in order. A
    gt-file line that cannot name an image of its set is skipped (``rosetta data convert`` reports those)."""
    sets = find_benchmark_sets(root)
    if not sets:
        raise RosettaError(f"{root}: no set there (a folder holding gt.txt, or an LMDB folder holding data.mdb); "
                           "give a set folder or a folder of sets")
    for name, (kind, folder) in sets.items():
        if kind == "gt-file":
            for sample in gt_samples(folder / GT_FILE, limits):
                if isinstance(sample, FileSample):
                    yield AuditSample(f"{name}/{sample.name}", sample.label, _file_loader(sample, limits))
        else:
            env = open_lmdb(folder)
            for index, label in iter_labels(folder):
                where = f"{name}/{image_key(index).decode()}"
                yield AuditSample(where, label, _lmdb_loader(env, index, where, limits))


def count_samples(root: str | Path) -> int:
    """How many samples ``set_samples`` goes through at most (the gt files' lines, the LMDBs' counts): the
    progress bar's total, known before an image is read."""
    total = 0
    for kind, folder in find_benchmark_sets(root).values():
        if kind == "gt-file":
            with open(folder / GT_FILE, "rb") as f:
                total += sum(1 for line in f if line.strip())
        else:
            with open_lmdb(folder).begin() as txn:
                total += num_samples(txn, folder)
    return total


def _file_loader(sample: FileSample, limits: ImageLimits | None) -> Callable[[], Image.Image]:
    return lambda: decode_image(read_image_file(sample.path, sample.name, limits), sample.name, limits)


def _lmdb_loader(env, index: int, where: str, limits: ImageLimits | None) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        with env.begin() as txn:
            data = txn.get(image_key(index))
        if data is None:
            raise ImageDecodeError(f"{where}: no image stored for this label", "missing")
        return decode_image(data, where, limits)

    return load


@dataclass
class AuditReport:
    suspects: list[Suspect]  # ranked
    samples: int = 0
    agreed: int = 0  # read as labelled
    unlearnable: int = 0  # labels the charset rejects (empty, too long, no character it reads): not compared
    unreadable: int = 0  # images that do not decode


def audit(recognizer: Recognizer, samples: Iterator[AuditSample], total: int | None = None) -> AuditReport:
    """Read every sample with ``recognizer`` and keep the ones read otherwise than their label (after the model's
    charset rules: a label is compared as the model is trained on it), ranked by ``Suspect.score``; a progress
    bar on stderr over ``total`` samples."""
    from tqdm import tqdm

    report = AuditReport([])
    bar = tqdm(total=total, desc="audit", unit=" images", file=sys.stderr,
               mininterval=0.5 if sys.stderr.isatty() else 10.0)

    def comparable() -> Iterator[tuple[AuditSample, str]]:
        for sample in samples:
            report.samples += 1
            label = recognizer.charset.normalize(sample.label)
            if label is None:
                report.unlearnable += 1
                bar.update(1)
            else:
                yield sample, label

    with bar:
        for (sample, label), result in recognizer.read(comparable(), lambda item: item[0].load()):
            bar.update(1)
            if isinstance(result, ImageDecodeError):
                report.unreadable += 1
            elif result[0] == label:
                report.agreed += 1
            else:
                report.suspects.append(Suspect(sample, label, *result, normalized_edit_distance(result[0], label)))
    report.suspects = rank_suspects(report.suspects)
    return report


TSV_COLUMNS = ("rank", "score", "confidence", "distance", "sample", "label", "reading")


def write_tsv(suspects: list[Suspect], path: Path) -> Path:
    """The ranked suspects, one per line under a header (``TSV_COLUMNS``; the label as stored)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        out.writerow(TSV_COLUMNS)
        for rank, s in enumerate(suspects, 1):
            out.writerow([rank, f"{s.score:.4f}", f"{s.confidence:.4f}", f"{s.distance:.4f}", s.sample.where,
                          s.sample.label, s.reading])
    return path


def _data_uri(image: Image.Image) -> str:
    thumb = image.resize((max(1, round(image.width * THUMB_HEIGHT / image.height)), THUMB_HEIGHT))
    buf = io.BytesIO()
    thumb.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_html(suspects: list[Suspect], path: Path, title: str) -> Path:
    """A page of the ranked suspects, each crop (embedded: the page works offline and alone) beside its label and
    the reading; a crop that no longer decodes shows its error instead."""
    rows = []
    for rank, s in enumerate(suspects, 1):
        try:
            crop = f'<img src="{_data_uri(s.sample.load())}" alt="{html.escape(s.sample.where)}">'
        except ImageDecodeError as exc:
            crop = html.escape(str(exc))
        rows.append(f"<tr><td>{rank}</td><td>{crop}</td><td class=t>{html.escape(s.sample.label)}</td>"
                    f"<td class=t>{html.escape(s.reading)}</td><td>{s.confidence:.3f}</td><td>{s.score:.3f}</td>"
                    f"<td>{html.escape(s.sample.where)}</td></tr>")
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} td{{padding:4px 8px;border-bottom:1px solid #ddd}}
.t{{font-family:monospace;font-size:1.2em;white-space:pre}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Samples the model reads otherwise than their label, a confident reading far from the label first: check the
label against the crop. Nothing was changed in the data.</p>
<table><tr><th>rank</th><th>crop</th><th>label</th><th>reading</th><th>confidence</th><th>score</th><th>sample</th></tr>
{chr(10).join(rows)}
</table></body></html>
""", encoding="utf-8")
    return path
