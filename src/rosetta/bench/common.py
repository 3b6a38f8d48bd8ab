"""What the benchmarks share: which backbone a row measures, the training benchmark's modes and a process's peak
memory. No torch here: the ``rosetta`` command reads it to build its arguments."""
from __future__ import annotations

import resource

from rosetta.config import BACKBONE_PRESETS, BackboneConfig

# What feeds a ``rosetta bench train`` row: synthetic tensors, the LMDB loader, or the loader alone (no model).
MODES = ("synthetic", "loader", "loader_only")


def bench_backbone(configured: BackboneConfig, name: str) -> BackboneConfig:
    """What a bench row named ``name`` measures: the configured backbone where it is of that kind (so
    ``model.backbone.scale`` and the other settings in params.yaml or ``-o`` apply), else the preset."""
    preset = BACKBONE_PRESETS[name]
    return configured if type(configured) is type(preset) else preset


def peak_rss_mib() -> float:
    """This process's peak resident memory. Not ``getrusage``: Linux carries ``ru_maxrss`` over ``exec``, so a
    spawned child would report its parent's peak when that is larger."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no procfs: the closest figure
