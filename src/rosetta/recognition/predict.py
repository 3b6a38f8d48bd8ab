"""``rosetta predict``: recognize word images with a checkpoint or an exported ONNX model, one line per image,
``path<TAB>text<TAB>confidence`` for people or a JSON object for programs; an unreadable file is reported and
skipped, and a reading below the abstention threshold is answered as none, flagged."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image

from rosetta.errors import RosettaError
from rosetta.recognition.model_file import load_recognizer
from rosetta_infer.preprocess import ImageDecodeError, ImageLimits, decode_image, read_image_file
from rosetta_infer.recognizer import answer

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


def prediction_line(image: Path, result: dict, as_json: bool) -> str:
    """One image's answer (``recognizer.answer``): ``path<TAB>text<TAB>0.98`` (``<TAB>abstained`` added when it
    abstained), or with ``as_json`` a JSON object with ``image``, ``text``, ``confidence``, ``abstained`` and
    ``reading``."""
    if as_json:
        return json.dumps({"image": str(image), **result, "confidence": round(result["confidence"], 4)},
                          ensure_ascii=False)
    return "\t".join([str(image), result["text"], f"{result['confidence']:.2f}",
                      *(["abstained"] if result["abstained"] else [])])


def predict_files(model: str | Path, paths: list[str], device: str = "cpu", batch_size: int = 64,
                  limits: ImageLimits | None = None, confidence: str = "mean", abstain_below: float = 0.0,
                  as_json: bool = False) -> int:
    """Print a ``prediction_line`` per readable image, an error line on stderr per other file (one over
    ``limits``, the server's, is refused before it is read or decoded); returns the number of failures."""
    files = expand_inputs(paths)
    if not files:
        raise RosettaError(f"no image found in {' '.join(paths)}; give image files or folders holding "
                           f"{', '.join(sorted(IMAGE_SUFFIXES))} files")
    recognizer = load_recognizer(model, device, batch_size, confidence=confidence)
    failed = 0
    for f, result in recognizer.read(files, lambda path: read_image(path, limits)):
        if isinstance(result, ImageDecodeError):
            print(f"error: {result}", file=sys.stderr)
            failed += 1
        else:
            print(prediction_line(f, answer(result, abstain_below), as_json), flush=True)
    return failed
