"""``rosetta predict``: recognize word images with a checkpoint or an exported ONNX model, one line per
image as PaddleOCR's infer_rec.py prints them; an unreadable file is reported and skipped."""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from rosetta.data.preprocess import ImageDecodeError, decode_image
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


def read_image(path: Path) -> Image.Image:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot be read ({exc.strerror})") from None
    return decode_image(data, str(path))


def predict_files(model: str | Path, paths: list[str], device: str = "cpu", batch_size: int = 64) -> int:
    """Print ``path: (text, confidence)`` per readable image, an error line on stderr per other file;
    returns the number of failures."""
    files = expand_inputs(paths)
    if not files:
        raise RosettaError(f"no image found in {' '.join(paths)}")
    recognizer = load_recognizer(model, device, batch_size)
    failed = 0
    for f, result in recognizer.read(files, read_image):
        if isinstance(result, ImageDecodeError):
            print(f"error: {result}", file=sys.stderr)
            failed += 1
        else:
            print(f"{f}: {result!r}", flush=True)
    return failed
