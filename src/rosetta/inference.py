"""Recognition of images with any backend that maps a (N, 3, 32, W) batch to (N, T, C) probabilities.

The PyTorch checkpoint path and the ONNX Runtime path (``rosetta.onnx_runtime``) share preprocessing,
batching and CTC decoding here, so their outputs can only differ by what the backends compute;
``rosetta.predict.load_recognizer`` picks the backend for a file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image

from rosetta.charset import Charset
from rosetta.data.preprocess import inference_width, resize_norm_img
from rosetta.postprocess import CTCLabelDecode

if TYPE_CHECKING:
    import torch

ProbsFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Recognizer:
    probs_fn: ProbsFn
    charset: Charset
    height: int = 32
    base_width: int = 100
    batch_size: int = 64

    def batch_tensor(self, images: Sequence[Image.Image]) -> np.ndarray:
        width = inference_width(list(images), self.height, self.base_width)
        return np.stack([resize_norm_img(im, self.height, width) for im in images])

    def recognize(self, images: Sequence[Image.Image]) -> list[tuple[str, float]]:
        # Sorting by aspect ratio keeps padding small when widths vary, as predict_rec.py does.
        order = sorted(range(len(images)), key=lambda i: images[i].width / images[i].height)
        results: dict[int, tuple[str, float]] = {}
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            probs = self.probs_fn(self.batch_tensor([images[i] for i in idx]))
            for i, r in zip(idx, CTCLabelDecode(self.charset)(probs)):
                results[i] = r
        return [results[i] for i in range(len(images))]


def torch_probs_fn(model: torch.nn.Module, device: str | torch.device = "cpu") -> ProbsFn:
    import torch  # here, not at the top: the ONNX path (and the MLflow pyfunc) runs without torch

    model.eval()

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run
