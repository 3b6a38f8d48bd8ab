"""What one request to the served model may hold, and how sure its answer must be: the ``serve`` settings the
inference package reads, as plain typed fields (``rosetta.config.ServeConfig`` adds their checks for params.yaml,
and the registered pyfunc records them in its model_config)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How a word's confidence is made of its characters' (``rosetta_infer.postprocess.CTCLabelDecode``).
ConfidenceRule = Literal["mean", "min", "geometric"]


@dataclass(frozen=True)
class ServeSettings:
    """What one request to the served model may hold, and how sure its answer must be."""

    max_image_side: int = 8192  # pixels, width or height
    max_image_pixels: int = 16_000_000  # width x height, checked before decoding
    max_request_images: int = 256
    max_request_mb: int = 32  # encoded image bytes in one request
    max_request_pixels: int = 64_000_000  # decoded pixels in one request (each image's header), what costs CPU
    precision: str = "fp32"  # the registered ONNX file served: fp32, or int8 (the export's model.int8.onnx)
    confidence: ConfidenceRule = "mean"  # a word's confidence from its characters': mean, min or geometric
    abstain_below: float = 0.0  # a reading less confident than this is answered as none (text "", abstained)
