"""``Recognizer.read``, the path of ``rosetta predict``, the pyfunc and ``bench infer``'s end-to-end rows:
encoded images in, readings out in the input's order, a bad image answered in its place, the input taken
lazily while a background thread prepares the next images."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model_fixtures import config, png_bytes, untrained_checkpoint, word_image
from rosetta.data.preprocess import ImageDecodeError, decode_image
from rosetta.predict import load_recognizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("ahead", [True, False], ids=["prepared-ahead", "inline"])
def test_read_answers_every_item_in_order_and_a_bad_one_in_its_place(tmp_path, ahead):
    recognizer = replace(load_recognizer(untrained_checkpoint(tmp_path / "best.pt", config()), batch_size=4,
                                         threads=1), prepare_ahead=ahead)
    rng = np.random.default_rng(5)
    blobs = [png_bytes(word_image(w, rng)) for w in ["exit", "hotel", "street", "open", "bus", "stop", "east"]]
    items = blobs[:2] + [b"not an image"] + blobs[2:5] + [b""] + blobs[5:]
    out = list(recognizer.read(items, decode_image))
    assert [item for item, _ in out] == items  # every item, once, in order
    errors = [result for _, result in out if isinstance(result, ImageDecodeError)]
    assert [str(e) for e in errors] == [str(_error(b"not an image")), "image: the file is empty"]
    readings = [result for _, result in out if not isinstance(result, ImageDecodeError)]
    # Batched with its neighbours (and errors between them), each image reads as it does alone.
    alone = [recognizer.recognize([decode_image(b)])[0] for b in blobs]
    assert [t for t, _ in readings] == [t for t, _ in alone]
    np.testing.assert_allclose([c for _, c in readings], [c for _, c in alone], rtol=1e-4)


@pytest.mark.parametrize("ahead", [True, False], ids=["prepared-ahead", "inline"])
def test_read_takes_its_input_lazily_at_most_two_batches_ahead(tmp_path, ahead):
    recognizer = replace(load_recognizer(untrained_checkpoint(tmp_path / "best.pt", config()), batch_size=4,
                                         threads=1), prepare_ahead=ahead)
    blob = png_bytes(word_image("exit", np.random.default_rng(0)))
    taken = []

    def stream():
        for i in range(200):
            taken.append(i)
            yield blob

    reading = recognizer.read(stream(), decode_image)
    first = [next(reading) for _ in range(5)]  # the second batch's first reading
    assert all(not isinstance(r, ImageDecodeError) for _, r in first)
    assert len(taken) <= 3 * 4  # the batch being read and at most two prepared ahead, not the whole stream
    reading.close()


def _error(data: bytes) -> ImageDecodeError:
    try:
        decode_image(data)
    except ImageDecodeError as exc:
        return exc
    raise AssertionError("decodes")
