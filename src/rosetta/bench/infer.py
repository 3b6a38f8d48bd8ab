"""``rosetta bench infer``: recognition speed per backbone and backend (PyTorch eager, ONNX Runtime fp32,
ONNX Runtime int8), end to end (encoded image bytes in, text out) and of the model alone, at each batch size.

The models are the configured presets with untrained weights (speed does not depend on training), exported
and quantized here; each measurement runs in a fresh process, so its peak memory (RSS) is its own.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from rosetta.bench.common import bench_backbone, peak_rss_mib
from rosetta.config import Config
from rosetta.errors import RosettaError

BACKENDS = ("pytorch", "onnx_fp32", "onnx_int8")
IMAGES = 256  # distinct images cycled through (and the first 64 calibrate BatchNorm and int8)
SCOPES = ("end_to_end", "model_only")
_LABELS = {"pytorch": "PyTorch eager", "onnx_fp32": "ONNX Runtime fp32", "onnx_int8": "ONNX Runtime int8",
           "end_to_end": "end to end", "model_only": "model only"}


def read_image_bytes(data_dir: Path, limit: int) -> list[bytes]:
    """The encoded bytes of the first ``limit`` images of the LMDB(s) below ``data_dir``, as a client sends them."""
    from rosetta.data.lmdb_io import find_lmdbs, image_key, num_samples, open_lmdb

    out: list[bytes] = []
    for path in find_lmdbs(data_dir):
        with open_lmdb(path).begin() as txn:
            for index in range(1, num_samples(txn, path) + 1):
                raw = txn.get(image_key(index))
                if raw and len(out) < limit:
                    out.append(bytes(raw))
    if not out:
        raise RosettaError(f"{data_dir}: no image to benchmark with; run `dvc repro convert` first or pass --data "
                           "an LMDB folder")
    return out


def prepare_models(cfg: Config, backbone: str, images: list[bytes], folder: Path) -> dict[str, str]:
    """An untrained ``backbone`` as a checkpoint, its ONNX export and its int8 model under ``folder``; paths
    by backend. BatchNorm statistics are measured on ``images`` first: with fresh ones the activations of a
    random MobileNetV3 fade into denormal floats, which run at another speed than a trained model's."""
    from dataclasses import replace

    import numpy as np
    import torch

    from rosetta.delivery.export import metadata_props, write_onnx
    from rosetta.delivery.int8 import quantize_int8
    from rosetta.modeling import build_model
    from rosetta.recognition.checkpoint import inference_entries, save_checkpoint
    from rosetta_infer.charset import Charset
    from rosetta_infer.preprocess import decode_image, resize_norm_img

    cfg = replace(cfg, model=replace(cfg.model, backbone=bench_backbone(cfg.model.backbone, backbone)))
    height, width = cfg.model.image_height, cfg.model.image_width
    torch.manual_seed(cfg.seed)
    charset = Charset.from_config(cfg.charset)
    model = build_model(cfg.model, charset.num_classes)
    batch = torch.from_numpy(np.stack([resize_norm_img(decode_image(b), height, width) for b in images[:64]]))
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
        bn.reset_running_stats()
        bn.momentum = None  # a plain average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(batch)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"pytorch": folder / f"{backbone}.pt", "onnx_fp32": folder / f"{backbone}.onnx",
             "onnx_int8": folder / f"{backbone}.int8.onnx"}
    save_checkpoint(paths["pytorch"], inference_entries(model, cfg.model, charset))
    write_onnx(model, metadata_props(charset, cfg.model, paths["pytorch"].name), paths["onnx_fp32"],
               cfg.export.opset, height, width)
    quantize_int8(paths["onnx_fp32"], paths["onnx_int8"], [batch[s:s + 32].numpy() for s in range(0, len(batch), 32)])
    return {k: str(v) for k, v in paths.items()}


def measure_infer(model: str, backbone: str, backend: str, scope: str, batch_size: int, threads: int,
                  data_dir: str, min_seconds: float, warmup: int = 1) -> dict:
    """One measurement (run it in a fresh process): ms per image over at least ``min_seconds`` and 3 batches,
    after ``warmup`` rounds; ``end_to_end`` reads a stream of encoded images (every image once, at least 4
    batches) as ``rosetta predict`` reads files (``Recognizer.read``: decode, resize, model, CTC decode),
    ``model_only`` runs the model on a ready batch."""
    from rosetta_infer.preprocess import decode_image

    images = read_image_bytes(Path(data_dir), IMAGES)

    if backend == "pytorch":
        import torch

        from rosetta.recognition.device import use_cpu_fast_paths
        from rosetta.recognition.model_file import load_recognizer

        use_cpu_fast_paths(threads)  # as evaluate sets the CPU up
        recognizer = load_recognizer(model, "cpu", batch_size, threads)
        used_threads = torch.get_num_threads()
    else:
        from rosetta_infer.onnx_runtime import load_onnx_recognizer

        recognizer = load_onnx_recognizer(model, batch_size, threads)
        used_threads = threads or len(os.sched_getaffinity(0))  # ONNX Runtime's 0: a thread per core
    if scope == "end_to_end":
        # A folder's worth of files read as one stream, as `rosetta predict` reads them: at least 4 batches and
        # every image once (a stream of a few images would time starting and draining the threads).
        stream = [images[i % len(images)] for i in range(max(4 * batch_size, len(images)))]

        def work(_: int) -> int:
            for _, result in recognizer.read(stream, decode_image):
                if isinstance(result, Exception):
                    raise result
            return len(stream)
    else:
        tensors = [recognizer.batch_tensor([decode_image(images[(b * batch_size + i) % len(images)])
                                            for i in range(batch_size)]) for b in range(4)]

        def work(b: int) -> int:
            recognizer.probs_fn(tensors[b % len(tensors)])
            return batch_size

    for b in range(warmup):
        work(b)
    n, start = 0, time.perf_counter()  # images read
    while n < 3 * batch_size or time.perf_counter() - start < min_seconds:
        n += work(n // batch_size)
    seconds = time.perf_counter() - start
    return {"backbone": backbone, "backend": backend, "scope": scope, "batch_size": batch_size,
            "batches": math.ceil(n / batch_size),
            "ms_per_image": 1000 * seconds / n, "images_per_s": n / seconds,
            "peak_rss_mib": peak_rss_mib(), "threads": used_threads}


def bench_infer(cfg: Config, backbones: list[str], batch_sizes: list[int], data_dir: Path, work_dir: Path,
                min_seconds: float = 2.0) -> list[dict]:
    """A row per backbone, backend, scope and batch size, each measured in a fresh process with
    ``eval.threads`` threads, printed as it comes."""
    images = read_image_bytes(data_dir, IMAGES)
    rows = []
    for backbone in backbones:
        models = prepare_models(cfg, backbone, images, work_dir)
        for backend in BACKENDS:
            for scope in SCOPES:
                for batch_size in batch_sizes:
                    row = _in_fresh_process(model=models[backend], backbone=backbone, backend=backend, scope=scope,
                                            batch_size=batch_size, threads=cfg.eval.threads, data_dir=str(data_dir),
                                            min_seconds=min_seconds)
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


def _in_fresh_process(**kwargs) -> dict:
    """``measure_infer(**kwargs)`` in a new interpreter that imports only what the backend needs (no PyTorch
    beside ONNX Runtime), so its peak RSS is the backend's own."""
    done = subprocess.run([sys.executable, "-m", "rosetta.bench.infer"], input=json.dumps(kwargs), text=True,
                          capture_output=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RosettaError(f"bench infer: the {kwargs['backend']} {kwargs['scope']} measurement at batch "
                           f"{kwargs['batch_size']} failed ({last})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def format_row(r: dict) -> str:
    return (f"{r['backbone']:<13} {_LABELS[r['backend']]:<18} {_LABELS[r['scope']]:<11} batch {r['batch_size']:>3} "
            f"{r['ms_per_image']:>8.2f} ms/img {r['images_per_s']:>8.1f} img/s  peak RSS {r['peak_rss_mib']:.0f} MiB  "
            f"[{r['threads']} threads]")


if __name__ == "__main__":
    print(json.dumps(measure_infer(**json.loads(sys.stdin.read()))))
