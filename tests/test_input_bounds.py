"""Inputs are bounded wherever images come from outside: ``predict`` refuses a device, a fifo, a file over the byte
limit and a header claiming too many pixels before reading or decoding them; ``evaluate`` scores such an image as
unreadable; a request to the server decodes at most ``serve.max_request_pixels``; a decompression bomb gets the
project's limit sentence."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from model_fixtures import EPS, REFUSED_FORMAT, WORDS, config, png_bytes, word_image, write_gt_set
from rosetta.cli import main
from rosetta.evaluation.evaluate import evaluate_benchmarks
from rosetta_infer.onnx_runtime import load_onnx_recognizer
from rosetta_infer.preprocess import ImageDecodeError, ImageLimits, decode_image
from rosetta_infer.pyfunc import recognize_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few dozen bytes (no pixel data follows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


@pytest.fixture
def no_eps_plugin(monkeypatch):
    """PIL's EPS plugin fails the test if it is ever asked to open bytes, whether or not Ghostscript is here."""
    from PIL import EpsImagePlugin

    def opened(self):
        raise AssertionError("PIL's EPS plugin (Ghostscript) was handed the bytes")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", opened)


def _big_png(path: Path, side: int) -> Path:
    """A real PNG of ``side`` x ``side`` white pixels: a small file that decodes to side^2 x 3 bytes."""
    Image.new("L", (side, side), 255).save(path, optimize=True)
    return path


def test_predict_reads_no_file_beyond_the_limits(tmp_path, untrained_model, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(word_image("joint", np.random.default_rng(0))))
    huge = _big_png(tmp_path / "huge.png", 12000)  # 140 KB on disk, 432 MB decoded
    assert huge.stat().st_size < 200_000
    sparse = tmp_path / "sparse.png"
    with open(sparse, "wb") as f:
        f.truncate(10 * 2**30)  # 10 GB that take no disk: must never be read
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)  # no writer: an open that waits for one would hang here
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(30000, 30000))
    files = [good, huge, Path("/dev/zero"), sparse, fifo, bomb]
    assert main(["predict", "--model", str(untrained_model.onnx), *map(str, files)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{good}\t") and out.count("\n") == 1
    lines = err.strip().splitlines()
    assert lines == [
        f"error: {huge}: 12000x12000 pixels is over the limit of 8192 pixels a side and 16000000 in all "
        "(serve.max_image_side, serve.max_image_pixels); crop or downscale the word image",
        "error: /dev/zero: not a regular file (a device, a fifo or a folder); give an image file",
        f"error: {sparse}: {10 * 2**30} bytes is over the limit of 32 MB for one image (serve.max_request_mb); it "
        "is no word image: crop or compress it",
        f"error: {fifo}: not a regular file (a device, a fifo or a folder); give an image file",
        f"error: {bomb}: 900000000 pixels is over the limit of 8192 pixels a side and 16000000 in all "
        "(serve.max_image_side, serve.max_image_pixels); crop or downscale the word image"]


def test_evaluate_scores_an_image_over_the_limits_as_unreadable(tmp_path, untrained_model, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sets = tmp_path / "sets"
    write_gt_set(sets / "S", WORDS[:6])
    _big_png(sets / "S" / "images" / "0.png", 12000)
    (sets / "S" / "images" / "1.png").write_bytes(_png_header(30000, 30000))
    summary = evaluate_benchmarks(untrained_model.onnx, sets, config(f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"))
    assert summary["sets"]["S"]["count"] == 6 and summary["unreadable"] == {"S": 2}


def test_a_request_decodes_at_most_its_pixel_budget(untrained_model):
    serve = config("serve.max_image_pixels=4000000", "serve.max_request_pixels=8000000").serve
    rows = [png_bytes(Image.new("L", (2000, 1000), 255))] * 5 + [png_bytes(word_image("joint", np.random.default_rng(1)))]
    got = recognize_rows(load_onnx_recognizer(untrained_model.onnx, batch_size=4), rows, serve)
    # Four images of 2 M pixels fill 8 M; the fifth and all after it are refused unread, whatever their size.
    assert got["error"][:4].tolist() == [""] * 4
    for row in (4, 5):
        assert got["error"][row] == (f"row {row}: the request's images pass 8000000 pixels (serve.max_request_pixels); "
                                     "send the rest in another request")
    assert got["text"][4:].tolist() == ["", ""]
    assert isinstance(got, pd.DataFrame)


def test_a_decompression_bomb_gets_the_limit_sentence():
    limits = ImageLimits(8192, 16_000_000)
    with pytest.raises(ImageDecodeError) as refused:
        decode_image(_png_header(30000, 30000), "row 0", limits)
    assert str(refused.value) == ("row 0: 900000000 pixels is over the limit of 8192 pixels a side and 16000000 in "
                                  "all (serve.max_image_side, serve.max_image_pixels); crop or downscale the word image")
    assert refused.value.reason == "too_large"


def test_eps_bytes_reach_no_pil_plugin_in_predict_or_evaluate(tmp_path, untrained_model, no_eps_plugin, capsys,
                                                             monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    eps = tmp_path / "word.png"  # a name says nothing: the bytes decide
    eps.write_bytes(EPS)
    assert main(["predict", "--model", str(untrained_model.onnx), str(eps)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {eps}: {REFUSED_FORMAT}"
    sets = tmp_path / "sets"
    write_gt_set(sets / "S", WORDS[:4])
    (sets / "S" / "images" / "0.png").write_bytes(EPS)
    summary = evaluate_benchmarks(untrained_model.onnx, sets, config(f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"))
    assert summary["sets"]["S"]["count"] == 4 and summary["unreadable"] == {"S": 1}
    with pytest.raises(ImageDecodeError, match=r"^row 0: not a readable image \(its bytes start as none of"):
        decode_image(EPS, "row 0")
