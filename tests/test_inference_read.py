"""``Recognizer.read``, the path of ``rosetta predict``, the pyfunc and ``bench infer``'s end-to-end rows:
encoded images in, readings out in the input's order, a bad image answered in its place, the input taken
lazily while a background thread prepares the next images; and the answer a caller gets of a reading."""
from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from model_fixtures import config, png_bytes, untrained_checkpoint, word_image
from rosetta.recognition.model_file import load_recognizer
from rosetta_infer.preprocess import ImageDecodeError, decode_image
from rosetta_infer.recognizer import PREPARE_CHUNK, answer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("ahead", [True, False], ids=["prepared-ahead", "inline"])
def test_read_answers_every_item_in_order_and_a_bad_one_in_its_place(tmp_path, ahead):
    recognizer = replace(load_recognizer(untrained_checkpoint(tmp_path / "best.pt", config()), batch_size=4,
                                         threads=1), background=ahead)
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
def test_read_takes_its_input_lazily(tmp_path, ahead):
    recognizer = replace(load_recognizer(untrained_checkpoint(tmp_path / "best.pt", config()), batch_size=4,
                                         threads=1), background=ahead)
    blob = png_bytes(word_image("exit", np.random.default_rng(0)))
    taken = []

    def stream():
        for i in range(400):
            taken.append(i)
            yield blob

    reading = recognizer.read(stream(), decode_image)
    first = [next(reading) for _ in range(5)]  # the second batch's first reading
    assert all(not isinstance(r, ImageDecodeError) for _, r in first)
    # Ahead: the chunk being batched and at most two prepared after it; inline: the two batches read so far.
    # Never the whole stream.
    assert len(taken) <= (3 * max(4, PREPARE_CHUNK) if ahead else 2 * 4)
    reading.close()


def test_read_runs_the_model_on_the_next_batch_while_answering_one(tmp_path):
    """Two batches in the model at once (in order), so its threads do not wait while a batch is answered."""
    recognizer = load_recognizer(untrained_checkpoint(tmp_path / "best.pt", config()), batch_size=2, threads=1)
    started, release = [], threading.Event()
    probs_fn = recognizer.probs_fn

    def slow_probs(batch):
        started.append(len(batch))
        if len(started) == 1:  # the first batch waits until the second one is in the model too
            assert release.wait(30), "the second batch never reached the model while the first was running"
        elif len(started) == 2:
            release.set()
        return probs_fn(batch)

    recognizer = replace(recognizer, probs_fn=slow_probs, background=True)
    blobs = [png_bytes(word_image(w, np.random.default_rng(1))) for w in ["exit", "bus", "open", "stop", "east"]]
    out = list(recognizer.read(blobs, decode_image))
    assert [item for item, _ in out] == blobs and started == [2, 2, 1]
    inline = replace(recognizer, probs_fn=probs_fn, background=False)
    assert [r for _, r in out] == [r for _, r in inline.read(blobs, decode_image)]


def _error(data: bytes) -> ImageDecodeError:
    try:
        decode_image(data)
    except ImageDecodeError as exc:
        return exc
    raise AssertionError("decodes")


def test_an_answer_below_the_threshold_abstains_and_keeps_its_reading():
    assert answer(("joint", 0.4), 0.5) == {"text": "", "confidence": 0.4, "abstained": True, "reading": "joint"}
    assert answer(("joint", 0.5), 0.5) == {"text": "joint", "confidence": 0.5, "abstained": False, "reading": "joint"}
    assert answer(("", 0.0)) == {"text": "", "confidence": 0.0, "abstained": False, "reading": ""}  # 0.0: never
