"""The Paddle side of ``scripts/bench_paddle.py``: PaddleOCR's own Rosetta network (rec_mv3_none_none_ctc with a
MobileNetV3-small-0.5 backbone) trained in PaddlePaddle's dygraph on the CPU, fed synthetic batches; one JSON row.

Run by the Paddle venv's python (``make bench-paddle`` makes ``.venv-paddle``), never by the project's: Paddle is no
dependency of the project, and this file imports nothing of ``rosetta``. The network's code comes from the PaddleOCR
checkout named by ``--paddleocr``, module by module (the packages' builders import every model PaddleOCR has).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import time

# PaddleOCR's configs/rec/rec_mv3_none_none_ctc.yml, with the backbone this project trains by default.
ARCHITECTURE = {
    "Backbone": {"name": "MobileNetV3", "model_name": "small", "scale": 0.5},
    "Neck": {"name": "SequenceEncoder", "encoder_type": "reshape"},
    "Head": {"name": "CTCHead", "fc_decay": 0.0004},
}
OPTIMIZER = {"beta1": 0.9, "beta2": 0.999, "learning_rate": 5e-4}
IMAGE_SHAPE = (3, 32, 100)
NUM_CLASSES = 37  # 36 characters and the CTC blank
MAX_TEXT_LENGTH = 25  # the config's Global.max_text_length: labels are padded to it


def build_model(paddleocr: str):
    """Backbone -> neck -> head as PaddleOCR's BaseModel chains them (no transform), and its CTCLoss."""
    sys.path.insert(0, paddleocr)
    from ppocr.modeling.backbones.rec_mobilenet_v3 import MobileNetV3
    from ppocr.modeling.heads.rec_ctc_head import CTCHead
    from ppocr.modeling.necks.rnn import SequenceEncoder
    import paddle.nn as nn

    # By path: ppocr/losses/__init__.py imports every loss PaddleOCR has, and some need packages beside Paddle.
    loss_file = os.path.join(paddleocr, "ppocr", "losses", "rec_ctc_loss.py")
    spec = importlib.util.spec_from_file_location("rec_ctc_loss", loss_file)
    losses = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(losses)

    def options(part: str) -> dict:
        return {k: v for k, v in ARCHITECTURE[part].items() if k != "name"}

    backbone = MobileNetV3(in_channels=IMAGE_SHAPE[0], **options("Backbone"))
    neck = SequenceEncoder(in_channels=backbone.out_channels, **options("Neck"))
    head = CTCHead(in_channels=neck.out_channels, out_channels=NUM_CLASSES, **options("Head"))
    return nn.Sequential(backbone, neck, head), losses.CTCLoss()


def synthetic_batch(batch_size: int, seed: int = 0):
    """What rosetta's synthetic bench feeds: images in [-1, 1], labels of 3-10 characters from 1..36."""
    import numpy as np
    import paddle

    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (batch_size, *IMAGE_SHAPE)).astype("float32")
    lengths = rng.integers(3, 11, batch_size)
    labels = np.zeros((batch_size, MAX_TEXT_LENGTH), dtype="int64")
    for row, n in zip(labels, lengths):
        row[:n] = rng.integers(1, NUM_CLASSES, n)
    return paddle.to_tensor(images), [None, paddle.to_tensor(labels), paddle.to_tensor(lengths.astype("int64"))]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(paddleocr: str, threads: int, batch_size: int, steps: int, warmup: int) -> dict:
    # Paddle 2.6 has no set_num_threads: it reads OMP_NUM_THREADS once, at import (paddle.base.__bootstrap__, 1 when
    # unset), for the OpenMP its MKL and oneDNN kernels run on; MKL_NUM_THREADS would win for MKL, so both are set.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import paddle

    paddle.set_device("cpu")
    paddle.seed(0)
    model, loss_fn = build_model(paddleocr)
    model.train()
    optimizer = paddle.optimizer.Adam(parameters=model.parameters(), epsilon=1e-8,
                                      weight_decay=paddle.regularizer.L2Decay(0.0), **OPTIMIZER)
    images, batch = synthetic_batch(batch_size)

    def run(n: int) -> None:
        for _ in range(n):  # tools/program.py's train step, which reads the loss every step for its log
            loss = loss_fn(model(images), batch)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            float(loss)

    run(warmup)
    start, cpu = time.perf_counter(), _cpu_seconds()
    run(steps)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    # BatchNorm's running statistics are parameters in Paddle (not trainable); torch counts them apart, as buffers.
    trainable = sum(int(p.size) for p in model.parameters() if not p.stop_gradient)
    images_done = steps * batch_size
    return {"side": "paddle", "paddle_version": paddle.__version__, "model_params": trainable,
            "batch_size": batch_size, "steps": steps, "warmup": warmup, "threads": threads, "processes": 1,
            "images_per_s": images_done / seconds, "ms_per_image": 1000 * seconds / images_done,
            "cpu_per_wall": cpu / seconds, "use_mkldnn": paddle.get_flags(["FLAGS_use_mkldnn"])["FLAGS_use_mkldnn"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paddleocr", required=True, metavar="DIR", help="a PaddleOCR checkout (its ppocr/ package)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.paddleocr, args.threads, args.batch_size, args.steps, args.warmup)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
