"""Recognizing every sample of a labelled dataset, in order: what benchmark evaluation and validation during
training read images through."""
from __future__ import annotations

from typing import Callable

from rosetta.data.loader import EvalSet, eval_loader
from rosetta_infer.recognizer import Recognizer


def predict_dataset(recognizer: Recognizer, dataset, progress: Callable[[int], None] | None = None
                    ) -> list[tuple[str, float] | None]:
    """``(text, confidence)`` for every sample of a ``(PIL image, label)`` dataset, in order, under the
    inference contract (``rosetta_infer.preprocess``: each image on its own at the training width, as
    PaddleOCR's eval does); None for a sample whose image the dataset gives as None (it does not decode).
    A tall crop's reading is ``Recognizer.recognize``'s: the most confident of its orientations. Batches are
    the recognizer's ``batch_size``; ``progress`` is told how many samples each one read."""
    out: list[tuple[str, float] | None] = []
    tall: list[int] = []
    for images, indices, readable, is_tall in eval_loader(EvalSet(dataset, recognizer.height, recognizer.width),
                                                          recognizer.batch_size):
        texts = recognizer.decode(recognizer.probs_fn(images.numpy()))
        out += [p if ok else None for p, ok in zip(texts, readable.tolist())]
        tall += [int(i) for i, t in zip(indices, is_tall) if t]
        if progress is not None:
            progress(len(indices))
    # Few crops are tall: the recognizer reads them again in every orientation (the upright one included).
    again = recognizer.recognize(dataset[i][0] for i in tall)
    for i, reading in zip(tall, again):
        out[i] = reading
    return out
