"""``train.nproc > 1``: relaunch ``rosetta train`` under torchrun, one process per device, and wait for it."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.layout import RunLayout
from rosetta.training.runtime import die_with_parent


def launch_torchrun(cfg: Config, resume: bool, env: dict[str, str]) -> None:
    """Run training in ``train.nproc`` processes, with ``env`` added to their environment; rank 0 writes
    the run record (``RunLayout.run_json``)."""
    out = RunLayout.from_config(cfg).train
    out.mkdir(parents=True, exist_ok=True)
    params = out / "launch_params.yaml"  # the exact params, overrides included, for every rank
    params.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(cfg.train.nproc),
           "-m", "rosetta", "train", "-c", str(params)] + ([] if resume else ["--no-resume"])
    print(f"launching {cfg.train.nproc} processes: {' '.join(cmd)}", flush=True)
    # torchrun ends (and ends its ranks) when this process dies, even by kill -9: no rank outlives the lock.
    code = subprocess.run(cmd, env={**os.environ, **env}, preexec_fn=die_with_parent).returncode
    if code != 0:
        raise RosettaError(f"distributed training with {cfg.train.nproc} processes failed (exit status {code}); "
                           "see the log above")
