"""``rosetta predict``: recognize word images with a checkpoint or an exported ONNX model, one line per
image as PaddleOCR's infer_rec.py prints them; an unreadable file is reported and skipped."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from rosetta.cliutil import run_guarded
from rosetta.data.preprocess import ImageDecodeError, decode_image
from rosetta.errors import RosettaError

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
    from rosetta.inference import load_recognizer

    files = expand_inputs(paths)
    if not files:
        raise RosettaError(f"no image found in {' '.join(paths)}")
    recognizer = load_recognizer(model, device, batch_size)
    images, names, failed = [], [], 0
    for f in files:
        try:
            images.append(read_image(f))
            names.append(f)
        except ImageDecodeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    results = dict(zip(names, recognizer.recognize(images))) if images else {}
    for f in files:
        if f in results:
            text, conf = results[f]
            print(f"{f}: {(text, conf)!r}", flush=True)
    return failed


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="recognize word images",
        description="Recognize word images with a checkpoint (.pt) or an exported model (.onnx); prints "
                    "`word_1.png: ('joint', 0.9999)` per image. Exit status 1 when any file could not be read.")
    p.add_argument("--model", metavar="CHECKPOINT_OR_ONNX", required=True)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders of images")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (PyTorch checkpoints)")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=_predict_command)


def _predict_command(args: argparse.Namespace) -> int:
    def body() -> int:
        return 1 if predict_files(args.model, args.images, args.device, args.batch_size) else 0

    return run_guarded(body)
