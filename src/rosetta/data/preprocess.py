"""PaddleOCR's recognition preprocessing: keep ratio, bilinear resize to height 32, scale to
[-1, 1], right-pad with zeros to the target width.

The same function serves training (width 100), evaluation, prediction and the ONNX parity gate,
so every path sees identical tensors. Images are RGB (PaddleOCR decodes BGR; trained from scratch
the order only has to be consistent, and the exported metadata records it).
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from rosetta.errors import RosettaError

MEAN = 0.5
STD = 0.5


class ImageDecodeError(RosettaError):
    """Bytes or a file that do not decode to an image."""


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """Decode encoded bytes to an RGB PIL image, or raise ``ImageDecodeError`` naming ``name``."""
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            img = im.convert("RGB")
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageDecodeError(f"{name}: not a readable image ({type(exc).__name__}: {exc})") from None
    if img.width < 1 or img.height < 1:
        raise ImageDecodeError(f"{name}: the image has no pixels")
    return img


def resized_width(w: int, h: int, height: int, max_width: int) -> int:
    return max(1, min(max_width, int(math.ceil(height * w / h))))


def inference_width(images: list[Image.Image], height: int = 32, base_width: int = 100) -> int:
    """Batch width as PaddleOCR's predict_rec.py picks it: the widest aspect ratio, at least base."""
    ratio = max([base_width / height] + [im.width / im.height for im in images])
    return int(math.ceil(height * ratio))


def resize_norm_img(img: Image.Image, height: int = 32, width: int = 100) -> np.ndarray:
    """(3, height, width) float32 in [-1, 1], zero right-padded past the resized image."""
    w = resized_width(img.width, img.height, height, width)
    resized = img.resize((w, height), Image.BILINEAR)
    arr = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :w] = (arr - MEAN) / STD
    return out
