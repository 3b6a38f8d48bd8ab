"""The inference contract: a ``Recognizer`` reads images with any backend that maps a (N, 3, 32, W) batch to
(N, T, C) probabilities.

The PyTorch checkpoint path and the ONNX Runtime path (``rosetta_infer.onnx_runtime``) share preprocessing,
batching and CTC decoding here, so their outputs can only differ by what the backends compute; the pipeline's
``load_recognizer`` (``rosetta.recognition.model_file``) picks the backend for a file. Each image is preprocessed on
its own (``rosetta_infer.preprocess``), so its text does not depend on the batch it is in. No torch at import: the
ONNX serving image runs this module without it.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image

from rosetta_infer.charset import Charset
from rosetta_infer.postprocess import CTCLabelDecode
from rosetta_infer.preprocess import ImageDecodeError, orientations, resize_norm_img

if TYPE_CHECKING:
    import torch

# Images prepared per task of the preparing thread, at least a batch: at batch 1 a task per image costs more than
# preparing the image (docs/performance.md).
PREPARE_CHUNK = 32
ProbsFn = Callable[[np.ndarray], np.ndarray]
T = TypeVar("T")
R = TypeVar("R")
# Items with their tensors (one per view), or the error their image raised.
_Pending = list[tuple[Any, list[np.ndarray] | ImageDecodeError]]


@dataclass
class Recognizer:
    probs_fn: ProbsFn
    charset: Charset
    height: int = 32
    width: int = 100
    batch_size: int = 64
    # Prepare the next images, and run the model on the next batch, in threads of their own while a batch is
    # answered (off for PyTorch: ``torch_recognizer``).
    background: bool = True
    confidence: str = "mean"  # the rule a word's confidence follows (``CTCLabelDecode``)

    @cached_property
    def decode(self) -> CTCLabelDecode:
        """Text and confidence (by the ``confidence`` rule) of the model's (N, T, C) probabilities."""
        return CTCLabelDecode(self.charset, self.confidence)

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
        (e.g. ``decode_image``) raised for it. With ``background`` three things overlap: items are loaded and
        preprocessed in a thread of their own (``PREPARE_CHUNK`` at a time, at most two chunks ahead; one such
        thread, as the small images' work is mostly Python's, under the GIL), the model runs
        on up to two batches at once from two more threads (the next batch's slices queue behind this one's, so
        the model's threads never wait for a batch's last slice or its CTC decoding), and the calling thread
        decodes and answers the oldest batch. An image is turned into its (3, 32, 100) tensors as soon as it is
        decoded, so reading a generator of files or requests holds one decoded image at a time and a few
        batches of tensors (two in the model, two chunks prepared), never the whole input."""
        def prepare(item: T) -> list[np.ndarray] | ImageDecodeError:
            try:
                return self.views(load(item))
            except ImageDecodeError as exc:
                return exc

        if not self.background:
            for pending in self._batches((item, prepare(item)) for item in items):
                yield from self._answers(pending, self._probs(pending))
            return
        preparer, model = self._threads
        running: deque[tuple[_Pending, Future[np.ndarray | None]]] = deque()
        for pending in self._batches(_ahead(preparer, prepare, items, max(self.batch_size, PREPARE_CHUNK))):
            running.append((pending, model.submit(self._probs, pending)))
            if len(running) == 2:
                done, probs = running.popleft()
                yield from self._answers(done, probs.result())
        while running:
            done, probs = running.popleft()
            yield from self._answers(done, probs.result())

    @cached_property
    def _threads(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        """The preparing thread and the model's two, started by the first ``read`` and kept for the next ones
        (so a one-image request does not pay for starting them); concurrent reads (the server's requests) share them,
        so no more than two batches are ever in the model at once."""
        return (ThreadPoolExecutor(1, thread_name_prefix="rosetta-prepare"),
                ThreadPoolExecutor(2, thread_name_prefix="rosetta-model"))

    def _batches(self, prepared_items: Iterable[tuple[Any, list[np.ndarray] | ImageDecodeError]]
                 ) -> Iterator[_Pending]:
        """The prepared items cut into batches of at least ``batch_size`` tensors (a tall crop's views together)."""
        pending: _Pending = []
        tensors = 0
        for item, prepared in prepared_items:
            pending.append((item, prepared))
            tensors += 0 if isinstance(prepared, ImageDecodeError) else len(prepared)
            if tensors >= self.batch_size:
                yield pending
                pending, tensors = [], 0
        if pending:
            yield pending

    def _probs(self, pending: _Pending) -> np.ndarray | None:
        tensors = [t for _, views in pending if not isinstance(views, ImageDecodeError) for t in views]
        return self.probs_fn(np.stack(tensors)) if tensors else None

    def _answers(self, pending: _Pending, probs: np.ndarray | None
                 ) -> Iterator[tuple[Any, tuple[str, float] | ImageDecodeError]]:
        readings = self.decode(probs) if probs is not None else []
        at = 0
        for item, views in pending:
            if isinstance(views, ImageDecodeError):
                yield item, views
            else:
                yield item, most_confident(readings[at:at + len(views)])
                at += len(views)


def _ahead(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], chunk: int, depth: int = 2
           ) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in the items' order, computed on ``pool`` ``chunk`` items at a time (a task per item
    costs more than preparing a small image), at most ``depth`` chunks ahead of the consumer."""
    def run(part: list[T]) -> list[R]:
        return [fn(item) for item in part]

    it = iter(items)
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


def answer(reading: tuple[str, float], abstain_below: float = 0.0) -> dict:
    """A reading as a caller gets it: ``text``, ``confidence``, ``abstained`` (the confidence is below
    ``abstain_below``: the text is then "", no answer rather than a likely wrong word) and ``reading`` (the text
    read, abstained or not, for a caller that wants it anyway)."""
    text, confidence = reading
    abstained = confidence < abstain_below
    return {"text": "" if abstained else text, "confidence": confidence, "abstained": abstained, "reading": text}


def torch_recognizer(model: torch.nn.Module, charset: Charset, height: int, width: int, batch_size: int,
                     device: str | torch.device = "cpu", confidence: str = "mean") -> Recognizer:
    """A ``Recognizer`` on a PyTorch model. It prepares images in the calling thread: PyTorch's OpenMP threads
    spin between operators, so a thread of its own beside them slows them more than it saves, where ONNX
    Runtime's idle threads sleep."""
    return Recognizer(torch_probs_fn(model, device), charset, height, width, batch_size, background=False,
                      confidence=confidence)


def torch_probs_fn(model: torch.nn.Module, device: str | torch.device = "cpu") -> ProbsFn:
    import torch  # here, not at the top: the ONNX path (and the MLflow pyfunc) runs without torch

    model.eval()

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run
