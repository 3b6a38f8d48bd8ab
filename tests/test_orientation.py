"""Tall crops (text running up or down, as in IC15): read upright and turned a quarter each way, the most
confident reading wins, the same way in ``Recognizer.recognize`` (predict, pyfunc, server) and in evaluation."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model_fixtures import BytesSample, config, png_bytes, untrained_checkpoint, word_image
from rosetta_infer.charset import Charset
from rosetta.data.dataset import LmdbDataset
from rosetta_infer.preprocess import TALL_RATIO, orientations
from rosetta.prep.lmdb_writer import write_lmdb
from rosetta.recognition.dataset import predict_dataset
from rosetta.recognition.model_file import load_recognizer
from rosetta_infer.recognizer import most_confident

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(n: int) -> list[Image.Image]:
    """Word images, every other one turned on its side (a tall crop)."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        img = word_image(["exit", "hotel", "street", "benchmark"][i % 4], rng)
        if img.width < img.height * TALL_RATIO:  # wide enough that turning it makes a tall crop
            img = img.resize((int(img.height * TALL_RATIO * 1.5), img.height))
        out.append(img.transpose(Image.Transpose.ROTATE_90) if i % 2 else img)
    return out


def test_only_a_tall_crop_is_also_read_turned_each_way():
    wide, square = Image.new("RGB", (60, 20)), Image.new("RGB", (20, 29))
    assert orientations(wide) == [wide] and orientations(square) == [square]
    img = Image.fromarray(np.arange(30 * 12 * 3, dtype=np.uint8).reshape(30, 12, 3))
    upright, up, down = orientations(img)
    assert upright is img and up.size == down.size == (30, 12)
    assert np.array_equal(np.asarray(up), np.rot90(np.asarray(img), k=-1))  # text running up reads left to right
    assert np.array_equal(np.asarray(down), np.rot90(np.asarray(img), k=1))
    assert most_confident([("a", 0.5), ("b", 0.9), ("c", 0.9)]) == ("b", 0.9)
    assert most_confident([("a", 0.7), ("b", 0.7)]) == ("a", 0.7)  # a tie keeps the upright reading


def test_recognize_and_evaluation_keep_the_most_confident_reading_of_each_tall_crop(tmp_path):
    cfg = config("model.backbone=mobilenet_v3")  # an untrained large-0.5 reads some turned views most confidently
    recognizer = load_recognizer(untrained_checkpoint(tmp_path / "best.pt", cfg), batch_size=4, threads=1)
    images = _images(9)
    assert sum(len(orientations(im)) > 1 for im in images) == 4
    # Each view read on its own, one image a batch: what the batched reading must pick from.
    expected = [most_confident([recognizer.recognize([view])[0] for view in orientations(im)]) for im in images]
    turned = [recognizer.recognize([orientations(im)[1]])[0] for im in images if len(orientations(im)) > 1]
    upright = [recognizer.recognize([im])[0] for im in images if len(orientations(im)) > 1]
    assert turned != upright  # the turned views read differently
    plain = [recognizer.recognize([im])[0] for im in images]
    assert expected != plain  # and some win: reading only upright would fail below
    got = recognizer.recognize(images)  # batches of 4 tensors: a tall crop's views never split over two
    assert [t for t, _ in got] == [t for t, _ in expected]
    np.testing.assert_allclose([c for _, c in got], [c for _, c in expected], rtol=1e-4)

    write_lmdb(tmp_path / "set", [BytesSample(f"{i}.png", "exit", png_bytes(im)) for i, im in enumerate(images)],
               workers=1)
    dataset = LmdbDataset(tmp_path / "set", Charset.from_config(cfg.charset), substitute_bad_images=False)
    by_eval = predict_dataset(recognizer, dataset)  # the recognizer's batches of 4
    assert [t for t, _ in by_eval] == [t for t, _ in got]
