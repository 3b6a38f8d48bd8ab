"""How training processes run: each one's rank under torchrun, none outliving its launcher, and autocast.
The device and the CPU's fast paths are ``rosetta.recognition.device``'s.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from dataclasses import dataclass

import torch

from rosetta.errors import RosettaError


@dataclass
class Dist:
    """This process's place among the training processes; rank 0 writes files and talks to MLflow."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Dist":
        """This process's place under torchrun (RANK, WORLD_SIZE, LOCAL_RANK), else a single process."""
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))


def _libc_prctl():
    try:
        return ctypes.CDLL("libc.so.6").prctl
    except (OSError, AttributeError):  # not glibc Linux: nothing to ask for
        return None


_PRCTL = _libc_prctl()  # looked up here: a preexec_fn must not load libraries between fork and exec
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, launcher_pid: int | None = None) -> None:
    """Have Linux send ``sig`` to this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``); with
    ``launcher_pid``, also now if that process has already gone (it died before this call could ask).

    Training processes use it so that none outlives the process that started it: torchrun starts each
    rank in its own session, so a ``kill -9`` of the launcher (or of torchrun) would otherwise leave ranks
    waiting forever, after the run-folder lock they trained under was released. Safe as a ``preexec_fn``.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(sig))
    if launcher_pid is not None:
        try:
            os.kill(launcher_pid, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), sig)


def autocast_context(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise RosettaError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        # torch.autocast would stop with a traceback; GPUs before Ampere have no bfloat16 arithmetic.
        raise RosettaError(f"train.precision bf16 needs a GPU with bfloat16 (Ampere or newer), and "
                           f"{torch.cuda.get_device_name(device)} has none; use fp16 there")
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
