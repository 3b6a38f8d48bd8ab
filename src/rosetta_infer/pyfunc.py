"""The MLflow pyfunc model of an exported model: image bytes in, one row of text, confidence, abstention and error
out.

``mlflow.pyfunc.load_model("models:/rosetta@production").predict(frame)`` and ``mlflow models serve`` take a
column ``image`` of encoded image bytes (in JSON, base64 strings: the signature's binary column makes MLflow
decode them) and nothing else; a string is never opened as a file, so an HTTP caller cannot make the server
read its files. A row that is no usable image gets one sentence in ``error`` (and an empty text); the other
rows are read. A reading less confident than ``serve.abstain_below`` (its confidence by the rule
``serve.confidence``) has an empty ``text`` and ``abstained`` true, its text kept in ``reading``. The settings
(``serve.*``) travel in the model's ``model_config``; the ONNX file logged beside
the model runs through ONNX Runtime under the inference contract of ``rosetta_infer.preprocess``. Served by
``rosetta serve``, each row also names the registered model, version and alias it came from.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from PIL import Image, ImageDraw

from rosetta_infer.errors import RosettaError
from rosetta_infer.preprocess import ImageDecodeError, ImageLimits, decode_image, header_size
from rosetta_infer.recognizer import Recognizer, answer
from rosetta_infer.settings import ServeSettings

ONNX_ARTIFACT = "onnx"
ONNX_INT8_ARTIFACT = "onnx_int8"  # the export's int8 model, when it made one; serve.precision picks
IMAGE_COLUMN = "image"
# Set by `rosetta serve` (rosetta.delivery.http_server) to the version it serves: {"name", "version", "alias"}. A
# model cannot know its own registry version (it is logged before it is registered), so the server tells it.
SERVED_MODEL_ENV = "ROSETTA_SERVED_MODEL"
SERVED_COLUMNS = {"name": "model_name", "version": "model_version", "alias": "model_alias"}


def code_path() -> str:
    """The folder a registered model ships as its code (MLflow's ``code_paths``): this package alone, which imports
    nothing of ``rosetta``. A package of its own name, not a part of ``rosetta``: MLflow puts a loaded model's code
    folder first on ``sys.path``, where a partial ``rosetta`` would hide the installed one from a process that
    loads a model before importing ``rosetta``."""
    return str(Path(__file__).parent)


def image_values(model_input) -> list:
    """The cells of the ``image`` column (else the first column) of a DataFrame, a Series or a list."""
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] == 0:
            raise RosettaError("the input DataFrame has no column; put the images in a column named 'image'")
        column = model_input[IMAGE_COLUMN] if IMAGE_COLUMN in model_input else model_input.iloc[:, 0]
        return column.tolist()
    if isinstance(model_input, pd.Series):
        return model_input.tolist()
    return list(model_input)


def row_bytes(row: int, value) -> bytes:
    """The encoded image a cell holds; a string (a path, or base64 that MLflow did not decode) is refused."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        raise ImageDecodeError(f"row {row}: a string, not image bytes; send the image file's bytes (base64 in "
                               f"JSON, in the binary column {IMAGE_COLUMN!r}); file paths are never opened")
    kind = "nothing" if value is None else f"a {type(value).__name__}"
    raise ImageDecodeError(f"row {row}: {kind}, not image bytes; send the image file's bytes")


def recognize_rows(recognizer: Recognizer, values: list, serve: ServeSettings) -> pd.DataFrame:
    """``text``, ``confidence``, ``abstained``, ``reading`` (``recognizer.answer``, below ``serve.abstain_below``)
    and ``error`` per cell of ``values``; a bad cell never stops the others.

    Images are decoded one at a time as the recognizer batches them (``Recognizer.read``), so a request holds
    one decoded image (at most ``serve.max_image_pixels``) and a few batches of (3, 32, 100) tensors (two in
    the model, two chunks prepared ahead) beside its encoded bytes; it decodes at most
    ``serve.max_request_pixels`` in all (read from the headers first), which bounds its CPU time.
    """
    limits = ImageLimits.from_config(serve)
    budget = serve.max_request_mb * 2**20
    errors = [""] * len(values)

    def cells():
        used = pixels = 0
        for row, value in enumerate(values):
            try:
                if row >= serve.max_request_images:
                    raise ImageDecodeError(f"row {row}: a request holds at most {serve.max_request_images} images "
                                           "(serve.max_request_images); send the rest in another request")
                data = row_bytes(row, value)
                used += len(data)
                if used > budget:
                    raise ImageDecodeError(f"row {row}: the request's images pass {serve.max_request_mb} MB "
                                           "(serve.max_request_mb); send the rest in another request")
                # Decoding costs by the pixel, whatever the bytes: a few KB of PNG can hold 16 M pixels. An image
                # over the per-image limits is refused unread, so it costs nothing here.
                size = header_size(data)
                if size is not None and max(size) <= limits.max_side and size[0] * size[1] <= limits.max_pixels:
                    pixels += size[0] * size[1]
                if pixels > serve.max_request_pixels:
                    raise ImageDecodeError(f"row {row}: the request's images pass {serve.max_request_pixels} pixels "
                                           "(serve.max_request_pixels); send the rest in another request")
            except ImageDecodeError as exc:
                errors[row] = str(exc)
                continue
            yield row, data

    answers = [answer(("", 0.0))] * len(values)
    for (row, _), result in recognizer.read(cells(), lambda cell: decode_image(cell[1], f"row {cell[0]}", limits)):
        if isinstance(result, ImageDecodeError):
            errors[row] = str(result)
        else:
            answers[row] = answer(result, serve.abstain_below)
    return pd.DataFrame(answers, columns=["text", "confidence", "abstained", "reading"]).assign(error=errors)


def signature():
    """The pyfunc contract: a binary ``image`` column in; ``text``, ``confidence``, ``abstained``, ``reading`` and
    ``error`` out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
                          outputs=Schema([ColSpec("string", "text"), ColSpec("double", "confidence"),
                                          ColSpec("boolean", "abstained"), ColSpec("string", "reading"),
                                          ColSpec("string", "error"),
                                          *(ColSpec("string", c, required=False) for c in SERVED_COLUMNS.values())]))


def input_example() -> pd.DataFrame:
    """One small PNG of a word: MLflow stores it (``serving_input_example.json``) and checks the model reads it."""
    img = Image.new("RGB", (100, 32), "white")
    ImageDraw.Draw(img).text((8, 10), "rosetta", fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return pd.DataFrame({IMAGE_COLUMN: [buf.getvalue()]})


class OnnxRecognizerModel(mlflow.pyfunc.PythonModel):
    """Recognizes word images with the ONNX file stored as the model's ``onnx`` artifact."""

    def load_context(self, context) -> None:
        from rosetta_infer.onnx_runtime import load_onnx_recognizer

        self._serve = ServeSettings(**(context.model_config or {}))
        artifact = ONNX_INT8_ARTIFACT if self._serve.precision == "int8" else ONNX_ARTIFACT
        if artifact not in context.artifacts:
            raise RosettaError("serve.precision is int8 but this registered model holds no int8 ONNX file; export "
                               "with export.int8: true and register again, or serve fp32")
        self._recognizer = load_onnx_recognizer(context.artifacts[artifact], confidence=self._serve.confidence)
        served = json.loads(os.environ.get(SERVED_MODEL_ENV) or "{}")
        self._served = {column: str(served.get(key, "")) for key, column in SERVED_COLUMNS.items()} if served else {}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return recognize_rows(self._recognizer, image_values(model_input), self._serve).assign(**self._served)
