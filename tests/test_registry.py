"""The MLflow Model Registry with aliases, against a real sqlite store: registration with evidence tags,
promotion decisions (recorded and printed), rollback, and the pyfunc model served from the alias."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from model_fixtures import config, png_bytes, tiny_data, untrained_checkpoint, word_image
from rosetta.export import export_checkpoint
from rosetta.onnx_runtime import load_onnx_recognizer
from rosetta.registry import (TAG_DECISION, TAG_REASON, Evidence, RegistryError, decide, promote,
                              register_and_promote, rollback)
from rosetta.tracking import Tracker

ROOT = Path(__file__).resolve().parents[1]


def _summary(accuracy: float) -> dict:
    """``evaluate_benchmarks``' summary for one benchmark set."""
    return {"sets": {"synth_test": {"accuracy": accuracy, "norm_edit_dis": accuracy, "count": 12}},
            "accuracy_total": accuracy, "accuracy_mean": accuracy, "norm_edit_dis_total": accuracy,
            "count_total": 12, "images_per_s": 100.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A project-like folder: tiny data, one gated ONNX export, an MLflow sqlite store; the cwd is there."""
    root = tmp_path_factory.mktemp("registry")
    tiny_data(root / "data")
    overrides = [f"data.root={root / 'data'}", f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
                 "export.parity_samples=8", "export.batch_size=4"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = config(*overrides)
        ckpt = untrained_checkpoint(root / "best.pt", cfg)
        parity = export_checkpoint(ckpt, root / "model.onnx", cfg, root / "parity.json").to_dict()
        yield {"root": root, "cfg": cfg, "overrides": overrides, "onnx": root / "model.onnx", "parity": parity}


def _candidate(store, accuracy: float, capsys) -> tuple:
    """A training run with its benchmark metrics, registered and decided as the pipeline does it."""
    cfg = store["cfg"]
    tracker = Tracker(cfg, tags={"mlflow.runName": f"acc-{accuracy}"})
    tracker.log_metrics({"accuracy_total": accuracy})
    tracker.end()
    decision = register_and_promote(cfg, store["onnx"], store["parity"], _summary(accuracy), tracker.run_id,
                                    store["root"] / "decision.json")
    return decision, capsys.readouterr().out


def _client(store) -> MlflowClient:
    uri = store["cfg"].mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _aliases(client: MlflowClient) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model("rosetta").aliases.items()}


def _rosetta(store, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rosetta", *args, "-c", str(ROOT / "params.yaml")]
    for o in store["overrides"]:
        cmd += ["-o", o]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=store["root"], env={**env, "OMP_NUM_THREADS": "1"},
                          timeout=300)


def test_promotion_lifecycle(store, capsys):
    client, name = _client(store), "rosetta"

    first, out = _candidate(store, 0.50, capsys)
    assert first.promoted and first.version == "1"
    assert "rosetta v1 promoted to production: no production version yet" in out
    v1 = client.get_model_version(name, "1")
    assert _aliases(client) == {"production": "1"}
    assert v1.tags["backbone"] == "mobilenet_v3" and v1.tags["metric.accuracy_total"] == "0.5"
    assert v1.tags["metric.synth_test/accuracy"] == "0.5"
    assert {"git_commit", "data_version", "benchmark_set", "parity.max_abs_diff"} <= v1.tags.keys()
    assert v1.tags["benchmark_set"].endswith("synth_test=12")
    assert v1.tags[TAG_DECISION] == "promoted"
    assert v1.run_id == json.loads((store["root"] / "decision.json").read_text())["run_id"]

    worse, out = _candidate(store, 0.30, capsys)
    assert not worse.promoted and worse.version == "2"
    assert "rosetta v2 not promoted: accuracy_total 0.3000 does not beat production v1's 0.5000" in out
    v2 = client.get_model_version(name, "2")
    assert v2.tags[TAG_DECISION] == "not promoted" and "does not beat production v1" in v2.tags[TAG_REASON]
    assert _aliases(client) == {"production": "1"}
    assert json.loads((store["root"] / "decision.json").read_text())["promoted"] is False

    better, out = _candidate(store, 0.70, capsys)
    assert better.promoted and "beats production v1's 0.5000 by +0.2000" in out
    assert _aliases(client) == {"production": "3", "previous": "1"}
    assert client.get_model_version(name, "3").tags["promotion.replaced"] == "1"

    done = _rosetta(store, "rollback")
    assert done.returncode == 0, done.stderr
    assert "rosetta v1 restored to production: rolled back from v3" in done.stdout
    assert _aliases(client) == {"production": "1"}
    assert client.get_model_version(name, "3").tags[TAG_DECISION] == "rolled back"

    with pytest.raises(RegistryError, match="has no 'previous' version to roll back to"):
        rollback(store["cfg"])
    assert not promote(store["cfg"], 2).promoted
    forced = _rosetta(store, "promote", "--version", "2", "--force")
    assert forced.returncode == 0 and "rosetta v2 promoted to production: forced by hand over v1" in forced.stdout
    assert _aliases(client) == {"production": "2", "previous": "1"}
    promote(store["cfg"], 3)  # back to the best one for the serving test
    assert _aliases(client) == {"production": "3", "previous": "2"}


def test_production_alias_loads_as_pyfunc_and_reads_images(store, tmp_path):
    if "production" not in _client(store).get_registered_model("rosetta").aliases:
        pytest.skip("needs test_promotion_lifecycle's registrations")
    mlflow.set_tracking_uri(store["cfg"].mlflow.tracking_uri)
    mlflow.set_registry_uri(store["cfg"].mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/rosetta@production")
    rng = np.random.default_rng(5)
    images = [word_image(w, rng) for w in ("joint", "street")]
    (tmp_path / "street.png").write_bytes(png_bytes(images[1]))
    as_base64 = base64.b64encode(png_bytes(images[0])).decode()  # what JSON brings to `mlflow models serve`
    frame = pd.DataFrame({"image": [png_bytes(images[0]), str(tmp_path / "street.png"), as_base64]})
    got = model.predict(frame)
    assert list(got.columns) == ["text", "confidence"] and len(got) == 3
    expected = load_onnx_recognizer(store["onnx"]).recognize(images + images[:1])
    assert got["text"].tolist() == [t for t, _ in expected]
    assert got["confidence"].tolist() == pytest.approx([c for _, c in expected], abs=1e-6)


def test_registration_refuses_failed_parity_and_unknown_metric(store):
    cfg = store["cfg"]
    failed = {**store["parity"], "passed": False, "failures": ["max abs difference 0.3 exceeds export.max_abs_diff"]}
    with pytest.raises(RegistryError, match="parity gate did not pass"):
        register_and_promote(cfg, store["onnx"], failed, _summary(0.9), None)
    no_metric = config(*store["overrides"], "registry.metric=accuracy_total7")
    with pytest.raises(RegistryError, match=r"^registry\.metric: 'accuracy_total7' is not among"):
        register_and_promote(no_metric, store["onnx"], store["parity"], _summary(0.9), None)


def test_rollback_without_a_registered_model_is_one_sentence(store):
    cfg = config(*store["overrides"], "registry.model_name=never-registered")
    with pytest.raises(RegistryError, match=r"^registered model 'never-registered' not found"):
        rollback(cfg)


# --------------------------------------------------------------------------- the rule alone

REG = config().registry


def _ev(version: str, score: float | None, bench: str = "b: s=1", parity: bool = True) -> Evidence:
    return Evidence(version, score, bench, parity)


@pytest.mark.parametrize("candidate, production, promoted, reason", [
    (_ev("1", 0.5), None, True, "no production version yet"),
    (_ev("2", 0.6), _ev("1", 0.5), True, "beats production v1's"),
    (_ev("2", 0.5), _ev("1", 0.5), False, "does not beat production v1's 0.5000 by more than registry.margin 0"),
    (_ev("2", 0.9, parity=False), _ev("1", 0.5), False, "parity gate did not pass"),
    (_ev("2", 0.9, bench="other: s=2"), _ev("1", 0.5), False, "another benchmark set"),
    (_ev("2", None), _ev("1", 0.5), False, "has no accuracy_total score"),
    (_ev("1", 0.5), _ev("1", 0.5), False, "already has alias 'production'"),
])
def test_decide(candidate, production, promoted, reason):
    decision = decide(candidate, production, REG)
    assert decision.promoted is promoted and reason in decision.reason


def test_decide_margin_and_force():
    strict = config("registry.margin=0.05").registry
    assert not decide(_ev("2", 0.54), _ev("1", 0.5), strict).promoted
    assert decide(_ev("2", 0.56), _ev("1", 0.5), strict).promoted
    forced = decide(_ev("2", 0.1, bench="other"), _ev("1", 0.5), strict, force=True)
    assert forced.promoted and "forced by hand over v1" in forced.reason
    assert not decide(_ev("2", 0.9, parity=False), None, strict, force=True).promoted
