"""Recognition of images with any backend that maps a (N, 3, 32, W) batch to (N, T, C) probabilities.

The PyTorch checkpoint path and the ONNX Runtime path (``rosetta.onnx_runtime``) share preprocessing,
batching and CTC decoding here, so their outputs can only differ by what the backends compute;
``rosetta.predict.load_recognizer`` picks the backend for a file. Each image is preprocessed on its own
(``rosetta.data.preprocess``), so its text does not depend on the batch it is in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from rosetta.charset import Charset
from rosetta.data.preprocess import orientations, resize_norm_img
from rosetta.postprocess import CTCLabelDecode

if TYPE_CHECKING:
    import torch

ProbsFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Recognizer:
    probs_fn: ProbsFn
    charset: Charset
    height: int = 32
    width: int = 100
    batch_size: int = 64

    def batch_tensor(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([resize_norm_img(im, self.height, self.width) for im in images])

    def recognize(self, images: Iterable[Image.Image]) -> list[tuple[str, float]]:
        """``(text, confidence)`` per image, in order. Images are taken one at a time, so a generator that
        decodes them keeps one decoded image and one batch of (3, 32, 100) tensors in memory. A tall crop is
        read in each of its ``orientations`` (in the same batch) and keeps its most confident reading."""
        results: list[tuple[str, float]] = []
        batch: list[np.ndarray] = []
        views: list[int] = []  # tensors in the batch per image
        for img in images:
            turned = orientations(img)
            batch += [resize_norm_img(im, self.height, self.width) for im in turned]
            views.append(len(turned))
            if len(batch) >= self.batch_size:
                results += self._decode(batch, views)
                batch, views = [], []
        return results + (self._decode(batch, views) if batch else [])

    def _decode(self, tensors: list[np.ndarray], views: list[int]) -> list[tuple[str, float]]:
        readings = CTCLabelDecode(self.charset)(self.probs_fn(np.stack(tensors)))
        out, at = [], 0
        for n in views:
            out.append(most_confident(readings[at:at + n]))
            at += n
        return out


def most_confident(readings: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The reading with the highest confidence; the first (the upright image) on a tie."""
    return max(readings, key=lambda r: r[1])


def torch_probs_fn(model: torch.nn.Module, device: str | torch.device = "cpu") -> ProbsFn:
    import torch  # here, not at the top: the ONNX path (and the MLflow pyfunc) runs without torch

    model.eval()

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run
