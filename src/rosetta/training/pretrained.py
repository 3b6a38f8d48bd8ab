"""``train.init_from`` (PaddleOCR's ``Global.pretrained_model``): start training from the weights of a trained
model, a checkpoint file or a registered version (``models:/<name>@<alias>`` or ``models:/<name>/<version>``),
not from its optimizer or data position. A registered version is an ONNX file; its weights come from the
checkpoint its training run logged (``checkpoints/best.pt``).
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rosetta.charset import Charset
from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.fsutil import sha256_file
from rosetta.params import project_path
from rosetta.recognition.checkpoint import checkpoint_architecture, load_checkpoint

CHECKPOINT_ARTIFACT = "checkpoints/best.pt"  # where the training run logs its best checkpoint


@dataclass(frozen=True)
class Pretrained:
    """The weights to start from and what they are, for the log and the resume fingerprint."""

    source: str  # train.init_from as given
    description: str  # e.g. "models:/rosetta@production (v3, run abc)"
    sha256: str  # of the checkpoint file: a changed source is another run
    checkpoint: dict


def _registered_checkpoint(cfg: Config, uri: str, folder: Path) -> tuple[Path, str]:
    """The checkpoint the training run of registered version ``uri`` logged, downloaded into ``folder``."""
    from mlflow.exceptions import MlflowException

    from rosetta.tracking.registered import registry_client, resolve_version

    mv = resolve_version(cfg, uri, "train.init_from")
    client = registry_client(cfg)
    run = client.get_run(mv.run_id)
    train_run = run.data.tags.get("mlflow.parentRunId", mv.run_id)
    try:
        path = Path(client.download_artifacts(train_run, CHECKPOINT_ARTIFACT, str(folder)))
    except (MlflowException, OSError):
        raise RosettaError(f"train.init_from: {uri} (v{mv.version}) has no {CHECKPOINT_ARTIFACT} in its training run "
                           f"{train_run}; point init_from at the checkpoint file instead") from None
    return path, f"{uri} (v{mv.version}, training run {train_run})"


def load_pretrained(cfg: Config) -> Pretrained | None:
    """The checkpoint ``train.init_from`` names, read and checked to fit the configured model; None when unset.

    Refused in one sentence: a missing file, an unknown registered model, a file inside ``train.out_dir`` (a new
    run clears that folder), another backbone or another charset."""
    source = cfg.train.init_from
    if not source:
        return None
    with tempfile.TemporaryDirectory(prefix="rosetta-init-") as tmp:
        if source.startswith("models:/"):
            path, description = _registered_checkpoint(cfg, source, Path(tmp))
        else:
            path, description = project_path(source), source
            out_dir = project_path(cfg.train.out_dir).resolve()
            if path.resolve().is_relative_to(out_dir):
                raise RosettaError(f"train.init_from: {source} is inside train.out_dir {cfg.train.out_dir}, which a "
                                   "new run clears; copy it elsewhere or train into another train.out_dir")
            if not path.is_file():
                raise RosettaError(f"train.init_from: {source} not found; give a checkpoint file (best.pt, last.pt) "
                                   "or models:/<name>@<alias>")
        ckpt = load_checkpoint(path)
        sha256 = sha256_file(path)
    check_fits(ckpt, cfg, description)
    return Pretrained(source, description, sha256, ckpt)


def check_fits(ckpt: dict, cfg: Config, description: str) -> None:
    """Refuse weights of another architecture or charset in one sentence naming what differs."""
    theirs_model, ours = checkpoint_architecture(ckpt, description), cfg.model
    if (theirs_model.backbone, theirs_model.neck, theirs_model.head) != (ours.backbone, ours.neck, ours.head):
        raise RosettaError(f"train.init_from: {description} is a {asdict(theirs_model.backbone)} model, not the "
                           f"configured {asdict(ours.backbone)}; set model.backbone to match it, or start from "
                           "another model")
    theirs, charset = Charset.from_dict(ckpt["charset"]), Charset.from_config(cfg.charset)
    if (theirs.characters, theirs.lowercase) != (charset.characters, charset.lowercase):
        raise RosettaError(f"train.init_from: {description} reads the charset {theirs.characters!r}, not the "
                           f"configured {charset.characters!r}; set charset to match it, or start from another model")


def apply_pretrained(model: torch.nn.Module, pretrained: Pretrained) -> None:
    """Load the weights into ``model`` (before DDP wraps it and before the optimizer sees them)."""
    try:
        model.load_state_dict(pretrained.checkpoint["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise RosettaError(f"train.init_from: {pretrained.description} does not fit the configured model "
                           f"({first}); set model to match it") from None
