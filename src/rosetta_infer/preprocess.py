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
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rosetta_infer.errors import RosettaError
from rosetta_infer.settings import ServeSettings

MEAN = 0.5
STD = 0.5


class ImageDecodeError(RosettaError):
    """Bytes or a file that do not decode to an image; ``reason`` names why in a word, as converters count it
    (``missing``, ``not_a_file``, ``unreadable``, ``too_large``, ``empty_image``, ``undecodable``)."""

    def __init__(self, message: str, reason: str = "undecodable"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageLimits:
    """The largest image a caller may hand in (``serve.max_image_side``, ``serve.max_image_pixels``, and
    ``serve.max_request_mb`` of encoded bytes, since one image is at most a request): checked from the size and
    the header, before the pixels are decoded, so a tiny file cannot claim gigabytes. The server, ``rosetta
    predict`` and ``rosetta evaluate`` read every outside image under these."""

    max_side: int
    max_pixels: int
    max_bytes: int | None = None

    @classmethod
    def from_config(cls, serve: ServeSettings) -> ImageLimits:
        return cls(serve.max_image_side, serve.max_image_pixels, serve.max_request_mb * 2**20)

    def check_bytes(self, size: int, name: str) -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            raise ImageDecodeError(f"{name}: {size} bytes is over the limit of {self.max_bytes // 2**20} MB for one "
                                   "image (serve.max_request_mb); it is no word image: crop or compress it",
                                   "too_large")

    def check(self, width: int, height: int, name: str) -> None:
        if max(width, height) > self.max_side or width * height > self.max_pixels:
            self._refuse(f"{width}x{height} pixels", name)

    def _refuse(self, size: str, name: str) -> None:
        raise ImageDecodeError(f"{name}: {size} is over the limit of {self.max_side} pixels a side and "
                               f"{self.max_pixels} in all (serve.max_image_side, serve.max_image_pixels); crop or "
                               "downscale the word image", "too_large")


# The formats word crops come in, known by their first bytes. PIL guesses a format from dozens of plugins, some
# handing the bytes to outside programs (EPS to Ghostscript): anything else is refused before PIL sees it, and PIL
# is told the one format the bytes start as.
FORMATS = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",), "BMP": (b"BM",),
           "GIF": (b"GIF87a", b"GIF89a"), "TIFF": (b"II*\x00", b"MM\x00*"), "WEBP": (b"RIFF",)}


def image_format(data: bytes) -> str | None:
    """The format of ``FORMATS`` encoded ``data`` starts as (PIL's name for it), or None."""
    for name, magics in FORMATS.items():
        if data.startswith(magics) and (name != "WEBP" or data[8:12] == b"WEBP"):
            return name
    return None


def _open(data: bytes, name: str) -> Image.Image:
    """``Image.open`` of ``data`` by the one plugin of its format; ``ImageDecodeError`` for any other bytes."""
    fmt = image_format(data)
    if fmt is None:
        raise ImageDecodeError(f"{name}: not a readable image (its bytes start as none of {', '.join(FORMATS)}); "
                               "give a word image in one of those formats")
    return Image.open(io.BytesIO(data), formats=[fmt])


def _unreadable(name: str, exc: Exception) -> ImageDecodeError:
    # PIL names the buffer by its address ("<_io.BytesIO object at 0x7f...>"): noise that differs per call.
    detail = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc))
    return ImageDecodeError(f"{name}: not a readable image ({type(exc).__name__}: {detail})")


def decode_image(data: bytes, name: str = "image", limits: ImageLimits | None = None) -> Image.Image:
    """Decode encoded bytes of one of ``FORMATS`` to an RGB PIL image, or raise ``ImageDecodeError`` naming
    ``name``: the one image decoder of every path (training, evaluation, prediction, the server)."""
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty", "empty_image")
    if limits is not None:
        limits.check_bytes(len(data), name)
    try:
        im = _open(data, name)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        if limits is None:
            raise _unreadable(name, exc) from None
        # PIL refuses a header claiming over twice its own limit before we can read the size: say ours.
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        limits._refuse(f"{int(claimed[1])} pixels" if claimed else "its size", name)
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
        raise ImageDecodeError(f"{name}: the image has no pixels", "empty_image")
    return img


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) an image's header claims, read without decoding the pixels; None when it has none."""
    try:
        with _open(data, "image") as im:
            return im.size
    except Exception:  # not an image, or one PIL refuses outright: decoding it says why
        return None


def read_image_file(path: str | Path, name: str | None = None, limits: ImageLimits | None = None) -> bytes:
    """The bytes of an image file, refused before reading when it is no regular file (a device, a fifo) or is
    over ``limits``' byte limit; ``ImageDecodeError`` naming ``name`` (default: the path) otherwise."""
    name = name or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a fifo must not block the open
    except FileNotFoundError:
        raise ImageDecodeError(f"{name}: no such file", "missing") from None
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot be read ({exc.strerror})", "unreadable") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageDecodeError(f"{name}: not a regular file (a device, a fifo or a folder); give an image file",
                                   "not_a_file")
        if limits is not None:
            limits.check_bytes(st.st_size, name)
        try:
            data = f.read(st.st_size + 1)  # a file growing while read stops one byte past its size
        except OSError as exc:
            raise ImageDecodeError(f"{name}: cannot be read ({exc.strerror})", "unreadable") from None
    if limits is not None:
        limits.check_bytes(len(data), name)
    return data


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
