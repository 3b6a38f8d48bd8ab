"""Comparing runs in ``mlflow ui``, checked in the real sqlite store after two short trainings run as a user
runs them: telling, different run names; the result params only, differing in what was changed; each
benchmark's accuracy on the training run with the evaluation nested under it; the promotion decision as the
registered version's description. README "Compare runs in `mlflow ui`" says where a person finds each."""
from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from train_fixtures import TINY

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_data, rosetta_cli):
    """Run ``a`` (the tiny recipe) trained, evaluated, exported and registered; run ``b`` (lr 1e-3) trained
    and evaluated; into one store, the evaluations without a run id. Run ``a``'s evaluation and registration
    are ``rosetta`` commands as a user types them; the rest runs in this process, to keep the test short."""
    from rosetta.config import load_config
    from rosetta.delivery.export import export_checkpoint
    from rosetta.evaluation.evaluate import evaluate_benchmarks
    from rosetta.layout import DataLayout
    from rosetta.training.trainer import run_training

    root = tmp_path_factory.mktemp("compare")
    default_lr = load_config(ROOT / "params.yaml").train.lr  # run a keeps the default rate, run b changes it
    common = [*TINY, f"train.lr={default_lr}", "train.max_steps=6", "train.eval_every=6", f"data.root={tiny_data}",
              f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}", "export.parity_samples=4",
              "export.batch_size=4"]

    def overrides(run: str, *extra: str) -> list[str]:
        return [*common, f"train.out_dir=runs/{run}", f"eval.out_dir=runs/{run}/eval",
                f"export.out_dir=runs/{run}/export", f"registry.out_dir=runs/{run}/register", *extra]

    def rosetta(run: str, *args: str) -> None:
        done = rosetta_cli(*args, "-c", str(ROOT / "params.yaml"), *[a for o in overrides(run) for a in ("-o", o)],
                           cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg_a = load_config(ROOT / "params.yaml", overrides("a"))
        cfg_b = load_config(ROOT / "params.yaml", overrides("b", "train.lr=1e-3"))
        best_a = run_training(cfg_a, resume=False).best_checkpoint
        best_b = run_training(cfg_b, resume=False).best_checkpoint
        evaluate_benchmarks(best_b, DataLayout.from_config(cfg_b).benchmarks, cfg_b)
        rosetta("a", "evaluate", "--model", str(best_a), "--out", "runs/a/eval")
        export_checkpoint(best_a, root / "runs/a/export/model.onnx", cfg_a, root / "runs/a/export/parity.json")
        rosetta("a", "register")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name("rosetta")
    runs = client.search_runs([exp.experiment_id], "tags.backbone != ''", order_by=["attributes.start_time ASC"])
    return {"client": client, "experiment": exp, "a": runs[0], "b": runs[1], "runs": runs}


def test_two_runs_back_to_back_get_different_telling_names(two_runs):
    a, b = two_runs["a"].info.run_name, two_runs["b"].info.run_name
    assert len(two_runs["runs"]) == 2 and a != b
    assert a.startswith("mobilenet_v3 small x0.35 ") and b.startswith("mobilenet_v3 small x0.35 ")
    assert "lr=0.001" in b and "lr=" not in a  # the tiny recipe keeps the default rate
    # The recipe's changes lead; the tiny run's size follows (max_steps among the rest).
    assert a.startswith("mobilenet_v3 small x0.35 augment=True sources=synth warmup_steps=2 batch_size=8 +3 ")
    assert b.startswith("mobilenet_v3 small x0.35 lr=0.001 augment=True sources=synth warmup_steps=2 +4 ")


def test_the_training_run_holds_what_a_person_compares_first(two_runs):
    client, a, b = two_runs["client"], two_runs["a"], two_runs["b"]
    assert two_runs["experiment"].tags["mlflow.experimentKind"] == "custom_model_development"
    differ = {k for k in a.data.params.keys() | b.data.params.keys() if a.data.params.get(k) != b.data.params.get(k)}
    assert differ == {"train.lr"}  # out_dir and the other bookkeeping params are not params
    assert "config/params.yaml" in {f.path for f in client.list_artifacts(a.info.run_id, "config")}
    for run in (a, b):
        metrics, tags = client.get_run(run.info.run_id).data.metrics, run.data.tags
        assert 0 <= metrics["synth_test/accuracy"] <= 1 and "synth_test/norm_edit_dis" in metrics
        assert metrics["train/throughput_img_s"] > 0 and "images_per_s" not in metrics
        assert tags["backbone"] == "mobilenet_v3 small x0.35" and tags["data_version"]
        assert "train.max_steps=6" in tags["changed_params"]
        assert tags["mlflow.note.content"].startswith("**mobilenet_v3 small x0.35**, data version")
    assert "train.lr=0.001" in b.data.tags["changed_params"] and "train.lr" not in a.data.tags["changed_params"]


def test_evaluation_export_and_registration_are_nested_under_the_training_run(two_runs):
    client, a = two_runs["client"], two_runs["a"]
    children = client.search_runs([two_runs["experiment"].experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{a.info.run_id}'")
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {"evaluate synth_test", "export", "register rosetta"}
    evaluation = by_name["evaluate synth_test"]
    assert evaluation.data.metrics["accuracy_total"] == evaluation.data.metrics["synth_test/accuracy"]
    assert "eval/gallery.png" in {f.path for f in client.list_artifacts(evaluation.info.run_id, "eval")}
    assert {"parity/max_abs_diff", "parity/same_text"} <= by_name["export"].data.metrics.keys()
    assert by_name["register rosetta"].data.tags["registered_version"] == "rosetta v1"


def test_the_promotion_decision_is_the_version_description(two_runs):
    from rosetta.registry.decisions import decision_history

    version = two_runs["client"].get_model_version("rosetta", "1")
    (record,) = decision_history(two_runs["client"], "rosetta", "1")
    assert version.tags["promotion.decision"] == record.decision
    assert version.description.startswith(f"{record.decision} ") and record.reason in version.description.split("\n")[0]
