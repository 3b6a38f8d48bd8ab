"""Recognition of images with any backend that maps a (N, 3, 32, W) batch to (N, T, C) probabilities.

The PyTorch checkpoint path and the ONNX Runtime path (``rosetta.onnx_runtime``) share preprocessing,
batching and CTC decoding here, so their outputs can only differ by what the backends compute;
``rosetta.predict.load_recognizer`` picks the backend for a file. Each image is preprocessed on its own
(``rosetta.data.preprocess``), so its text does not depend on the batch it is in.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image

from rosetta.charset import Charset
from rosetta.data.preprocess import ImageDecodeError, orientations, resize_norm_img
from rosetta.postprocess import CTCLabelDecode

if TYPE_CHECKING:
    import torch

ProbsFn = Callable[[np.ndarray], np.ndarray]
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Recognizer:
    probs_fn: ProbsFn
    charset: Charset
    height: int = 32
    width: int = 100
    batch_size: int = 64
    # Prepare the next images in a thread of their own while the model reads a batch (off for PyTorch:
    # ``torch_recognizer``).
    prepare_ahead: bool = True

    def batch_tensor(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([resize_norm_img(im, self.height, self.width) for im in images])

    def views(self, img: Image.Image) -> list[np.ndarray]:
        """The tensors an image is read from: one, or one per orientation of a tall crop."""
        return [resize_norm_img(im, self.height, self.width) for im in orientations(img)]

    def recognize(self, images: Iterable[Image.Image]) -> list[tuple[str, float]]:
        """``(text, confidence)`` per image, in order. A tall crop is read in each of its ``orientations`` (in
        the same batch) and keeps its most confident reading."""
        return [reading for _, reading in self.read(images, lambda img: img)]  # type: ignore[misc]

    def read(self, items: Iterable[T], load: Callable[[T], Image.Image]
             ) -> Iterator[tuple[T, tuple[str, float] | ImageDecodeError]]:
        """Each item with its ``(text, confidence)``, in order, or with the ``ImageDecodeError`` that ``load``
        (e.g. ``decode_image``) raised for it. With ``prepare_ahead`` items are loaded and preprocessed in a
        thread of their own, at most two batches ahead, while the model reads the batch before (a second thread
        measured slower: the small images' work is mostly Python's, under the GIL). An image is turned into
        its (3, 32, 100) tensors as soon as it is decoded, so reading a generator of files or requests holds
        one decoded image at a time and at most three batches of tensors, never the whole input."""
        def prepare(item: T) -> list[np.ndarray] | ImageDecodeError:
            try:
                return self.views(load(item))
            except ImageDecodeError as exc:
                return exc

        pending: list[tuple[T, list[np.ndarray] | ImageDecodeError]] = []
        tensors = 0
        prepared_items = (_ahead(prepare, items, self.batch_size) if self.prepare_ahead
                          else ((item, prepare(item)) for item in items))
        for item, prepared in prepared_items:
            pending.append((item, prepared))
            tensors += 0 if isinstance(prepared, ImageDecodeError) else len(prepared)
            if tensors >= self.batch_size:
                yield from self._decode(pending)
                pending, tensors = [], 0
        yield from self._decode(pending)

    def _decode(self, pending: list[tuple[T, list[np.ndarray] | ImageDecodeError]]
                ) -> Iterator[tuple[T, tuple[str, float] | ImageDecodeError]]:
        tensors = [t for _, views in pending if not isinstance(views, ImageDecodeError) for t in views]
        readings = CTCLabelDecode(self.charset)(self.probs_fn(np.stack(tensors))) if tensors else []
        at = 0
        for item, views in pending:
            if isinstance(views, ImageDecodeError):
                yield item, views
            else:
                yield item, most_confident(readings[at:at + len(views)])
                at += len(views)


def _ahead(fn: Callable[[T], R], items: Iterable[T], chunk: int, depth: int = 2) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in the items' order, computed in a background thread ``chunk`` items at a time (a
    task per item costs more than preparing a small image), at most ``depth`` chunks ahead of the consumer."""
    def run(part: list[T]) -> list[R]:
        return [fn(item) for item in part]

    it = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="rosetta-prepare") as pool:
        queue: deque[tuple[list[T], Future[list[R]]]] = deque()
        while True:
            while len(queue) < depth and (part := list(islice(it, chunk))):
                queue.append((part, pool.submit(run, part)))
            if not queue:
                return
            part, future = queue.popleft()
            yield from zip(part, future.result())


def most_confident(readings: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The reading with the highest confidence; the first (the upright image) on a tie."""
    return max(readings, key=lambda r: r[1])


def torch_recognizer(model: torch.nn.Module, charset: Charset, height: int, width: int, batch_size: int,
                     device: str | torch.device = "cpu") -> Recognizer:
    """A ``Recognizer`` on a PyTorch model. It prepares images in the calling thread: PyTorch's OpenMP threads
    spin between operators, and a third thread on 2 cores slows them more than it saves (measured: 13 %
    slower at batch 64), where ONNX Runtime's idle threads sleep."""
    return Recognizer(torch_probs_fn(model, device), charset, height, width, batch_size, prepare_ahead=False)


def torch_probs_fn(model: torch.nn.Module, device: str | torch.device = "cpu") -> ProbsFn:
    import torch  # here, not at the top: the ONNX path (and the MLflow pyfunc) runs without torch

    model.eval()

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run
