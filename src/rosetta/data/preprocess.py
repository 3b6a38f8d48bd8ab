"""The inference contract: PaddleOCR's recognition preprocessing, applied to each image on its own: keep
ratio, bilinear resize to height 32, scale to [-1, 1], right-pad with zeros to the training width 100
(a wider word is squeezed to 100). A tall crop is read upright and turned a quarter each way
(``orientations``), and the most confident of its readings is its text.

The same function serves training, evaluation, prediction, the ONNX parity gate, the pyfunc and the HTTP
server, and ``preprocess_spec`` writes it into the ONNX metadata for any other client: an image's tensor
(so its text) never depends on its batch or backend. Images are RGB (PaddleOCR decodes BGR; trained from
scratch the order only has to be consistent, and the exported metadata records it).
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from rosetta.errors import RosettaError

MEAN = 0.5
STD = 0.5


class ImageDecodeError(RosettaError):
    """Bytes or a file that do not decode to an image."""


@dataclass(frozen=True)
class ImageLimits:
    """The largest image a caller may hand in (``serve.max_image_side``, ``serve.max_image_pixels``):
    checked from the header, before the pixels are decoded, so a tiny file cannot claim gigabytes."""

    max_side: int
    max_pixels: int

    def check(self, width: int, height: int, name: str) -> None:
        if max(width, height) > self.max_side or width * height > self.max_pixels:
            raise ImageDecodeError(f"{name}: {width}x{height} pixels is over the limit of {self.max_side} pixels a "
                                   f"side and {self.max_pixels} in all (serve.max_image_side, "
                                   "serve.max_image_pixels); crop or downscale the word image")


def _unreadable(name: str, exc: Exception) -> ImageDecodeError:
    # PIL names the buffer by its address ("<_io.BytesIO object at 0x7f...>"): noise that differs per call.
    detail = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc))
    return ImageDecodeError(f"{name}: not a readable image ({type(exc).__name__}: {detail})")


def decode_image(data: bytes, name: str = "image", limits: ImageLimits | None = None) -> Image.Image:
    """Decode encoded bytes to an RGB PIL image, or raise ``ImageDecodeError`` naming ``name``."""
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty")
    try:
        im = Image.open(io.BytesIO(data))
    except Exception as exc:  # PIL raises many types for corrupt data
        raise _unreadable(name, exc) from None
    if limits is not None:
        limits.check(im.width, im.height, name)
    try:
        im.load()
        # An RGB file (most word crops) is used as decoded: converting copies it, a third of decoding's time.
        img = im if im.mode == "RGB" else im.convert("RGB")
    except Exception as exc:
        raise _unreadable(name, exc) from None
    if img.width < 1 or img.height < 1:
        raise ImageDecodeError(f"{name}: the image has no pixels")
    return img


def resized_width(w: int, h: int, height: int, max_width: int) -> int:
    return max(1, min(max_width, int(math.ceil(height * w / h))))


def resize_norm_img(img: Image.Image, height: int = 32, width: int = 100) -> np.ndarray:
    """(3, height, width) float32 in [-1, 1], zero right-padded past the resized image."""
    w = resized_width(img.width, img.height, height, width)
    resized = img.resize((w, height), Image.BILINEAR)
    out = np.zeros((3, height, width), dtype=np.float32)
    # The same float32 operations in the same order as (pixel / 255 - MEAN) / STD, in place: no temporaries.
    view = out[:, :, :w]
    view[...] = np.asarray(resized).transpose(2, 0, 1)
    view /= 255.0
    view -= MEAN
    view /= STD
    return out


# PaddleOCR's rule (tools/infer/predict_system's crop): a crop at least this much higher than wide holds text
# running up or down, not a word on its side of one or two letters alone.
TALL_RATIO = 1.5


def is_tall(img: Image.Image) -> bool:
    return img.height >= TALL_RATIO * img.width


def orientations(img: Image.Image) -> list[Image.Image]:
    """The ways an image is read: as it is and, for a tall crop (``is_tall``), also turned a quarter each
    way (text running up, then down); the reader keeps the most confident reading, the upright one on a tie."""
    if not is_tall(img):
        return [img]
    return [img, img.transpose(Image.Transpose.ROTATE_270), img.transpose(Image.Transpose.ROTATE_90)]


def preprocess_spec(height: int, width: int) -> dict:
    """``resize_norm_img`` in words another runtime can follow; the ONNX metadata carries it."""
    return {
        "color": "RGB", "height": height, "width": width, "keep_ratio": True, "resize": "bilinear",
        "resized_width": "min(width, ceil(height * w / h))", "pad": "zeros on the right up to width",
        "per_image": "each image resized and padded on its own, never to its batch's widest",
        "normalize": "(pixel / 255 - mean) / std", "mean": MEAN, "std": STD, "layout": "NCHW float32",
    }


def contract_size(spec: dict, source: str) -> tuple[int, int]:
    """(height, width) of the inference contract a model file asks for (``preprocess_spec``'s words, from an ONNX
    file's metadata or a checkpoint), refused in one sentence when it is not the one this version implements."""
    expected = preprocess_spec(spec.get("height"), spec.get("width"))
    if spec != expected:
        differ = sorted(k for k in expected.keys() | spec.keys() if spec.get(k) != expected.get(k))
        raise RosettaError(f"{source}: the model asks for preprocessing this version does not implement "
                           f"({', '.join(differ)} differ); export or train it again with this version")
    return int(spec["height"]), int(spec["width"])
