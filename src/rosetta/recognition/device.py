"""Where a model runs: ``train.device`` resolved (evaluation and the benchmarks read it too) and the CPU's fast
paths, which change how fast a step runs, not what it computes.
"""
from __future__ import annotations

import ctypes

import torch

from rosetta.config import TrainConfig
from rosetta.errors import RosettaError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RosettaError(f"train.device is {name!r} but no CUDA device is available; use auto or cpu")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device(name)


def prepare_device(train: TrainConfig, local_rank: int = 0) -> torch.device:
    """``train.device`` resolved, with the CPU tuned (``use_cpu_fast_paths``) when that is where it runs."""
    device = resolve_device(train.device, local_rank)
    if device.type == "cpu":
        use_cpu_fast_paths(train.threads)
    return device


def use_cpu_fast_paths(threads: int = 0) -> None:
    """Settings that make CPU steps faster without changing what they compute (docs/performance.md):

    - ``threads`` intra-op threads (0 = torch's default);
    - denormals flushed to zero: MobileNetV3's small activations and gradients otherwise fall into
      denormal floats, which x86 computes far more slowly;
    - glibc keeps freed memory: by default it returns every large freed block to the OS and faults the
      pages in again at the next step, time spent in the kernel.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 2**31 - 1)
