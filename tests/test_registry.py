"""The MLflow Model Registry with aliases, against a real sqlite store: registration with evidence tags,
promotion decisions (recorded and printed), rollback, and the pyfunc model served from the alias."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import onnx
import pandas as pd
import pytest
from mlflow import MlflowClient

from model_fixtures import config, png_bytes, word_image
from rosetta.registry.decisions import TAG_DECISION, decision_history
from rosetta.registry.promotion import promote, rollback
from rosetta.registry.refs import RegistryError
from rosetta.registry.rule import Evidence, decide
from rosetta.registry.versions import register_and_promote
from rosetta.tracking.store import Tracker
from rosetta_infer.onnx_runtime import load_onnx_recognizer

ROOT = Path(__file__).resolve().parents[1]


def _summary(accuracy: float) -> dict:
    """``evaluate_benchmarks``' summary for one benchmark set."""
    return {"sets": {"synth_test": {"accuracy": accuracy, "norm_edit_dis": accuracy, "count": 12}},
            "accuracy_total": accuracy, "accuracy_mean": accuracy, "norm_edit_dis_total": accuracy,
            "count_total": 12, "images_per_s": 100.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_data, untrained_model):
    """A project-like folder: the tiny data, one gated ONNX export (the session's untrained model), an MLflow
    sqlite store; the cwd is there."""
    root = tmp_path_factory.mktemp("registry")
    overrides = [f"data.root={tiny_data}", f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
                 "export.parity_samples=8", "export.batch_size=4", "registry.min_score=0.2"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = config(*overrides)
        shutil.copy(untrained_model.onnx, root / "model.onnx")
        yield {"root": root, "cfg": cfg, "overrides": overrides, "onnx": root / "model.onnx",
               "parity": untrained_model.parity}


def _model_file(store, name: str) -> Path:
    """Another model file, as another training run exports one: the store's ONNX with other bytes (its
    doc_string), since one file on one data version is registered once."""
    model = onnx.load(str(store["onnx"]))
    model.doc_string = name
    path = store["root"] / f"model-{name}.onnx"
    onnx.save(model, str(path))
    return path


def _candidate(store, accuracy: float, model_name: str = "rosetta") -> tuple:
    """A training run with its benchmark metrics, registered and decided as the pipeline does it: the
    decision, what it printed and the decision file it wrote."""
    cfg = config(*store["overrides"], f"registry.model_name={model_name}")
    tracker = Tracker(cfg, tags={"mlflow.runName": f"acc-{accuracy}"})
    tracker.log_metrics({"accuracy_total": accuracy})
    tracker.end()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        decision = register_and_promote(cfg, _model_file(store, f"{model_name}-{accuracy}"), store["parity"],
                                        _summary(accuracy), tracker.run_id, store["root"] / f"{model_name}.json")
    return decision, out.getvalue(), json.loads((store["root"] / f"{model_name}.json").read_text())


def _client(store) -> MlflowClient:
    uri = store["cfg"].mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _aliases(client: MlflowClient, name: str = "rosetta") -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def _rosetta(rosetta_cli, store, *args: str, model_name: str) -> subprocess.CompletedProcess:
    overrides = [a for o in [*store["overrides"], f"registry.model_name={model_name}"] for a in ("-o", o)]
    return rosetta_cli(*args, "-c", str(ROOT / "params.yaml"), *overrides, cwd=store["root"])


@pytest.fixture(scope="module")
def lifecycle(store):
    """Three versions of ``rosetta`` decided in turn (0.5, then a worse 0.3, then a better 0.7), with the
    aliases as each decision left them. The tests below read it; none changes ``rosetta`` further."""
    client, steps = _client(store), {}
    for step, accuracy in (("first", 0.50), ("worse", 0.30), ("better", 0.70)):
        decision, out, record = _candidate(store, accuracy)
        steps[step] = {"decision": decision, "out": out, "record": record, "aliases": _aliases(client),
                       "tags": client.get_model_version("rosetta", decision.version).tags}
    return steps


def test_a_first_version_is_promoted_with_its_evidence(lifecycle):
    first = lifecycle["first"]
    assert first["decision"].promoted and first["decision"].version == "1"
    assert "rosetta v1 promoted to production: no production version yet" in first["out"]
    assert first["aliases"] == {"production": "1"}
    tags = first["tags"]
    assert tags["backbone"] == "mobilenet_v3" and tags["metric.accuracy_total"] == "0.5"
    assert tags["metric.synth_test/accuracy"] == "0.5"
    assert {"git_commit", "data_version", "benchmark_set"} <= tags.keys()
    assert tags["benchmark_set"].endswith("synth_test=12")
    assert tags[TAG_DECISION] == "promoted"
    assert first["record"]["promoted"] is True and first["record"]["run_id"]


def test_a_version_shows_a_handful_of_tags_and_keeps_the_rest_in_its_training_run(store, lifecycle):
    """The versions list shows a few tags a person reads; the other evidence is a file in the training run, which
    is the version's run (its page lists the version)."""
    client = _client(store)
    mv = client.get_model_version("rosetta", "1")
    assert len(mv.tags) <= 12 and not any(k.startswith(("data_version.", "parity.max", "mlflow.")) for k in mv.tags)
    assert "metric.synth_test/norm_edit_dis" not in mv.tags
    assert client.get_run(mv.run_id).info.run_name == "acc-0.5"  # the training run, not the nested register run
    path = client.download_artifacts(mv.run_id, "registry/rosetta/v1/evidence.json", str(store["root"] / "ev"))
    evidence = json.loads(Path(path).read_text())
    assert evidence["parity"]["max_abs_diff"] == store["parity"]["max_abs_diff"]
    assert evidence["metrics"]["synth_test/norm_edit_dis"] == 0.5 and evidence["tags"].items() <= mv.tags.items()


def test_a_worse_version_is_registered_not_promoted(lifecycle):
    worse = lifecycle["worse"]
    assert not worse["decision"].promoted and worse["decision"].version == "2"
    assert "rosetta v2 not promoted: accuracy_total 0.3000 does not beat production v1's 0.5000" in worse["out"]
    assert worse["tags"][TAG_DECISION] == "not promoted"
    assert worse["aliases"] == {"production": "1"}
    assert worse["record"]["promoted"] is False


def test_a_better_version_takes_production_and_the_replaced_one_becomes_previous(lifecycle):
    better = lifecycle["better"]
    assert better["decision"].promoted and "beats production v1's 0.5000 by +0.2000" in better["out"]
    assert better["aliases"] == {"production": "3", "previous": "1"}
    assert better["tags"]["promotion.replaced"] == "1"


def test_each_version_keeps_its_decision_history(store, lifecycle):
    """Every decision stays, with the scores compared and the reason: v1 was promoted, then replaced by v3."""
    client = _client(store)
    history = decision_history(client, "rosetta", "1")
    assert [r.decision for r in history] == ["promoted", "replaced"]
    assert history[0].reason.startswith("no production version yet") and history[0].command == "registration"
    assert history[1].production_version == "1" and history[1].score == 0.5 and "v3 took 'production'" in history[1].reason
    description = client.get_model_version("rosetta", "1").description
    assert description.startswith("replaced ") and "\n" not in description.split("\n\n")[0]
    assert "no production version yet" in description and "Decision history, newest first" in description
    refused = client.get_model_version("rosetta", "2").description
    assert refused.startswith("not promoted ") and "does not beat production v1's 0.5000" in refused

def test_rollback_restores_the_previous_version_once(store, rosetta_cli):
    name = "rolled"
    _candidate(store, 0.50, name)
    _candidate(store, 0.70, name)
    client = _client(store)
    done = _rosetta(rosetta_cli, store, "rollback", model_name=name)
    assert done.returncode == 0, done.stderr
    assert f"{name} v1 restored to production: rolled back from v2" in done.stdout
    assert _aliases(client, name) == {"production": "1"}
    assert client.get_model_version(name, "2").tags[TAG_DECISION] == "rolled back"
    # The rollback adds to the histories: v1's score-based promotion is still there, after its rollback entry.
    assert [r.decision for r in decision_history(client, name, "1")] == ["promoted", "replaced", "promoted"]
    restored = client.get_model_version(name, "1").description
    assert restored.startswith("promoted ") and "rolled back from v2" in restored
    assert "no production version yet; this first one scores accuracy_total 0.5000" in restored
    assert [r.decision for r in decision_history(client, name, "2")] == ["promoted", "rolled back"]
    with pytest.raises(RegistryError, match="has no 'previous' version to roll back to"):
        rollback(config(*store["overrides"], f"registry.model_name={name}"))


def test_promote_by_hand_needs_force_to_skip_the_comparison(store, rosetta_cli):
    name = "forced"
    _candidate(store, 0.50, name)
    _candidate(store, 0.30, name)
    assert not promote(config(*store["overrides"], f"registry.model_name={name}"), 2).promoted
    forced = _rosetta(rosetta_cli, store, "promote", "--version", "2", "--force", model_name=name)
    assert forced.returncode == 0, forced.stderr
    assert f"{name} v2 promoted to production: forced by hand over v1" in forced.stdout
    assert _aliases(_client(store), name) == {"production": "2", "previous": "1"}


def test_production_alias_loads_as_pyfunc_and_reads_image_bytes_only(store, lifecycle, tmp_path):
    mlflow.set_tracking_uri(store["cfg"].mlflow.tracking_uri)
    mlflow.set_registry_uri(store["cfg"].mlflow.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/rosetta@production")
    rng = np.random.default_rng(5)
    images = [word_image(w, rng) for w in ("joint", "street")]
    (tmp_path / "street.png").write_bytes(png_bytes(images[1]))
    frame = pd.DataFrame({"image": [png_bytes(images[0]), str(tmp_path / "street.png"), png_bytes(images[1])]})
    got = model.predict(frame)
    assert list(got.columns) == ["text", "confidence", "abstained", "reading", "error"] and len(got) == 3
    expected = load_onnx_recognizer(store["onnx"]).recognize(images)
    assert got["text"].tolist() == [expected[0][0], "", expected[1][0]]
    assert got["confidence"].tolist() == pytest.approx([expected[0][1], 0.0, expected[1][1]], abs=1e-6)
    assert got["abstained"].tolist() == [False] * 3 and got["reading"].tolist() == got["text"].tolist()
    # A path is never opened: the row gets its sentence, the others are read.
    assert got["error"].tolist()[0] == got["error"].tolist()[2] == ""
    assert got["error"][1].startswith("row 1: a string, not image bytes") and "never opened" in got["error"][1]
    artifacts = Path(mlflow.artifacts.download_artifacts("models:/rosetta@production", dst_path=str(tmp_path / "m")))
    assert (artifacts / "serving_input_example.json").is_file()


def test_the_registered_code_is_the_inference_package_alone_and_reads_without_the_rest(store, lifecycle, tmp_path):
    """The version's code folder holds rosetta_infer and nothing of training, the registry, the team or the
    renderer; a fresh interpreter that can import only the serve-onnx install loads it and reads a word with the
    code the version shipped."""
    import rosetta_infer
    from serve_onnx_env import run_serve_onnx

    mlflow.set_tracking_uri(store["cfg"].mlflow.tracking_uri)
    mlflow.set_registry_uri(store["cfg"].mlflow.tracking_uri)
    model = Path(mlflow.artifacts.download_artifacts("models:/rosetta@production", dst_path=str(tmp_path / "m")))
    code = model / "code"
    package = Path(rosetta_infer.__file__).parent
    assert [p.name for p in code.iterdir()] == ["rosetta_infer"]
    shipped = {p.relative_to(code / "rosetta_infer") for p in code.rglob("*.py")}
    assert shipped == {p.relative_to(package) for p in package.rglob("*.py")}

    image = tmp_path / "joint.png"
    image.write_bytes(png_bytes(word_image("joint", np.random.default_rng(5))))
    script = """import json
from pathlib import Path
import mlflow.pyfunc
import pandas as pd
got = mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.DataFrame({"image": [Path(sys.argv[2]).read_bytes()]}))
import rosetta_infer
print(json.dumps({"text": got["text"][0], "error": got["error"][0], "code": rosetta_infer.__file__,
                  "torch": "torch" in sys.modules, "rosetta": "rosetta" in sys.modules}))
"""
    done = run_serve_onnx(script, str(model), str(image))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    from PIL import Image

    assert out["text"] == load_onnx_recognizer(store["onnx"]).recognize([Image.open(image).convert("RGB")])[0][0]
    assert out["error"] == "" and not out["torch"] and not out["rosetta"]
    assert Path(out["code"]).is_relative_to(code)


def test_registration_refuses_failed_parity_and_unknown_metric(store):
    cfg = store["cfg"]
    failed = {**store["parity"], "passed": False, "failures": ["max abs difference 0.3 exceeds export.max_abs_diff"]}
    with pytest.raises(RegistryError, match="parity gate did not pass"):
        register_and_promote(cfg, store["onnx"], failed, _summary(0.9), None)
    no_metric = config(*store["overrides"], "registry.metric=accuracy_total7")
    with pytest.raises(RegistryError, match=r"^registry\.metric: 'accuracy_total7' is not among"):
        register_and_promote(no_metric, store["onnx"], store["parity"], _summary(0.9), None)


def test_a_first_version_below_the_floor_is_registered_not_promoted(store, capsys):
    cfg = config(*store["overrides"], "registry.model_name=floored", "registry.min_score=0.6")
    tracker = Tracker(cfg)
    tracker.end()
    decision = register_and_promote(cfg, store["onnx"], store["parity"], _summary(0.5), tracker.run_id,
                                    store["root"] / "floored.json")
    assert decision.version == "1" and not decision.promoted
    assert ("floored v1 not promoted: accuracy_total 0.5000 is below registry.min_score 0.6, the floor under which "
            "no version is promoted") in capsys.readouterr().out
    client = _client(store)
    assert client.get_registered_model("floored").aliases == {}
    assert client.get_model_version("floored", "1").tags[TAG_DECISION] == "not promoted"
    assert json.loads((store["root"] / "floored.json").read_text())["promoted"] is False


def test_the_same_file_on_the_same_data_is_registered_once(store, capsys):
    cfg = config(*store["overrides"], "registry.model_name=once")
    onnx_path = _model_file(store, "once")
    first = register_and_promote(cfg, onnx_path, store["parity"], _summary(0.5), None)
    again = register_and_promote(cfg, onnx_path, store["parity"], _summary(0.5), None)
    assert first.version == again.version == "1" and first.promoted
    assert "once v1 already holds" in capsys.readouterr().out
    assert [str(v.version) for v in _client(store).search_model_versions("name='once'")] == ["1"]
    other = register_and_promote(cfg, _model_file(store, "once-retrained"), store["parity"], _summary(0.6), None)
    assert other.version == "2"


def test_rollback_without_a_registered_model_is_one_sentence(store):
    cfg = config(*store["overrides"], "registry.model_name=never-registered")
    with pytest.raises(RegistryError, match=r"^registered model 'never-registered' not found"):
        rollback(cfg)


# --------------------------------------------------------------------------- the rule alone

REG = config("registry.min_score=0.5").registry


def _ev(version: str, score: float | None, bench: str = "b: s=1", parity: bool = True) -> Evidence:
    return Evidence(version, score, bench, parity)


@pytest.mark.parametrize("candidate, production, promoted, reason", [
    (_ev("1", 0.5), None, True, "no production version yet"),
    (_ev("1", 0.49), None, False, "is below registry.min_score 0.5, the floor under which no version is promoted"),
    (_ev("2", 0.4), _ev("1", 0.3), False, "is below registry.min_score 0.5"),
    (_ev("2", 0.6), _ev("1", 0.5), True, "beats production v1's"),
    (_ev("2", 0.5), _ev("1", 0.5), False, "does not beat production v1's 0.5000 by more than registry.margin 0"),
    (_ev("2", 0.9, parity=False), _ev("1", 0.5), False, "parity gate did not pass"),
    (_ev("2", 0.9, bench="other: s=2"), _ev("1", 0.5), False, "another benchmark set"),
    (_ev("2", None), _ev("1", 0.5), False, "has no accuracy_total score"),
    (_ev("1", 0.5), _ev("1", 0.5), False, "already has alias 'production'"),
    (Evidence("2", 0.6, "b: A=6, B=6", True, sets={"A": 0.9, "B": 0.3}),
     Evidence("1", 0.5, "b: A=6, B=6", True, sets={"A": 0.5, "B": 0.5}), False,
     "loses more than registry.max_set_drop 0.01 against production v1 on B -0.2000"),
    (Evidence("2", 0.6, "b: A=6, B=6", True, sets={"A": 0.695, "B": 0.505}),
     Evidence("1", 0.5, "b: A=6, B=6", True, sets={"A": 0.5, "B": 0.51}), True, "beats production v1's"),
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


# --------------------------------------------------------------------------- real benchmarks decide


def _real_summary(synth: float, real: float) -> dict:
    """``evaluate_benchmarks``' summary with synth_test (12 words) and one real set (REAL_tiny, 6 words)."""
    sets = {"synth_test": {"accuracy": synth, "norm_edit_dis": synth, "count": 12},
            "REAL_tiny": {"accuracy": real, "norm_edit_dis": real, "count": 6}}
    total = (12 * synth + 6 * real) / 18
    return {"sets": sets, "accuracy_total": total, "accuracy_mean": (synth + real) / 2, "norm_edit_dis_total": total,
            "count_total": 18, "real_sets": ["REAL_tiny"], "accuracy_real": real, "norm_edit_dis_real": real,
            "count_real": 6, "images_per_s": 100.0}


def _tags(summary: dict) -> dict[str, str]:
    from rosetta.evaluation.metrics import flat_metrics

    return {**{f"metric.{k}": f"{v:.6g}" for k, v in flat_metrics(summary).items()},
            "benchmark_set": "b: synth_test=12, REAL_tiny=6", "benchmark_set.real": "r: REAL_tiny=6",
            "parity.passed": "true"}


def test_auto_metric_decides_on_the_real_total_where_real_sets_were_scored():
    production = Evidence.from_tags("1", _tags(_real_summary(0.80, 0.70)), REG.metric)
    synth_gain = Evidence.from_tags("2", _tags(_real_summary(0.99, 0.66)), REG.metric)  # accuracy_total rises too
    assert REG.metric == "auto" and synth_gain.metric == "accuracy_real" and synth_gain.score == 0.66
    decision = decide(synth_gain, production, REG)
    assert not decision.promoted and decision.metric == "accuracy_real"
    assert "accuracy_real 0.6600 does not beat production v1's 0.7000" in decision.reason
    assert decide(Evidence.from_tags("3", _tags(_real_summary(0.75, 0.72)), REG.metric), production, REG).promoted
    # Without real sets, auto is accuracy_total as before.
    assert Evidence.from_tags("4", _tags(_summary(0.9)), REG.metric).metric == "accuracy_total"


def test_a_synth_gain_with_a_real_loss_is_registered_but_not_promoted(store, capsys, tmp_path):
    from model_fixtures import write_word_lmdb

    # Its own data root: the benchmark set digest covers synth_test and the converted real set.
    write_word_lmdb(tmp_path / "lmdb" / "benchmarks" / "synth_test", 12, seed=2)
    write_word_lmdb(tmp_path / "real" / "lmdb" / "REAL_tiny", 6, seed=3)
    cfg = config(*store["overrides"], "registry.model_name=rosetta-real", f"data.root={tmp_path}")

    def candidate(synth: float, real: float):
        tracker = Tracker(cfg)
        tracker.end()
        decision = register_and_promote(cfg, _model_file(store, f"real-{synth}-{real}"), store["parity"],
                                        _real_summary(synth, real), tracker.run_id)
        return decision, capsys.readouterr().out

    first, _ = candidate(0.80, 0.70)
    assert first.promoted and first.metric == "accuracy_real"
    tags = _client(store).get_model_version("rosetta-real", "1").tags
    assert tags["benchmark_set"].endswith("synth_test=12, REAL_tiny=6") and tags["metric.accuracy_real"] == "0.7"
    synth_gain, out = candidate(0.99, 0.66)
    assert not synth_gain.promoted
    assert "rosetta-real v2 not promoted: accuracy_real 0.6600 does not beat production v1's 0.7000" in out
    real_gain, out = candidate(0.75, 0.72)
    assert real_gain.promoted and "accuracy_real 0.7200 beats production v1's 0.7000" in out
    assert _aliases_of(_client(store), "rosetta-real") == {"production": "3", "previous": "1"}
    assert _client(store).get_model_version("rosetta-real", "3").tags["benchmark_set.real"].endswith(": REAL_tiny=6")
    # A renderer change gives a new synth test split; the real sets are the same, so the real totals compare.
    write_word_lmdb(tmp_path / "lmdb" / "benchmarks" / "synth_test", 14, seed=5)
    new_synth, out = candidate(0.70, 0.74)
    assert new_synth.promoted and "accuracy_real 0.7400 beats production v3's 0.7200" in out
    # accuracy_total mixes in the synth split, which differs now: not comparable.
    total = Evidence.from_tags("9", _client(store).get_model_version("rosetta-real", "4").tags, "accuracy_total")
    previous = Evidence.from_tags("3", _client(store).get_model_version("rosetta-real", "3").tags, "accuracy_total")
    assert "another benchmark set" in decide(total, previous, REG).reason


def _two_real_sets(iiit: float, svt: float) -> dict:
    """A summary over two real sets of 6 words each (their total the mean)."""
    sets = {"IIIT_tiny": {"accuracy": iiit, "norm_edit_dis": iiit, "count": 6},
            "SVT_tiny": {"accuracy": svt, "norm_edit_dis": svt, "count": 6}}
    total = (iiit + svt) / 2
    return {"sets": sets, "accuracy_total": total, "accuracy_mean": total, "norm_edit_dis_total": total,
            "count_total": 12, "real_sets": ["IIIT_tiny", "SVT_tiny"], "accuracy_real": total,
            "norm_edit_dis_real": total, "count_real": 12, "images_per_s": 100.0}


def test_a_candidate_that_forgets_one_set_is_not_promoted_whatever_its_total(store, capsys, tmp_path):
    """The per-set guard: +0.30 on one set and -0.15 on the other raises the total, and still is refused; the
    decision names the set, and its record keeps every set's delta."""
    from model_fixtures import write_word_lmdb
    from rosetta.registry.decisions import decision_history

    write_word_lmdb(tmp_path / "lmdb" / "benchmarks" / "synth_test", 12, seed=2)
    write_word_lmdb(tmp_path / "real" / "lmdb" / "IIIT_tiny", 6, seed=3)
    write_word_lmdb(tmp_path / "real" / "lmdb" / "SVT_tiny", 6, seed=4)
    cfg = config(*store["overrides"], "registry.model_name=rosetta-guard", f"data.root={tmp_path}")

    def candidate(iiit: float, svt: float, *overrides: str):
        tracker = Tracker(cfg)
        tracker.end()
        return register_and_promote(config(*store["overrides"], "registry.model_name=rosetta-guard",
                                           f"data.root={tmp_path}", *overrides),
                                    _model_file(store, f"guard-{iiit}-{svt}"), store["parity"],
                                    _two_real_sets(iiit, svt), tracker.run_id)

    assert candidate(0.50, 0.75).promoted
    forgets = candidate(0.80, 0.60)  # the total rises from 0.625 to 0.70
    assert not forgets.promoted
    assert forgets.reason.startswith("it loses more than registry.max_set_drop 0.01 against production v1 on "
                                     "SVT_tiny -0.1500, whatever its accuracy_real (0.7000 against 0.6250)")
    assert forgets.set_deltas == pytest.approx({"IIIT_tiny": 0.30, "SVT_tiny": -0.15})
    record = decision_history(_client(store), "rosetta-guard", forgets.version)[-1]
    assert record.decision == "not promoted" and record.set_deltas == pytest.approx(forgets.set_deltas)
    assert "SVT_tiny -0.1500" in _client(store).get_model_version("rosetta-guard", forgets.version).description
    # A looser guard lets it through: the setting decides, nothing else.
    assert candidate(0.81, 0.60, "registry.max_set_drop=0.2").promoted
    assert "production" in capsys.readouterr().out


def test_a_guarded_set_production_was_never_scored_on_is_read_with_productions_own_files(store, tmp_path):
    """registry.guarded_sets: a user's own test set (MINE, under data.benchmarks) added after production was
    registered is scored with production's files at the decision, tagged on its version, and guarded."""
    from model_fixtures import write_word_lmdb
    from rosetta.data.dataset import LmdbDataset
    from rosetta_infer.charset import Charset

    root = tmp_path / "data"
    write_word_lmdb(root / "real" / "lmdb" / "REAL_tiny", 6, seed=3)
    write_word_lmdb(root / "lmdb" / "benchmarks" / "synth_test", 12, seed=2)
    cfg = config(*store["overrides"], "registry.model_name=rosetta-mine", f"data.root={root}")

    def candidate(name: str, mine: float | None, real: float, *overrides: str):
        summary = _real_summary(0.5, real)
        if mine is not None:
            summary["sets"]["MINE"] = {"accuracy": mine, "norm_edit_dis": mine, "count": 12}
        tracker = Tracker(cfg)
        tracker.end()
        return register_and_promote(config(*store["overrides"], "registry.model_name=rosetta-mine",
                                           f"data.root={root}", *overrides),
                                    _model_file(store, name), store["parity"], summary, tracker.run_id)

    assert candidate("mine-1", None, 0.5).promoted
    write_word_lmdb(root / "lmdb" / "benchmarks" / "MINE", 12, seed=9)  # the user's own test set, added since
    assert len(LmdbDataset(root / "lmdb" / "benchmarks" / "MINE", Charset())) == 12
    better_but_unscored = candidate("mine-2", None, 0.9, "registry.guarded_sets=[MINE]")
    assert not better_but_unscored.promoted and better_but_unscored.reason.startswith(
        "it has no score on MINE, a set registry.guarded_sets guards")
    # The untrained production model reads none of MINE's words: 0.0, read with its own files and tagged.
    guarded = candidate("mine-3", 0.25, 0.9, "registry.guarded_sets=[MINE]")
    assert _client(store).get_model_version("rosetta-mine", "1").tags["metric.MINE/accuracy"] == "0"
    assert guarded.promoted and guarded.set_deltas["MINE"] == pytest.approx(0.25)


def _aliases_of(client: MlflowClient, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def test_artifact_downloads_show_progress_bars_on_a_terminal_only(tmp_path, capfd, monkeypatch):
    """A flow run's or a stage's log gets no bar (MLflow draws one per download); a terminal still does."""
    from rosetta.registry.versions import logged_files_digest

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("bars", artifact_location=str(tmp_path / "art"))).info.run_id
    for name in ("MLmodel", "model.onnx", "code.py"):
        (tmp_path / "model").mkdir(exist_ok=True)
        (tmp_path / "model" / name).write_text(name)
    client.log_artifacts(run_id, str(tmp_path / "model"), "model")
    uri = f"{tmp_path / 'art' / run_id / 'artifacts' / 'model'}"
    capfd.readouterr()
    digest = logged_files_digest(uri)
    assert "Downloading artifacts" not in capfd.readouterr().err
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert logged_files_digest(uri) == digest
    assert "Downloading artifacts" in capfd.readouterr().err


def test_a_run_without_the_real_sets_never_competes_on_another_total():
    """A run that lost its real sets has only accuracy_total: not compared with production's accuracy_real."""
    production = Evidence.from_tags("1", _tags(_real_summary(0.50, 0.40)), REG.metric)
    no_real = Evidence.from_tags("2", _tags(_summary(0.99)), REG.metric)
    decision = decide(no_real, production, REG)
    assert not decision.promoted and decision.metric == "accuracy_total"
    assert decision.reason == ("its accuracy_total and production v1's accuracy_real are totals over different sets, "
                               "which are never compared; score it on production's sets (a run without the real ones: "
                               "data.real_benchmarks) or promote it with --force")


def test_production_is_copied_to_another_store_with_its_files_digests_and_evidence(store, lifecycle, tmp_path, capsys):
    """``rosetta team seed``'s registry half: the team's registry gets the project's production version."""
    from rosetta.registry.transfer import TAG_COPIED_FROM, copy_production
    from rosetta.fsutil import environ
    from rosetta.registry.refs import fetch_verified

    source, team = store["cfg"].mlflow.tracking_uri, f"sqlite:///{tmp_path / 'team.db'}"
    production = _client(store).get_model_version("rosetta", lifecycle["better"]["decision"].version)
    capsys.readouterr()
    copied = copy_production(store["cfg"], source, {"MLFLOW_TRACKING_URI": team}, "rosetta team seed")
    out = capsys.readouterr().out
    assert copied == "1" and f"rosetta v{production.version} of {source} copied to {team} as rosetta v1" in out
    assert "rosetta v1 promoted to production: no production version yet" in out
    client = MlflowClient(tracking_uri=team, registry_uri=team)
    assert _aliases(client) == {"production": "1"}
    tags = client.get_model_version("rosetta", "1").tags
    for key in ("model.sha256", "model.files.sha256", "benchmark_set", "metric.accuracy_total", "data_version"):
        assert tags[key] == production.tags[key], key
    assert tags[TAG_COPIED_FROM] == f"rosetta v{production.version} of {source}" and tags[TAG_DECISION] == "promoted"
    assert [r.command for r in decision_history(client, "rosetta", "1")] == ["rosetta team seed"]
    with environ({"MLFLOW_TRACKING_URI": team}):  # the registry's own check of every file's digest
        folder = fetch_verified(store["cfg"], "models:/rosetta@production", tmp_path / "from-team").folder
    with environ({"MLFLOW_TRACKING_URI": source}):
        original = fetch_verified(store["cfg"], f"models:/rosetta/{production.version}", tmp_path / "orig").folder
    # Byte for byte, but for the note MLflow writes at each download (which version of which registry it was).
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.name != "registered_model_meta")
    assert files == sorted(p.relative_to(original) for p in original.rglob("*")
                           if p.is_file() and p.name != "registered_model_meta")
    assert all((folder / f).read_bytes() == (original / f).read_bytes() for f in files)
    assert copy_production(store["cfg"], source, {"MLFLOW_TRACKING_URI": team}, "rosetta team seed") is None
    assert f"rosetta@production is v1 in {team} already; nothing copied" in capsys.readouterr().out
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    other_team = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'other-team.db'}"}
    assert copy_production(store["cfg"], empty, other_team, "rosetta team seed") is None
    assert f"no rosetta@production in {empty} to copy" in capsys.readouterr().out
