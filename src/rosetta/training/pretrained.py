"""``train.init_from`` (PaddleOCR's ``Global.pretrained_model``): start training from the weights of a trained
model, a checkpoint file or a registered version (``models:/<name>@<alias>`` or ``models:/<name>/<version>``),
not from its optimizer or data position. A registered version is an ONNX file; its weights come from the
checkpoint its training run logged (``checkpoints/best.pt``), which must compute what that digest-checked ONNX
file computes.

The configured charset may differ from the model's (a user's dictionary with case, punctuation or new letters):
the backbone and neck load whole, and the CTC head's rows are matched by character (``adapt_head``).
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.fsutil import sha256_file
from rosetta.params import project_path
from rosetta.recognition.checkpoint import checkpoint_architecture, load_checkpoint
from rosetta_infer.charset import Charset

CHECKPOINT_ARTIFACT = "checkpoints/best.pt"  # where the training run logs its best checkpoint
HEAD_WEIGHT, HEAD_BIAS = "head.fc.weight", "head.fc.bias"
# How far below its source row a new character's logit starts: the new row can never win a frame before training
# (so the model reads every old word as its parent did), and takes at most e^-8 of its source's probability.
NEW_ROW_MARGIN = 8.0
PROBE_WORDS = ("rosetta", "EXIT 24", "Parking", "caf3-91")  # what a checkpoint and its ONNX file must read alike


@dataclass(frozen=True)
class Pretrained:
    """The weights to start from and what they are, for the log and the resume fingerprint."""

    source: str  # train.init_from as given
    description: str  # e.g. "models:/rosetta@production (v3, run abc)"
    sha256: str  # of the checkpoint file: a changed source is another run
    checkpoint: dict


@dataclass(frozen=True)
class HeadMapping:
    """For each class of the configured charset, the parent's class it starts from: ``rows[j]`` is the parent
    class of class ``j`` (0, the blank, is 0), or None for a new character; ``seeds[j]`` is the parent class a new
    character's row copies (its other case), or None for the mean of the parent's rows."""

    rows: list[int | None]
    seeds: list[int | None]
    added: str
    dropped: str

    @property
    def kept(self) -> int:
        return sum(r is not None for r in self.rows) - 1

    @property
    def identity(self) -> bool:
        return not self.added and not self.dropped and self.rows == list(range(len(self.rows)))

    def note(self, description: str, parent: Charset, child: Charset) -> str:
        def chars(text: str) -> str:
            return repr(text if len(text) <= 20 else text[:20] + "...")
        added = f"{len(self.added)} added ({chars(self.added)}, starting from their other case or the mean row)" \
            if self.added else "0 added"
        dropped = f"{len(self.dropped)} dropped ({chars(self.dropped)})" if self.dropped else "0 dropped"
        return (f"train.init_from: {description} reads {len(parent.characters)} characters, the configured charset "
                f"{len(child.characters)}: {self.kept} kept, {added}, {dropped}")


def head_mapping(parent: Charset, child: Charset) -> HeadMapping:
    """Match the head's rows by character, never by index (PaddleOCR's appended dictionaries read gibberish for
    that reason); the blank stays class 0."""
    index = {c: i + 1 for i, c in enumerate(parent.characters)}
    rows: list[int | None] = [0]
    seeds: list[int | None] = [None]
    for c in child.characters:
        rows.append(index.get(c))
        other = c.lower() if c != c.lower() else c.upper()
        seeds.append(None if c in index else index.get(other))
    added = "".join(c for c in child.characters if c not in index)
    dropped = "".join(c for c in parent.characters if c not in set(child.characters))
    return HeadMapping(rows, seeds, added, dropped)


def adapt_head(state: dict[str, torch.Tensor], mapping: HeadMapping) -> dict[str, torch.Tensor]:
    """``state`` with the head's rows laid out for the configured charset: kept characters copy their row; a new
    one copies its other case's row (``A`` from ``a``) or the mean of all rows, its bias ``NEW_ROW_MARGIN`` lower.
    A row so made scores ``NEW_ROW_MARGIN`` below the row it copies, or below the mean of the parent's scores, so
    it never takes a frame from the parent's choice: the first step starts from the parent's readings."""
    weight, bias = state[HEAD_WEIGHT], state[HEAD_BIAS]
    mean_w, mean_b = weight.mean(dim=0), bias.mean()
    new_w, new_b = [], []
    for row, seed in zip(mapping.rows, mapping.seeds):
        if row is not None:
            new_w.append(weight[row])
            new_b.append(bias[row])
        elif seed is not None:
            new_w.append(weight[seed])
            new_b.append(bias[seed] - NEW_ROW_MARGIN)
        else:
            new_w.append(mean_w)
            new_b.append(mean_b - NEW_ROW_MARGIN)
    return {**state, HEAD_WEIGHT: torch.stack(new_w).clone(), HEAD_BIAS: torch.stack(new_b).clone()}


def _probe_batch(height: int, width: int) -> np.ndarray:
    """A few drawn words under the inference contract: what a checkpoint and its exported file must agree on."""
    from PIL import Image, ImageDraw, ImageFont

    from rosetta_infer.preprocess import resize_norm_img

    font = ImageFont.load_default()
    images = []
    for i, word in enumerate(PROBE_WORDS):
        img = Image.new("RGB", (16 + 9 * len(word), 24), (230 - 40 * i, 225, 210 + 10 * i))
        ImageDraw.Draw(img).text((6, 5), word, fill=(20 + 30 * i, 20, 40), font=font)
        images.append(resize_norm_img(img, height, width))
    return np.stack(images).astype(np.float32)


def check_against_onnx(ckpt: dict, onnx: Path, tolerance: float, description: str) -> None:
    """Refuse a checkpoint whose weights do not compute what the registered (digest-checked) ONNX file computes:
    a ``best.pt`` edited in the artifact store after registration."""
    from rosetta.modeling import build_model
    from rosetta_infer.onnx_runtime import onnx_session, ort_probs_fn

    architecture = checkpoint_architecture(ckpt, description)
    model = build_model(architecture, Charset.from_dict(ckpt["charset"]).num_classes)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError:
        raise RosettaError(f"train.init_from: the {CHECKPOINT_ARTIFACT} of {description} does not fit the model it "
                           "names; it was changed in the artifact store: point init_from at a checkpoint file you "
                           "trust") from None
    batch = _probe_batch(architecture.image_height, architecture.image_width)
    with torch.no_grad():
        theirs = model.eval()(torch.from_numpy(batch)).numpy()
    ours = ort_probs_fn(onnx_session(onnx, threads=1))(batch)
    if theirs.shape != ours.shape or float(np.abs(theirs - ours).max()) > tolerance:
        raise RosettaError(f"train.init_from: the {CHECKPOINT_ARTIFACT} of {description} does not compute what its "
                           "registered ONNX file computes (it was changed in the artifact store since); it is not "
                           "loaded: restore the store from a backup, or point init_from at a checkpoint file you trust")


def _registered_checkpoint(cfg: Config, uri: str, folder: Path) -> tuple[Path, str, Path]:
    """The checkpoint the training run of registered version ``uri`` logged, and the version's ONNX file (checked
    against the registry's digests), downloaded into ``folder``."""
    from mlflow.exceptions import MlflowException

    from rosetta.registry.refs import fetch_verified, registry_client, resolve_version
    from rosetta.tracking.store import artifact_bars_on_terminal

    mv = resolve_version(cfg, uri, "train.init_from")
    client = registry_client(cfg)
    run = client.get_run(mv.run_id)
    train_run = run.data.tags.get("mlflow.parentRunId", mv.run_id)
    try:
        with artifact_bars_on_terminal():
            path = Path(client.download_artifacts(train_run, CHECKPOINT_ARTIFACT, str(folder)))
    except (MlflowException, OSError):
        raise RosettaError(f"train.init_from: {uri} (v{mv.version}) has no {CHECKPOINT_ARTIFACT} in its training run "
                           f"{train_run}; point init_from at the checkpoint file instead") from None
    verified = fetch_verified(cfg, f"models:/{mv.name}/{mv.version}", folder / "model", "train.init_from")
    return path, f"{uri} (v{mv.version}, training run {train_run})", verified.onnx


def load_pretrained(cfg: Config) -> Pretrained | None:
    """The checkpoint ``train.init_from`` names, read and checked to fit the configured model; None when unset.

    Refused in one sentence: a missing file, an unknown registered model, a file inside ``train.out_dir`` (a new
    run clears that folder), another backbone, or a registered version whose checkpoint is not what it serves."""
    source = cfg.train.init_from
    if not source:
        return None
    with tempfile.TemporaryDirectory(prefix="rosetta-init-") as tmp:
        onnx = None
        if source.startswith("models:/"):
            path, description, onnx = _registered_checkpoint(cfg, source, Path(tmp))
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
        if onnx is not None:
            check_against_onnx(ckpt, onnx, cfg.export.max_abs_diff, description)
    return Pretrained(source, description, sha256, ckpt)


def check_fits(ckpt: dict, cfg: Config, description: str) -> None:
    """Refuse weights of another architecture in one sentence naming what differs (another charset is adapted)."""
    theirs_model, ours = checkpoint_architecture(ckpt, description), cfg.model
    if (theirs_model.backbone, theirs_model.neck, theirs_model.head) != (ours.backbone, ours.neck, ours.head):
        raise RosettaError(f"train.init_from: {description} is a {asdict(theirs_model.backbone)} model, not the "
                           f"configured {asdict(ours.backbone)}; set model.backbone to match it, or start from "
                           "another model")


def apply_pretrained(model: torch.nn.Module, pretrained: Pretrained, charset: Charset) -> str | None:
    """Load the weights into ``model`` (before DDP wraps it and before the optimizer sees them), the head's rows
    matched to ``charset`` by character; returns the line that says what the head kept, added and dropped when the
    charsets differ."""
    parent = Charset.from_dict(pretrained.checkpoint["charset"])
    mapping = head_mapping(parent, charset)
    state = pretrained.checkpoint["model"]
    note = None
    if not mapping.identity or parent.lowercase != charset.lowercase:
        state = adapt_head(state, mapping)
        note = mapping.note(pretrained.description, parent, charset)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise RosettaError(f"train.init_from: {pretrained.description} does not fit the configured model "
                           f"({first}); set model to match it") from None
    return note
