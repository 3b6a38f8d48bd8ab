"""The real training source (``data.real_train``): gt-file sets converted with unlearnable labels dropped and a
seeded validation hold-out, never a benchmark image among them (a copy refused with both names, re-encoded
too), and mixed into training batches by share."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from model_fixtures import WORDS, write_gt_set, write_word_lmdb
from rosetta_infer.charset import Charset
from rosetta.data.lmdb_io import iter_labels, read_names
from rosetta.data.sources import describe_real_train
from rosetta.errors import RosettaError
from rosetta.layout import DataLayout
from rosetta.prep.benchmarks import write_real_manifest, convert_real_benchmarks
from rosetta.prep.real_train import convert_real_train, missing_note, write_real_train_manifest

LABELS = [*WORDS * 3, "###", "!!", "café", "Sign-up", "x" * 30]  # 37 learnable ("signup"), 4 the charset cannot learn
LEARNABLE = [i for i, label in enumerate(LABELS) if label not in ("###", "!!", "café", "x" * 30)]


def _layout_with_benchmarks(tmp_path: Path) -> tuple[DataLayout, Path]:
    """A data root with a synth test split as data.benchmarks and a real benchmark gt-file set, converted."""
    layout = DataLayout(tmp_path / "data")
    write_word_lmdb(layout.benchmarks / "synth_test", 8, seed=7)
    bench = write_gt_set(tmp_path / "benchmarks" / "BENCH_10", WORDS[:10], seed=11)
    write_real_manifest(str(bench.parent), layout.real_manifest)
    convert_real_benchmarks(layout.real_manifest, layout.real_benchmarks, workers=1)
    return layout, bench


def _convert(layout: DataLayout, sets: Path, fraction: float = 0.25, seed: int = 0) -> dict:
    write_real_train_manifest(str(sets), layout.real_train_manifest)
    return convert_real_train(layout.real_train_manifest, layout.real_train, Charset(), fraction, seed,
                              [layout.benchmarks, layout.real_benchmarks], workers=1)


def test_gt_file_sets_are_converted_with_a_seeded_holdout_and_unlearnable_labels_counted(tmp_path):
    layout, _ = _layout_with_benchmarks(tmp_path)
    sets = tmp_path / "realtrain"
    write_gt_set(sets / "A_train", LABELS, seed=1)
    write_gt_set(sets / "B_train", WORDS, seed=2)
    report = _convert(layout, sets)
    a = report["sets"]["A_train"]
    assert a["listed"] == len(LABELS)
    assert a["dropped"] == {"near_duplicate": 0, "out_of_charset": 1, "too_long": 1, "unlearnable": 2}
    assert a["written"] == {"train": 28, "val": 9}  # a quarter of the 37 learnable held out
    # Every character the charset lacks is counted, with the first label that held one, and said in one line.
    assert a["missing_characters"] == {"#": 3, "!": 2, "é": 1, "-": 1} and a["missing_example"] == "###"
    assert missing_note(a, "A_train", Charset(), None).startswith(
        "A_train: 4 of 41 labels hold characters the charset lacks (after lower-casing), which are left out of them: "
        "'#' 3, '!' 2, 'é' 1, '-' 1 (e.g. '###'); to read them, set charset.dict_path")
    assert report["sets"]["B_train"]["written"] == {"train": 9, "val": 3}
    assert json.loads((layout.real_train / "realtrain_report.json").read_text()) == report
    train, val = layout.real_train / "train" / "A_train", layout.real_train / "val" / "A_train"
    names = read_names(train) + read_names(val)
    assert sorted(names) == sorted(f"images/{i}.png" for i in LEARNABLE)
    # Fixed by the seed: converting again holds out the same words; another seed, others.
    held = read_names(val)
    _convert(layout, sets)
    assert read_names(val) == held
    _convert(layout, sets, seed=1)
    assert read_names(val) != held
    assert [label for _, label in iter_labels(train)][:3] == [LABELS[int(n.split("/")[1][:-4])] for n in read_names(train)[:3]]


def test_without_the_folder_the_conversion_says_so_in_one_line(tmp_path):
    layout, _ = _layout_with_benchmarks(tmp_path)
    missing = tmp_path / "nowhere"
    manifest = write_real_train_manifest(str(missing), layout.real_train_manifest)
    assert describe_real_train(manifest) == (f"no real training set found at {missing} (data.real_train); training "
                                             "on the other sources alone")
    convert_real_train(layout.real_train_manifest, layout.real_train, Charset(), 0.1, 0, [layout.benchmarks])
    assert not (layout.real_train / "train").exists() and (layout.real_train / "manifest.json").is_file()


@pytest.mark.parametrize("how", ["same file", "re-encoded"])
def test_a_training_image_equal_to_a_benchmark_image_is_refused_with_both_names(tmp_path, how):
    layout, bench = _layout_with_benchmarks(tmp_path)
    sets = tmp_path / "realtrain"
    write_gt_set(sets / "A_train", WORDS, seed=3)
    copied = sets / "A_train" / "images" / "5.png"
    if how == "same file":
        copied.write_bytes((bench / "images" / "4.png").read_bytes())
    else:  # the benchmark picture saved again as a JPEG, under a PNG name
        buf = io.BytesIO()
        Image.open(bench / "images" / "4.png").convert("RGB").save(buf, "JPEG", quality=80)
        copied.write_bytes(buf.getvalue())
    with pytest.raises(RosettaError) as exc:
        _convert(layout, sets)
    message = str(exc.value)
    assert f"{sets}/A_train/images/5.png" in message
    assert "BENCH_10: images/4.png" in message
    assert ("the same file" if how == "same file" else "the same picture re-encoded") in message
    assert "\n" not in message and not (layout.real_train / "train").exists()


def test_validate_refuses_a_training_lmdb_holding_a_benchmark_image_and_counts_the_check(tmp_path):
    from model_fixtures import BytesSample
    from rosetta.config import load_config
    from rosetta.params import PROJECT_ROOT
    from rosetta.prep.lmdb_writer import write_lmdb
    from rosetta.prep.validate import validate_pipeline_data

    layout, bench = _layout_with_benchmarks(tmp_path)
    write_word_lmdb(layout.lmdb("synth") / "train", 20, seed=4)
    write_word_lmdb(layout.lmdb("synth") / "val", 6, seed=5)
    sets = tmp_path / "realtrain"
    write_gt_set(sets / "A_train", WORDS * 2, seed=6)
    _convert(layout, sets)
    cfg = load_config(PROJECT_ROOT / "params.yaml", [f"data.root={layout.root}", f"data.real_train={sets}",
                                                     "data.workers=1", "data.lmdb.url=x",
                                                     "train.batch_ratio={synth: 1, real: 1, lmdb: 1}",
                                                     "data.sources=[synth, real, lmdb]"])
    write_word_lmdb(layout.lmdb("lmdb") / "train", 4, seed=8)
    validate_pipeline_data(cfg)
    metrics = json.loads((layout.reports / "data_metrics.json").read_text())
    assert metrics["overlap"]["copies"] == 0
    assert metrics["overlap"]["real"]["images"] == 24 and metrics["overlap"]["real"]["near_duplicates"] == 0
    assert metrics["overlap"]["synth"]["images"] == 26
    # A ready-made LMDB source holding a benchmark picture is refused, naming both.
    copy = (bench / "images" / "2.png").read_bytes()
    write_lmdb(layout.lmdb("lmdb") / "train", [BytesSample("x.png", "ctc", copy)], workers=1)
    with pytest.raises(RosettaError, match=r"training image .*lmdb/train image-000000001 is the same file as "
                                           r"benchmark image .*BENCH_10: images/2.png"):
        validate_pipeline_data(cfg)
    assert json.loads((layout.reports / "validation" / "overlap.json").read_text())["copies"]


@pytest.mark.slow
def test_training_mixes_real_words_into_its_batches_and_chooses_best_pt_on_them(tmp_path, monkeypatch, capsys,
                                                                               tiny_mixed_data):
    from rosetta.training.trainer import run_training
    from train_fixtures import tiny_config

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_config(tmp_path, f"data.root={tiny_mixed_data}", "data.sources=[synth, real]",
                      "train.batch_ratio={synth: 1, real: 1}", "train.source_start_step.real=3",
                      "train.augment=[real]")
    run_training(cfg)
    out = capsys.readouterr().out
    assert "step 3: real joins the batches (train.source_start_step): synth 4, real 4 a batch" in out
    assert "val accuracy" in out and "on real" in out and "(synth " in out
    metrics = json.loads((tmp_path / "runs" / "train" / "train_metrics.json").read_text())
    assert metrics["selected_on"] == "real" and "best_val_real_accuracy" in metrics
    assert "best_val_synth_accuracy" in metrics
    header = (tmp_path / "runs" / "train" / "plots" / "val_accuracy.csv").read_text().splitlines()[0]
    assert header == "step,accuracy,norm_edit_dis,synth_accuracy,real_accuracy"


REAL_BENCHMARK = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "IIIT5k_3000"  # ../shared/benchmarks


def _edits(img: Image.Image) -> dict[str, bytes]:
    """The edits a careless or hostile user makes to a benchmark image before it lands in a training set."""
    from PIL import ImageEnhance, ImageOps

    def png(im: Image.Image, fmt: str = "PNG", **options) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **options)
        return buf.getvalue()

    w, h = img.size
    dw, dh = round(0.05 * w), round(0.05 * h)
    return {"re-encoded": png(img, "JPEG", quality=75), "resized 1 px": png(img.resize((w - 1, h - 1))),
            "cropped 2 px left": png(img.crop((2, 0, w, h))), "cropped 5 %": png(img.crop((dw, dh, w - dw, h - dh))),
            "padded 4 px": png(ImageOps.expand(img, 4, fill=(255, 255, 255))),
            "padded 4 px black": png(ImageOps.expand(img, 4, fill=(0, 0, 0))),
            "contrast 0.6": png(ImageEnhance.Contrast(img).enhance(0.6)), "grayscale": png(ImageOps.grayscale(img))}


@pytest.mark.skipif(not REAL_BENCHMARK.is_dir(), reason="the real benchmark sets are not at ../shared/benchmarks")
def test_edited_copies_of_real_benchmark_images_are_named_with_their_originals(tmp_path, monkeypatch):
    """40 IIIT5k test images among 400, each edited 8 ways: the check names the benchmark image each came from,
    a re-encoded or resized copy as a copy (refused), the others as edited copies (dropped, both names reported)."""
    from rosetta.prep.overlap import find_overlaps, is_copy, prints_of

    lines = (REAL_BENCHMARK / "gt.txt").read_text(encoding="utf-8-sig").splitlines()[:400]
    files = [REAL_BENCHMARK / line.split("\t")[0] for line in lines]
    bench = prints_of([(str(f), f.read_bytes()) for f in files], workers=1, windows=True)
    edited = [(f"{kind} of {f}", data) for f in files[::10]
              for kind, data in _edits(Image.open(f).convert("RGB")).items()]
    found = {o.train: o for o in find_overlaps(prints_of(edited, workers=1), bench)}

    def same_picture(a: str, b: str) -> bool:  # IIIT5k's test set holds a few pictures twice (one logo, two crops)
        return a == b or bool(find_overlaps(prints_of([(a, Path(a).read_bytes())], workers=1),
                                            prints_of([(b, Path(b).read_bytes())], workers=1, windows=True)))

    for name, _ in edited:
        kind, source = name.split(" of ", 1)
        assert name in found and same_picture(found[name].benchmark, source), name
        assert is_copy(found[name]) or kind not in ("re-encoded", "resized 1 px"), found[name]
    # The conversion: the re-encoded copy refuses the set naming both images (above); the edited ones are dropped
    # and reported with both names.
    layout = DataLayout(tmp_path / "data")
    write_word_lmdb(layout.benchmarks / "synth_test", 8, seed=7)
    real = tmp_path / "benchmarks" / "IIIT5k_40"
    (real / "images").mkdir(parents=True)
    for f in files[:40]:
        (real / "images" / f.name).write_bytes(f.read_bytes())
    (real / "gt.txt").write_text("".join(f"images/{f.name}\tword\n" for f in files[:40]))
    write_real_manifest(str(real.parent), layout.real_manifest)
    convert_real_benchmarks(layout.real_manifest, layout.real_benchmarks, workers=1)
    sets = tmp_path / "realtrain"
    write_gt_set(sets / "A_train", WORDS, seed=3)
    (sets / "A_train" / "images" / "0.png").write_bytes(_edits(Image.open(files[0]).convert("RGB"))["cropped 5 %"])
    (sets / "A_train" / "images" / "1.png").write_bytes(_edits(Image.open(files[10]).convert("RGB"))["contrast 0.6"])
    monkeypatch.chdir(tmp_path)  # the project, as DVC runs the stage
    report = _convert(layout, sets)["sets"]["A_train"]
    pairs = {(p["train"].rsplit("/", 1)[-1], p["benchmark"].rsplit("/", 1)[-1]) for p in report["near_duplicates"]}
    assert pairs == {("0.png", files[0].name), ("1.png", files[10].name)}
    # Named relative to the project: the report, a DVC output, hashes the same in every clone and folder.
    assert all(p["benchmark"].startswith("data/") for p in report["near_duplicates"]), report["near_duplicates"]
    assert report["dropped"]["near_duplicate"] == 2
