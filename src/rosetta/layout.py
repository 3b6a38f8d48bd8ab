"""Where things are: every data path below ``data.root`` (``DataLayout``) and every run output below the stages'
``out_dir`` params (``RunLayout``), the one home of these names. Stages, the flow, the CLI and the tests take paths
from here; ``dvc.yaml`` names the same files for the default params, and a test holds the two together.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rosetta.config import Config
from rosetta.params import project_path


@dataclass(frozen=True)
class DataLayout:
    """Where each stage reads and writes below ``data.root``; stages, flows and tests share it."""

    root: Path

    @classmethod
    def from_config(cls, cfg: Config) -> "DataLayout":
        return cls(project_path(cfg.data.root))

    def raw(self, source: str) -> Path:
        return self.root / "raw" / source

    def lmdb(self, source: str) -> Path:
        """LMDBs of one source: ``train/``, ``val/`` and (where the source has one) ``test/``. The real
        training sets (source ``real``) have a stage of their own, so a folder apart from ``lmdb/``."""
        return self.real_train if source == "real" else self.root / "lmdb" / source

    def validation_splits(self, sources: list[str]) -> list[Path]:
        """The ``val/`` LMDB folder of each source that has one, in ``sources`` order."""
        return [self.lmdb(s) / "val" for s in sources if (self.lmdb(s) / "val").is_dir()]

    @property
    def benchmarks(self) -> Path:
        """One LMDB per evaluation set, named by its folder."""
        return self.root / "lmdb" / "benchmarks"

    @property
    def real_manifest(self) -> Path:
        """The fingerprint of the data.real_benchmarks sets, rewritten on every ``dvc repro``."""
        return self.root / "real" / "manifest.json"

    @property
    def real_benchmarks(self) -> Path:
        """The data.real_benchmarks sets converted, one LMDB per set, beside a copy of the manifest."""
        return self.root / "real" / "lmdb"

    @property
    def real_train_manifest(self) -> Path:
        """The fingerprint of the data.real_train sets, rewritten on every ``dvc repro``."""
        return self.root / "realtrain" / "manifest.json"

    @property
    def real_train(self) -> Path:
        """The data.real_train sets converted: ``train/<SET>`` and the held-out ``val/<SET>`` LMDBs, beside a
        copy of the manifest and the conversion report."""
        return self.root / "realtrain" / "lmdb"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def checks(self, lmdb_dir: str | Path) -> Path:
        """Where ``rosetta data validate LMDB_DIR`` writes its results: beside the validate stage's own output
        (``reports/validation``, a DVC output), never into it."""
        return self.reports / "checks" / Path(lmdb_dir).resolve().name


def run_marker(train_dir: Path) -> Path:
    """The file marking ``train_dir`` as a training's run folder (``RunLayout.run_marker``)."""
    return Path(train_dir) / ".rosetta-run"


def train_lock(train: Path) -> Path:
    """The lock of the training folder ``train`` (``RunLayout.train_lock``), for commands given that folder."""
    return Path(train) / ".train.lock"


def mlflow_pending(train: Path) -> Path:
    """The journals of the training folder ``train`` (``RunLayout.mlflow_pending``)."""
    return Path(train) / "mlflow_pending"


@dataclass(frozen=True)
class RunLayout:
    """Where the model stages write, below the ``<stage>.out_dir`` params: the one home of these file names.
    Stages, the flow, the CLI and the tests take paths from here; ``dvc.yaml`` names the same files for the
    default params, and a test holds the two together."""

    train: Path
    eval: Path
    export: Path
    register: Path

    @classmethod
    def from_config(cls, cfg: Config, root: Path | None = None) -> "RunLayout":
        return cls(project_path(cfg.train.out_dir, root), project_path(cfg.eval.out_dir, root),
                   project_path(cfg.export.out_dir, root), project_path(cfg.registry.out_dir, root))

    # train: the best inference checkpoint, the resumable training state, the MLflow run record, metrics, plots
    @property
    def best_checkpoint(self) -> Path:
        return self.train / "best.pt"

    @property
    def checkpoints(self) -> Path:
        return self.train / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def run_marker(self) -> Path:
        """Written into the folder when a training starts in it: the folder is rosetta's to clear and resume."""
        return run_marker(self.train)

    @property
    def train_lock(self) -> Path:
        """Held (flock) by the process training into this folder: one training per ``train.out_dir``."""
        return train_lock(self.train)

    @property
    def mlflow_pending(self) -> Path:
        """What a training measured while its MLflow server was away: ``<run id>/`` journals to send."""
        return mlflow_pending(self.train)

    @property
    def run_json(self) -> Path:
        return self.train / "run.json"

    @property
    def train_metrics(self) -> Path:
        return self.train / "train_metrics.json"

    @property
    def loss_csv(self) -> Path:
        return self.train / "plots" / "train_loss.csv"

    @property
    def val_csv(self) -> Path:
        return self.train / "plots" / "val_accuracy.csv"

    @property
    def curve_png(self) -> Path:
        return self.train / "curve.png"

    # evaluate: benchmark metrics (a DVC metric), their Markdown table, the gallery of mistakes
    @staticmethod
    def eval_files(folder: str | Path) -> tuple[Path, Path, Path]:
        """(metrics.json, metrics.md, gallery.png) in an evaluation folder: ``eval.out_dir``, or ``--out``."""
        folder = Path(folder)
        return folder / "metrics.json", folder / "metrics.md", folder / "gallery.png"

    @staticmethod
    def reliability_file(folder: str | Path) -> Path:
        """The reliability diagram of the confidence rules, beside the evaluation files of ``folder``."""
        return Path(folder) / "reliability.png"

    @property
    def reliability_png(self) -> Path:
        return self.reliability_file(self.eval)

    @property
    def eval_metrics(self) -> Path:
        return self.eval_files(self.eval)[0]

    @property
    def eval_table(self) -> Path:
        return self.eval_files(self.eval)[1]

    @property
    def gallery_png(self) -> Path:
        return self.eval_files(self.eval)[2]

    # export and register
    @property
    def onnx(self) -> Path:
        return self.export / "model.onnx"

    @property
    def parity(self) -> Path:
        return self.export / "parity.json"

    @property
    def int8_report(self) -> Path:
        return self.export / "int8.json"

    @property
    def decision(self) -> Path:
        return self.register / "decision.json"
