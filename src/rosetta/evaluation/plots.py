"""PNG figures for people: the training curve, the gallery of the worst recognition mistakes and the reliability
diagram of the word confidences."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers, DVC runners or CI
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from rosetta.evaluation.calibration import CalibrationBin, expected_calibration_error  # noqa: E402


def training_curve(train_rows: Sequence[Sequence[float]], val_rows: Sequence[Sequence[float]],
                   path: str | Path) -> Path:
    """Loss and learning rate (rows ``step, loss, lr, ...``) beside validation accuracy and normalized
    edit similarity (rows ``step, accuracy, norm_edit_dis``)."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    if train_rows:
        steps = [r[0] for r in train_rows]
        ax_loss.plot(steps, [r[1] for r in train_rows], color="tab:blue", label="CTC loss")
        ax_loss.set_yscale("log")
        ax_lr = ax_loss.twinx()
        ax_lr.plot(steps, [r[2] for r in train_rows], color="tab:gray", linestyle="--", label="lr")
        ax_lr.set_ylabel("learning rate")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training")
    if val_rows:
        steps = [r[0] for r in val_rows]
        ax_val.plot(steps, [r[1] for r in val_rows], marker="o", label="accuracy")
        ax_val.plot(steps, [r[2] for r in val_rows], marker=".", label="norm_edit_dis")
        ax_val.legend(loc="lower right")
    ax_val.set_ylim(0, 1)
    ax_val.set_xlabel("step")
    ax_val.set_title("validation")
    ax_val.grid(alpha=0.3)
    return _save(fig, path)


@dataclass(frozen=True)
class Mistake:
    image: Image.Image
    truth: str
    prediction: str
    confidence: float
    set_name: str = ""


def mistakes_gallery(mistakes: Sequence[Mistake], path: str | Path, columns: int = 4, title: str = "") -> Path:
    """A grid of word images, each titled with its truth, the prediction and its confidence, under ``title``."""
    n = max(1, len(mistakes))
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 1.3 * rows + (0.4 if title else 0)),
                             squeeze=False)
    if title:
        fig.suptitle(title, fontsize=8, wrap=True)
    for ax in axes.flat:
        ax.axis("off")
    if not mistakes:
        axes[0][0].text(0, 0.5, "no mistakes", fontsize=12)
    for ax, m in zip(axes.flat, mistakes):
        ax.imshow(m.image)
        where = f"[{m.set_name}] " if m.set_name else ""
        ax.set_title(f"{where}truth {m.truth!r}\npred {m.prediction!r} ({m.confidence:.3f})", fontsize=7)
    return _save(fig, path)


def reliability_diagram(per_rule: dict[str, Sequence[CalibrationBin]], path: str | Path, title: str = "") -> Path:
    """Accuracy against mean confidence per bin, one line per confidence rule (its ECE in the legend) over the
    diagonal a calibrated confidence follows, beside how many readings each bin holds."""
    fig, (ax, ax_count) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot([0, 1], [0, 1], color="tab:gray", linestyle="--", label="calibrated")
    width = 0.1 / max(1, len(per_rule))
    for k, (rule, bins) in enumerate(per_rule.items()):
        ax.plot([b.confidence for b in bins], [b.accuracy for b in bins], marker="o",
                label=f"{rule} (ECE {expected_calibration_error(bins):.3f})")
        ax_count.bar([b.low + (k + 0.5) * width for b in bins], [b.count for b in bins], width=width, label=rule)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "reliability")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax_count.set_xlim(0, 1)
    ax_count.set_xlabel("confidence")
    ax_count.set_ylabel("readings")
    ax_count.set_title("readings per bin")
    ax_count.legend(loc="upper left")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
