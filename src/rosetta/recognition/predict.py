"""``rosetta predict``: recognize word images with a checkpoint or an exported ONNX model, one line per
image as PaddleOCR's infer_rec.py prints them; an unreadable file is reported and skipped."""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from rosetta.data.preprocess import ImageDecodeError, ImageLimits, decode_image, read_image_file
from rosetta.errors import RosettaError
from rosetta.recognition.model_file import load_recognizer

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def expand_inputs(paths: list[str]) -> list[Path]:
    """Files as given; a folder stands for the images directly inside it, sorted by name."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def read_image(path: Path, limits: ImageLimits | None = None) -> Image.Image:
    """The image in file ``path``; a file that is no regular file or is over ``limits`` is refused unread."""
    return decode_image(read_image_file(path, str(path), limits), str(path), limits)


def predict_files(model: str | Path, paths: list[str], device: str = "cpu", batch_size: int = 64,
                  limits: ImageLimits | None = None) -> int:
    """Print ``path: (text, confidence)`` per readable image, an error line on stderr per other file (one
    over ``limits``, the server's, is refused before it is read or decoded); returns the number of failures."""
    files = expand_inputs(paths)
    if not files:
        raise RosettaError(f"no image found in {' '.join(paths)}")
    recognizer = load_recognizer(model, device, batch_size)
    failed = 0
    for f, result in recognizer.read(files, lambda path: read_image(path, limits)):
        if isinstance(result, ImageDecodeError):
            print(f"error: {result}", file=sys.stderr)
            failed += 1
        else:
            print(f"{f}: {result!r}", flush=True)
    return failed
