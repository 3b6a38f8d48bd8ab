"""The LMDB writer (rejects, determinism, growth), the gt-file converter and ``LmdbDataset``."""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import lmdb
import pytest
from PIL import Image

from rosetta_infer.charset import Charset
from rosetta.data.dataset import LmdbDataset
from rosetta.data.lmdb_io import find_lmdbs, open_lmdb
from rosetta.errors import RosettaError
from rosetta.prep.convert import convert_gt_file
from rosetta.prep.lmdb_writer import FileSample, write_lmdb


def _image(path: Path, fmt: str = "JPEG", size=(64, 32), color=(10, 120, 200)) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    path.write_bytes(buf.getvalue())
    return path


def _read_all(path: Path) -> dict[bytes, bytes]:
    with open_lmdb(path).begin() as txn:
        return dict(txn.cursor())


def _dtrb_create_dataset(input_path: Path, gt_file: Path, output_path: Path) -> None:
    """deep-text-recognition-benchmark's create_lmdb_dataset.py, as written there (checkValid off)."""
    def write_cache(env, cache):
        with env.begin(write=True) as txn:
            for k, v in cache.items():
                txn.put(k, v)

    os.makedirs(output_path, exist_ok=True)
    env = lmdb.open(str(output_path), map_size=1099511627776)
    cache = {}
    cnt = 1
    with open(gt_file, "r", encoding="utf-8") as data:
        datalist = data.readlines()
    for line in datalist:
        image_path, label = line.strip("\n").split("\t")
        image_path = os.path.join(input_path, image_path)
        if not os.path.exists(image_path):
            continue
        with open(image_path, "rb") as f:
            image_bin = f.read()
        cache["image-%09d".encode() % cnt] = image_bin
        cache["label-%09d".encode() % cnt] = label.encode()
        if cnt % 1000 == 0:
            write_cache(env, cache)
            cache = {}
        cnt += 1
    cache["num-samples".encode()] = str(cnt - 1).encode()
    write_cache(env, cache)
    env.close()


# --------------------------------------------------------------------------- writer


def test_writer_skips_and_counts_bad_samples(tmp_path):
    good = _image(tmp_path / "good.jpg")
    png = _image(tmp_path / "good.png", "PNG", size=(40, 20))
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "corrupt.jpg").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    samples = [FileSample(str(good), "Hello, World!"), FileSample(str(tmp_path / "empty.jpg"), "a"),
               FileSample(str(tmp_path / "corrupt.jpg"), "b"), FileSample(str(tmp_path / "nope.jpg"), "c"),
               FileSample(str(good), ""), FileSample(str(png), "ÉCOLE 42")]
    report = write_lmdb(tmp_path / "out", samples, workers=1)
    assert report["written"] == 2
    assert report["rejected"] == {"empty_image": 1, "empty_label": 1, "missing": 1, "undecodable": 1}
    assert report["rejected_total"] == 4
    items = _read_all(tmp_path / "out")
    assert items[b"num-samples"] == b"2"
    assert items[b"label-000000001"].decode() == "Hello, World!"  # stored as is: case, punctuation
    assert items[b"label-000000002"].decode() == "ÉCOLE 42"
    assert items[b"image-000000001"] == good.read_bytes()  # bytes as read, not re-encoded
    assert sorted(os.listdir(tmp_path / "out")) == [".rosetta-complete", "data.mdb", "report.json"]  # no lock.mdb


def test_writer_is_deterministic_across_runs_workers_and_map_growth(tmp_path):
    samples = [FileSample(str(_image(tmp_path / f"{i}.png", "PNG", size=(30 + i, 32), color=(i * 5, 0, 0))),
                          f"w{i}") for i in range(40)]
    # A 32 KiB map cannot hold the data: it must grow, the same way every time.
    write_lmdb(tmp_path / "a", samples, workers=1, map_size=32 << 10, batch=7)
    write_lmdb(tmp_path / "b", samples, workers=2, map_size=32 << 10, batch=7)
    a, b = (tmp_path / "a" / "data.mdb").read_bytes(), (tmp_path / "b" / "data.mdb").read_bytes()
    assert a == b
    assert len(_read_all(tmp_path / "a")) == 81
    assert not list(tmp_path.glob(".*partial*"))


def test_gt_file_converter_reads_paths_relative_to_the_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    _image(tmp_path / "imgs" / "a.jpg")
    _image(tmp_path / "imgs" / "b.jpg")
    gt = tmp_path / "gt.txt"
    gt.write_text("imgs/a.jpg\tNew York\nno tab on this line\nimgs/b.jpg\tcafé\nimgs/missing.jpg\tx\n",
                  encoding="utf-8")
    reports = convert_gt_file(gt, tmp_path / "lmdb", workers=1)
    (report,) = reports.values()
    assert report["written"] == 2 and report["rejected"] == {"bad_line": 1, "missing": 1}
    items = _read_all(tmp_path / "lmdb")
    assert [items[b"label-000000001"].decode(), items[b"label-000000002"].decode()] == ["New York", "café"]


def test_convert_never_replaces_an_output_that_is_not_ours(tmp_path, capsys):
    from rosetta.cli import main

    _image(tmp_path / "a.jpg")
    gt = tmp_path / "gt.txt"
    gt.write_text("a.jpg\thello\n", encoding="utf-8")
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    (tmp_path / "mj").mkdir()
    (tmp_path / "mj" / "annotation_train.txt").write_text("./1_hello_1.jpg 1\n")
    params = ["-o", "data.workers=1"]
    for fmt, output in (("gt-file", thesis), ("mjsynth", thesis), ("gt-file", notes)):
        capsys.readouterr()
        assert main(["data", "convert", "--format", fmt, str(gt if fmt == "gt-file" else tmp_path / "mj"),
                     str(output), *params]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {output}: ") and err.count("\n") == 1
    assert (thesis / "chapter1.tex").read_text() == "years of work" and notes.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "gt.txt", "mj", "notes.txt", "thesis"]  # none hidden
    # Our own output, and an empty folder, are replaced as before.
    (tmp_path / "empty").mkdir()
    for output in (tmp_path / "lmdb", tmp_path / "lmdb", tmp_path / "empty"):
        assert main(["data", "convert", "--format", "gt-file", str(gt), str(output), *params]) == 0
        assert len(_read_all(output)) == 3


def test_gt_file_that_is_not_utf8_is_one_sentence(tmp_path):
    _image(tmp_path / "a.jpg")
    gt = tmp_path / "gt.txt"
    gt.write_bytes("a.jpg\thello\na.jpg\tcaf\u00e9\n".encode("latin-1"))
    with pytest.raises(RosettaError, match=r"gt.txt: line 2 is not UTF-8 text; save the gt file as UTF-8"):
        convert_gt_file(gt, tmp_path / "lmdb", workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "gt.txt"]


# --------------------------------------------------------------------------- LmdbDataset


@pytest.fixture()
def two_lmdbs(tmp_path) -> Path:
    img = _image(tmp_path / "w.jpg")
    write_lmdb(tmp_path / "root" / "MJ" / "MJ_train", [FileSample(str(img), w) for w in ("Apple", "pie")], workers=1)
    write_lmdb(tmp_path / "root" / "ST", [FileSample(str(img), w) for w in ("one", "two", "three")], workers=1)
    return tmp_path / "root"


def test_dataset_concatenates_every_lmdb_below_a_folder(two_lmdbs):
    ds = LmdbDataset(two_lmdbs, Charset())
    assert len(ds) == 5
    assert [(s.name, s.num_samples, s.offset) for s in ds.sets] == [("MJ/MJ_train", 2, 0), ("ST", 3, 2)]
    assert ds.labels == ["apple", "pie", "one", "two", "three"]
    assert ds.set_of(1) == "MJ/MJ_train" and ds.set_of(4) == "ST"
    img, label = ds[3]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and label == "two"
    single = LmdbDataset(two_lmdbs / "ST", Charset())
    assert [(s.name, s.num_kept) for s in single.sets] == [("ST", 3)]


def test_dataset_reads_an_lmdb_written_the_dtrb_way(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(3):
        _image(tmp_path / "img" / f"{i}.jpg", color=(i * 60, 0, 0))
    gt = tmp_path / "gt.txt"
    gt.write_text("img/0.jpg\tShop\nimg/gone.jpg\tlost\nimg/1.jpg\tOPEN\nimg/2.jpg\t24h\n", encoding="utf-8")
    _dtrb_create_dataset(tmp_path, gt, tmp_path / "dtrb")
    ds = LmdbDataset(tmp_path / "dtrb", Charset())
    assert ds.labels == ["shop", "open", "24h"]
    img, label = ds[2]
    assert label == "24h" and img.size == (64, 32)


def test_dataset_applies_the_charset_label_rules(tmp_path):
    img = _image(tmp_path / "w.jpg")
    labels = ["Hello", "it's", "---", "a" * 26, "x" * 25, "Ümlaut"]
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 22)
    with env.begin(write=True) as txn:  # an empty label too, which our writer would refuse
        for i, label in enumerate(labels + [""], 1):
            txn.put(b"image-%09d" % i, img.read_bytes())
            txn.put(b"label-%09d" % i, label.encode())
        txn.put(b"num-samples", str(len(labels) + 1).encode())
    env.close()
    ds = LmdbDataset(tmp_path / "db", Charset())
    # Length is checked before filtering (26 a's rejected); '---' and '' have nothing left.
    assert ds.labels == ["hello", "its", "x" * 25, "mlaut"]
    assert ds.num_rejected == 3
    cased = LmdbDataset(tmp_path / "db", Charset(characters="Helo", lowercase=False))
    assert cased.labels == ["Hello", "l"]  # case kept; "Ümlaut" keeps only its l


def test_undecodable_image_is_skipped_deterministically(tmp_path):
    good = _image(tmp_path / "w.jpg").read_bytes()
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for i, (data, label) in enumerate([(good, "a"), (b"broken", "b"), (good, "c")], 1):
            txn.put(b"image-%09d" % i, data)
            txn.put(b"label-%09d" % i, label.encode())
        txn.put(b"num-samples", b"3")
    env.close()
    ds = LmdbDataset(tmp_path / "db", Charset())
    assert ds[1][1] == "c" and ds[1][1] == "c"
    assert ds.num_bad_images == 2
    assert ds[0][1] == "a"


def test_missing_dataset_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(RosettaError) as err:
        LmdbDataset(tmp_path / "nothing", Charset())
    assert f"no LMDB found under {tmp_path / 'nothing'}" in str(err.value) and "dvc repro" in str(err.value)
    with pytest.raises(RosettaError):
        find_lmdbs(tmp_path)


def test_dataset_opens_lazily_pickles_and_leaves_no_lock_file(two_lmdbs):
    ds = LmdbDataset(two_lmdbs, Charset())
    assert ds._envs is None  # nothing held open until the first sample is read
    assert ds[0][1] == "apple"
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._envs is None and clone[4][1] == "three"
    assert not list(two_lmdbs.rglob("lock.mdb"))


def test_dataset_works_in_dataloader_workers(two_lmdbs):
    torch = pytest.importorskip("torch")
    ds = LmdbDataset(two_lmdbs, Charset(), transform=lambda im: torch.tensor(im.size))
    assert ds[0][1] == "apple"  # opened in the parent first: workers must reopen, not share the handle
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    labels = [label for _, batch in loader for label in batch]
    assert labels == ["apple", "pie", "one", "two", "three"]
