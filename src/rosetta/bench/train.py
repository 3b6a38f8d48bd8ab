"""``rosetta bench train``: training throughput per backbone, fed by synthetic tensors, by the real LMDB
loader, and the loader alone, so a reader sees whether loading or compute bounds a step.

Each measurement runs in a fresh process, so its peak memory (RSS) is its own. With ``processes`` > 1 a
measurement runs that many processes at once, joined by DistributedDataParallel over gloo as ``train.nproc``
trains, and reports their images together: how well the machine's cores are used.
"""
from __future__ import annotations

import os
import resource
import socket
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from rosetta.bench.common import MODES, bench_backbone, peak_rss_mib
from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.layout import DataLayout

_LABELS = {"synthetic": "synthetic tensors", "loader": "LMDB loader", "loader_only": "loader alone (no model)"}


def _batches_from_loader(cfg: Config, data_dir: Path, batch_size: int, rank: int = 0, world_size: int = 1):
    from rosetta.data.dataset import LmdbDataset
    from rosetta.data.loader import BatchPlan, PlanSampler, RecTrainSet, Stream, train_loader
    from rosetta_infer.charset import Charset

    charset = Charset.from_config(cfg.charset)
    base = LmdbDataset(data_dir, charset)
    # The plan draws the whole group's batch; each rank takes its share of batch_size, as training does.
    plan = BatchPlan([Stream("bench", 0, len(base), batch_size * world_size)], cfg.seed, cfg.train.shuffle)
    augment = cfg.train.augment  # RecAug as training gives it to the first source, whose split is the default --data
    augment = augment if isinstance(augment, bool) else cfg.data.sources[0] in augment
    dataset = RecTrainSet(base, charset, cfg.model.image_height, cfg.model.image_width, augment)
    return iter(train_loader(dataset, PlanSampler(plan, plan.start(), rank, world_size), cfg.train.num_workers))


def _synthetic_batches(cfg: Config, batch_size: int):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, cfg.model.image_height, cfg.model.image_width, generator=g) * 2 - 1
    targets = torch.randint(1, 37, (batch_size, cfg.charset.max_text_length), generator=g)
    lengths = torch.randint(3, 11, (batch_size,), generator=g)
    while True:
        yield images, targets, lengths


def measure(cfg: Config, backbone: str, mode: str, batch_size: int, steps: int, warmup: int,
            data_dir: str | None, rank: int = 0, world_size: int = 1, port: int = 0) -> dict:
    """One measurement (run it in a fresh process): images/s over ``steps`` after ``warmup`` steps; with
    ``world_size`` > 1, this process's share as rank ``rank`` of a DDP group on 127.0.0.1:``port``."""
    from dataclasses import replace

    from rosetta.recognition.device import prepare_device
    from rosetta.training.optim import build_trainable
    from rosetta_infer.charset import Charset

    cfg = replace(cfg, model=replace(cfg.model, backbone=bench_backbone(cfg.model.backbone, backbone)))
    workers = cfg.train.num_workers if mode != "synthetic" else 0
    torch.manual_seed(cfg.seed)
    device = prepare_device(cfg.train)
    distributed = world_size > 1 and mode != "loader_only"
    if distributed:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    batches = (_synthetic_batches(cfg, batch_size) if mode == "synthetic"
               else _batches_from_loader(cfg, Path(data_dir), batch_size, rank, world_size))
    step, params = None, 0
    if mode != "loader_only":
        num_classes = Charset.from_config(cfg.charset).num_classes
        parts = build_trainable(cfg, num_classes, device, world_size if distributed else 1)
        step, params = parts.step, sum(p.numel() for p in parts.model.parameters())

    def run(source, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            batch = next(source)
            if step:
                step(*batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run(batches, warmup)
    if distributed:
        torch.distributed.barrier()  # every rank starts the clock together
    seconds = run(batches, steps)
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    del batches  # stops the loader's workers before the process exits
    images = steps * batch_size
    return {"backbone": backbone, "model_params": params, "mode": mode, "batch_size": batch_size, "steps": steps,
            "images_per_s": images / seconds, "ms_per_image": 1000 * seconds / images,
            "peak_rss_mib": peak_rss_mib(),
            "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers else 0.0,
            "threads": torch.get_num_threads(), "num_workers": workers, "device": str(device), "processes": 1}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _measure_processes(cfg: Config, backbone: str, mode: str, batch_size: int, steps: int, warmup: int,
                       data_dir: str, processes: int) -> dict:
    """``processes`` fresh processes measured at once (one DDP group); their images add up, the slowest
    sets the time, and the peak RSS is the largest process's."""
    port = _free_port()
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(measure, cfg, backbone, mode, batch_size, steps, warmup, data_dir, rank, processes,
                               port) for rank in range(processes)]
        ranks = [f.result() for f in futures]
    images = sum(r["steps"] * r["batch_size"] for r in ranks)
    seconds = max(r["steps"] * r["batch_size"] / r["images_per_s"] for r in ranks)
    return {**ranks[0], "images_per_s": images / seconds, "ms_per_image": 1000 * seconds / images,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in ranks),
            "workers_peak_rss_mib": max(r["workers_peak_rss_mib"] for r in ranks), "processes": processes}


def bench_train(cfg: Config, backbones: list[str], batch_size: int, steps: int, warmup: int = 3,
                data_dir: Path | None = None, modes: tuple[str, ...] = MODES, processes: int = 1) -> list[dict]:
    """One row per backbone and mode; ``batch_size`` is per process."""
    if data_dir is None:
        data_dir = DataLayout.from_config(cfg).lmdb(cfg.data.sources[0]) / "train"
    if any(m != "synthetic" for m in modes) and not Path(data_dir).is_dir():
        raise RosettaError(f"{data_dir}: no training LMDB to read; run `dvc repro convert` first or pass --data")
    rows = []
    for backbone in backbones:
        for mode in modes:
            # Fresh processes per measurement: the peak RSS is this measurement's alone.
            row = _measure_processes(cfg, backbone, mode, batch_size, steps, warmup, str(data_dir), processes)
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def format_row(r: dict) -> str:
    workers = f" (+ workers {r['workers_peak_rss_mib']:.0f} MiB)" if r["workers_peak_rss_mib"] > 0 else ""
    return (f"{r['backbone']:<13} {_LABELS[r['mode']]:<24} {r['images_per_s']:>8.1f} img/s {r['ms_per_image']:>7.2f} "
            f"ms/img  peak RSS {r['peak_rss_mib']:.0f} MiB{workers}  [{_params(r)}{_procs(r)}batch {r['batch_size']}, "
            f"{r['threads']} threads, {r['num_workers']} workers, {r['device']}]")


def _params(r: dict) -> str:
    return f"{r['model_params'] / 1e6:.2f} M params, " if r.get("model_params") else ""



def _procs(r: dict) -> str:
    return f"{r['processes']} processes x " if r.get("processes", 1) > 1 else ""
