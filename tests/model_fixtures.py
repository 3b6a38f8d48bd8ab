"""Small real inputs: word-like images in LMDBs (``tiny_data`` in conftest.py is built from them) and
checkpoints of untrained models, written with the project's own writers."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from rosetta.config import Config, load_config
from rosetta.modeling import build_model
from rosetta.params import PROJECT_ROOT
from rosetta.prep.lmdb_writer import write_lmdb
from rosetta.recognition.checkpoint import inference_entries, save_checkpoint
from rosetta_infer.charset import Charset

WORDS = ["joint", "rosetta", "ctc", "street", "42", "hotel", "paddle", "b52", "exit", "ocr", "benchmark", "a"]


class BytesSample:
    """A sample for ``write_lmdb`` from bytes in memory."""

    def __init__(self, name: str, label: str, data: bytes):
        self.name, self.label, self.data = name, label, data

    def read(self):
        from rosetta.prep.lmdb_writer import Record

        return [Record(self.name, self.label, self.data)]


# An EPS file as PIL's EpsImagePlugin would open it and hand to Ghostscript to draw.
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 32\n%%EndComments\n"
       b"newpath 0 0 moveto 100 32 lineto stroke showpage\n%%EOF\n")
REFUSED_FORMAT = ("not a readable image (its bytes start as none of PNG, JPEG, BMP, GIF, TIFF, WEBP); give a word "
                  "image in one of those formats")


def word_image(text: str, rng: np.random.Generator) -> Image.Image:
    """A noisy word image whose aspect ratio varies (wide and narrow), so batches differ in width."""
    height = int(rng.integers(24, 64))
    width = max(8, int(height * rng.uniform(0.5, 5.0)))
    bg = tuple(int(v) for v in rng.integers(120, 255, 3))
    img = Image.new("RGB", (width, height), bg)
    ImageDraw.Draw(img).text((2, height // 4), text, fill=tuple(int(v) for v in rng.integers(0, 100, 3)))
    noise = rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def write_word_lmdb(out: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        samples.append(BytesSample(f"{i}.png", word, png_bytes(word_image(word, rng))))
    write_lmdb(out, samples, workers=1)
    return out


def config(*overrides: str) -> Config:
    return load_config(PROJECT_ROOT / "params.yaml", list(overrides))


def untrained_checkpoint(path: Path, cfg: Config, seed: int = 0) -> Path:
    """Random weights with BatchNorm statistics measured on random inputs.

    Fresh BN statistics (mean 0, variance 1) let MobileNetV3's activations fade to ~1e-8, so every input
    would give the same output and a parity check would compare nothing; measured statistics keep the
    outputs input-dependent, as a trained model's are.
    """
    torch.manual_seed(seed)
    charset = Charset.from_config(cfg.charset)
    model = build_model(cfg.model, charset.num_classes)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, cfg.model.image_height, cfg.model.image_width))
    for bn in norms:
        bn.momentum = 0.1
    return save_checkpoint(path, inference_entries(model, cfg.model, charset))


def write_gt_set(folder: Path, labels: list[str], seed: int = 0) -> Path:
    """A DTRB gt-file set (``folder/gt.txt`` listing ``images/<i>.png<TAB>label``) of noisy word images."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, label in enumerate(labels):
        word_image(label or "x", rng).save(folder / "images" / f"{i}.png")
        lines.append(f"images/{i}.png\t{label}\n")
    (folder / "gt.txt").write_text("".join(lines), encoding="utf-8")
    return folder


def register_production(cfg: Config, onnx: Path, parity: dict, accuracy: float = 0.5):
    """``onnx`` registered in ``cfg``'s store from a run of its own and scored ``accuracy`` on synth_test, as the
    register stage records a version: the registry's decision (promoted when it beats ``registry.min_score``)."""
    from rosetta.registry.versions import register_and_promote
    from rosetta.tracking.store import Tracker

    tracker = Tracker(cfg)
    tracker.end()
    summary = {"sets": {"synth_test": {"accuracy": accuracy, "norm_edit_dis": accuracy, "count": 12}},
               "accuracy_total": accuracy, "accuracy_mean": accuracy, "norm_edit_dis_total": accuracy,
               "count_total": 12, "images_per_s": 1.0}
    return register_and_promote(cfg, onnx, parity, summary, tracker.run_id)
