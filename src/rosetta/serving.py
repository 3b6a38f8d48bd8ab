"""The MLflow pyfunc flavour of an exported model: images in, text and confidence out.

``mlflow.pyfunc.load_model("models:/rosetta@production").predict(frame)`` takes a DataFrame whose
``image`` column (else its first column) holds encoded image bytes, image file paths or base64 strings
(what JSON carries to ``mlflow models serve``), and runs the ONNX file logged beside it through ONNX Runtime.
"""
from __future__ import annotations

import base64
import binascii
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from rosetta.data.preprocess import decode_image
from rosetta.errors import RosettaError

ONNX_ARTIFACT = "onnx"
IMAGE_COLUMN = "image"


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except OSError:  # a base64 string is too long to be a file name
        return False


def read_images(model_input) -> list:
    """PIL images from a DataFrame column, a Series or a list of bytes, file paths or base64 strings."""
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] == 0:
            raise RosettaError("the input DataFrame has no column; put the images in a column named 'image'")
        column = model_input[IMAGE_COLUMN] if IMAGE_COLUMN in model_input else model_input.iloc[:, 0]
        values = column.tolist()
    elif isinstance(model_input, pd.Series):
        values = model_input.tolist()
    else:
        values = list(model_input)
    images = []
    for i, value in enumerate(values):
        if isinstance(value, (bytes, bytearray, memoryview)):
            images.append(decode_image(bytes(value), f"input row {i}"))
        elif isinstance(value, Path) or (isinstance(value, str) and _is_file(value)):
            images.append(decode_image(Path(value).read_bytes(), str(value)))
        elif isinstance(value, str):
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise RosettaError(f"input row {i}: {value[:60]!r} is neither an image file nor base64 image "
                                   "bytes") from None
            images.append(decode_image(data, f"input row {i}"))
        else:
            raise RosettaError(f"input row {i}: expected image bytes or a file path, got {type(value).__name__}")
    return images


def signature():
    """The pyfunc contract: an ``image`` column (bytes, paths or base64) in; ``text`` and ``confidence`` out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec(AnyType(), IMAGE_COLUMN)]),
                          outputs=Schema([ColSpec("string", "text"), ColSpec("double", "confidence")]))


class OnnxRecognizerModel(mlflow.pyfunc.PythonModel):
    """Recognizes word images with the ONNX file stored as the model's ``onnx`` artifact."""

    def load_context(self, context) -> None:
        from rosetta.onnx_runtime import load_onnx_recognizer

        self._recognizer = load_onnx_recognizer(context.artifacts[ONNX_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        results = self._recognizer.recognize(read_images(model_input))
        return pd.DataFrame({"text": [t for t, _ in results], "confidence": [c for _, c in results]})
