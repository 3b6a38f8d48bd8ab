"""Recognizing every sample of a labelled dataset, in order: what benchmark evaluation and validation during
training read images through, ``Recognizer.read`` as prediction and the served model use it."""
from __future__ import annotations

from typing import Callable

from PIL import Image

from rosetta_infer.preprocess import ImageDecodeError
from rosetta_infer.recognizer import Recognizer


def predict_dataset(recognizer: Recognizer, dataset, progress: Callable[[int], None] | None = None
                    ) -> list[tuple[str, float] | None]:
    """``(text, confidence)`` for every sample of a ``(PIL image, label)`` dataset, in order, read by
    ``recognizer.read`` (the inference contract of ``rosetta_infer.preprocess``: each image on its own at the
    training width, a tall crop's reading the most confident of its orientations); None for a sample whose image
    the dataset gives as None (it does not decode). ``progress`` is told of each sample read."""
    def image(index: int) -> Image.Image:
        img = dataset[index][0]
        if img is None:
            raise ImageDecodeError(f"sample {index}: its image does not decode")
        return img

    out: list[tuple[str, float] | None] = []
    for _, reading in recognizer.read(range(len(dataset)), image):
        out.append(None if isinstance(reading, ImageDecodeError) else reading)
        if progress is not None:
            progress(1)
    return out
