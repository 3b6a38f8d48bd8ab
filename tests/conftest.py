"""Fixtures shared by the test modules, each made once per test run: the tiny data sets, one tiny trained and
exported model, and ``rosetta`` run as a user runs it; plus one torch thread per module. Test modules use these;
nothing else in tests/ builds data, trains a model to read, or starts the CLI its own way."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from model_fixtures import write_word_lmdb
from rosetta.config import Config
from rosetta.params import PROJECT_ROOT

# The maintainer scripts' modules the tests share (import_graph: the reader of rosetta's imports).
sys.path.insert(0, str(PROJECT_ROOT / "scripts"))


# Test modules that share one session-scoped stack (``flow_stack``: a Prefect server, its worker and a pipeline run).
FLOW_STACK_MODULES = ("test_flow.py", "test_flow_experiments.py", "test_mlflow_ui.py")


def pytest_collection_modifyitems(items):
    """Modules with an end-to-end test (marked slow) first, each module's tests in their own order: under xdist the
    quick modules then fill the workers' last minutes, rather than one long module running alone at the end."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow)


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (``make test`` runs two workers) a module's tests stay on one worker, so its module-scoped
    servers and models are made once, and the modules on ``flow_stack`` share a worker, so the stack is made once."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "flow_stack" if Path(module).name in FLOW_STACK_MODULES else module

    return ByModule(config, log)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tests share two cores with subprocesses; several torch threads then spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A ``data.root`` laid out as ``DataLayout`` expects for the synth source: ``lmdb/synth/train`` (40 word
    images), ``lmdb/synth/val`` (12) and ``lmdb/benchmarks/synth_test`` (12). Built once; tests only read it."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_word_lmdb(root / "lmdb" / "synth" / "train", 40, seed=0)
    write_word_lmdb(root / "lmdb" / "synth" / "val", 12, seed=1)
    write_word_lmdb(root / "lmdb" / "benchmarks" / "synth_test", 12, seed=2)
    return root


@pytest.fixture(scope="session")
def tiny_mixed_data(tmp_path_factory) -> Path:
    """A ``data.root`` with the synth source of ``tiny_data`` and the ``real`` source: two gt-file sets (36 and 24
    words) converted as the ``convert_real_train`` stage does, a quarter held out. Built once; tests only read it."""
    from model_fixtures import WORDS, write_gt_set
    from rosetta_infer.charset import Charset
    from rosetta.layout import DataLayout
    from rosetta.prep.real_train import convert_real_train, write_real_train_manifest

    base = tmp_path_factory.mktemp("tiny_mixed")
    layout = DataLayout(base / "data")
    write_word_lmdb(layout.lmdb("synth") / "train", 40, seed=0)
    write_word_lmdb(layout.lmdb("synth") / "val", 12, seed=1)
    write_word_lmdb(layout.benchmarks / "synth_test", 12, seed=2)
    write_gt_set(base / "realtrain" / "A_train", WORDS * 3, seed=3)
    write_gt_set(base / "realtrain" / "B_train", WORDS * 2, seed=4)
    write_real_train_manifest(str(base / "realtrain"), layout.real_train_manifest)
    convert_real_train(layout.real_train_manifest, layout.real_train, Charset(), 0.25, 0, [layout.benchmarks],
                       workers=1)
    return layout.root


@dataclass(frozen=True)
class TinyRun:
    """A finished tiny training run and its gated export. Tests read these files, or copy them to change them;
    only tests/test_train_tracking.py adds to the run's store (the evaluation it checks)."""

    root: Path  # a project folder (dvc.yaml, dvc.lock) holding the run, its store and its export
    cfg: Config  # the params it trained under
    best: Path  # runs/train/best.pt (MobileNetV3 small x0.35, 12 steps on tiny_data)
    onnx: Path  # its export, through the parity gate
    parity: dict  # the gate's report
    run_id: str  # the training run in ``root/mlflow.db`` (experiment ``tiny``), best model logged


@contextlib.contextmanager
def _trains_in(root: Path):
    """``root`` made a project folder (project_root() finds it, and its dvc.lock) and the working directory, with
    one torch thread and no MLflow URI from the environment, for a session fixture that trains there."""
    from train_fixtures import DVC_LOCK

    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "dvc.lock").write_text(DVC_LOCK)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_data) -> TinyRun:
    """The tiny recipe (train_fixtures.TINY) trained once on ``tiny_data`` and exported once, for every test that
    needs a trained model or a finished training run rather than a training of its own."""
    from rosetta.delivery.export import export_checkpoint
    from rosetta.training.trainer import run_training
    from train_fixtures import tiny_config

    root = tmp_path_factory.mktemp("tiny_run")
    with _trains_in(root):
        cfg = tiny_config(root, f"data.root={tiny_data}", "train.log_model=true", "mlflow.experiment=tiny",
                          "export.parity_samples=12", "export.batch_size=4")
        result = run_training(cfg)
        report = export_checkpoint(result.best_checkpoint, root / "export" / "model.onnx", cfg,
                                   root / "export" / "parity.json")
    return TinyRun(root, cfg, result.best_checkpoint, root / "export" / "model.onnx", report.to_dict(),
                   result.run_id)


@pytest.fixture(scope="session")
def reading_model(tmp_path_factory, tiny_data) -> Path:
    """The best.pt of the tiny recipe trained on ``tiny_data``'s 40 training images until it reads each of them as
    labelled, with confidence (it learns those images by heart and reads no new one): for tests that need readings
    a label can agree or disagree with, where ``tiny_run``'s 12 steps read every image as blank. Made once."""
    from rosetta.training.trainer import run_training
    from train_fixtures import tiny_config

    root = tmp_path_factory.mktemp("reading_model")
    with _trains_in(root):
        cfg = tiny_config(root, f"data.root={tiny_data}", "mlflow.experiment=reading", "train.augment=false",
                          "train.lr=5e-3", "train.warmup_steps=20", "train.max_steps=400", "train.eval_every=400",
                          "train.checkpoint_every=400", "train.log_every=100")
        return run_training(cfg).best_checkpoint


@dataclass(frozen=True)
class UntrainedModel:
    """An untrained MobileNetV3 of the default params and its gated export; tests copy them to change them."""

    best: Path
    onnx: Path
    parity: dict


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory, tiny_data) -> UntrainedModel:
    """A model whose readings differ from image to image, as a trained model's do (its BatchNorm statistics
    measured; ``model_fixtures.untrained_checkpoint``), where ``tiny_run``'s 12 steps still read every image as
    blank: what the export, parity, backend and serving tests compare. Made and exported once."""
    from model_fixtures import config, untrained_checkpoint
    from rosetta.delivery.export import export_checkpoint

    root = tmp_path_factory.mktemp("untrained")
    cfg = config(f"data.root={tiny_data}", "export.parity_samples=12", "export.batch_size=4")
    best = untrained_checkpoint(root / "best.pt", cfg)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        report = export_checkpoint(best, root / "model.onnx", cfg, root / "parity.json")
    return UntrainedModel(best, root / "model.onnx", report.to_dict())


class RosettaCLI:
    """``rosetta ARGS`` as a user runs it: ``python -m rosetta`` in a subprocess, with MLFLOW_TRACKING_URI
    unset (the params decide where runs go), unbuffered output and one OpenMP thread."""

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        return {**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}

    @staticmethod
    def command(*args: str) -> list[str]:
        return [sys.executable, "-m", "rosetta", *args]

    def __call__(self, *args: str, cwd: Path | None = None, timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=cwd, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="session")
def rosetta_cli() -> RosettaCLI:
    return RosettaCLI()


@pytest.fixture(scope="session")
def flow_stack(tmp_path_factory):
    """A local Prefect stack and the deployments, in a project copy (``flow_fixtures.Stack``); stopped at the end."""
    from flow_fixtures import Stack

    stack = Stack(tmp_path_factory.mktemp("flow"))
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def flow_run(flow_stack) -> dict:
    """One deployment run with a training and a data override, as the README shows it: the pipeline run the flow,
    DVC-experiment and MLflow-UI tests read."""
    done, run = flow_stack.run_deployment("train.max_steps=5", "data.synth.train_size=30")
    return {"done": done, "run": run, "experiment": f"flow-{run['name']}"}


@pytest.fixture(scope="session")
def flow_experiments(flow_stack, flow_run) -> dict:
    """Beside the flow run, an experiment as a DVC user makes one, `dvc exp run -S` with another recipe setting
    (RecAug on the synthetic words) and a margin no score passes (its version is registered and refused); then what
    DVC says of the two, and `dvc exp apply` of the flow run's experiment, which gives the workspace back as the flow
    left it (the flow tests read it)."""
    from flow_fixtures import experiments

    stack, root = flow_stack, flow_stack.root
    subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "dvc_offline_plots.py"), "--repo", str(stack.repo)],
                   env=stack.env, check=True, capture_output=True, timeout=120)
    run = stack.dvc("exp", "run", "-n", "augmented", "-S", "train.augment=[synth]", "-S", "registry.margin=1")
    shown = experiments(stack.dvc("exp", "show", "--json").stdout)
    diff = stack.dvc("exp", "diff", flow_run["experiment"], "augmented", "--json", check=False)
    plots = stack.dvc("plots", "diff", flow_run["experiment"], "augmented", "-o", str(root / "plots_diff"), check=False)
    applied = stack.dvc("exp", "apply", flow_run["experiment"])
    status = stack.dvc("status", "--json").stdout
    repro = stack.dvc("repro")
    return {"run": run, "shown": shown, "diff": diff, "plots": plots, "plots_html": root / "plots_diff" / "index.html",
            "applied": applied, "status": status, "repro": repro.stdout + repro.stderr}


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> str:
    """A Prefect server's API URL, started once: the registry lock of every store behind a server is on it."""
    from server_fixtures import prefect_server

    with prefect_server(tmp_path_factory.mktemp("prefect")) as api:
        yield api
