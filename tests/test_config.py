"""Configuration: params.yaml loads into typed objects; bad keys end in one sentence naming the key;
profiles are overlays on it; the dataclass defaults are params.yaml's."""
from pathlib import Path

import pytest

from rosetta.config import (BACKBONE_PRESETS, Config, ConfigError, MobileNetV3Config, ResNetConfig, config_from_dict,
                            load_config)
from rosetta.params import param_differences

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
FULL_SCALE = [p for p in PROFILES if p.stem.startswith("rosetta_")]  # PaddleOCR's recipes; finetune.yaml is ours


def test_project_params_load_and_round_trip():
    cfg = load_config(ROOT / "params.yaml")
    assert isinstance(cfg, Config)
    assert config_from_dict(cfg.to_dict()) == cfg


def test_override_types_are_read_as_yaml():
    cfg = config_from_dict({}, ["train.lr=1e-3", "train.augment=true", "train.betas=[0.8, 0.99]",
                                "model.backbone={name: ResNet, layers: 34}"])
    assert cfg.train.lr == 1e-3 and cfg.train.augment is True and cfg.train.betas == [0.8, 0.99]
    assert cfg.model.backbone == ResNetConfig(layers=34)


def test_dataclass_defaults_are_params_yaml():
    differ = param_differences(Config().to_dict(), load_config(ROOT / "params.yaml").to_dict())
    assert not differ, f"config.py's defaults must equal params.yaml's (default -> params.yaml): {differ}"


def test_backbone_in_paddleocr_shape_and_by_preset_name():
    assert load_config(ROOT / "params.yaml").model.backbone == MobileNetV3Config(model_name="small", scale=0.5)
    r34 = config_from_dict({}, ["model.backbone=resnet34_vd"])
    assert r34.model.backbone == BACKBONE_PRESETS["resnet34_vd"] == ResNetConfig(layers=34)
    assert r34.to_dict()["model"]["backbone"] == {"name": "ResNet", "layers": 34}  # no MobileNetV3 keys
    small = config_from_dict({}, ["model.backbone.model_name=small", "model.backbone.scale=0.35"])
    assert small.model.backbone == MobileNetV3Config(model_name="small", scale=0.35)
    assert config_from_dict(r34.to_dict()) == r34


@pytest.mark.parametrize("profile", FULL_SCALE, ids=[p.stem for p in FULL_SCALE])
def test_each_full_scale_profile_is_an_overlay_on_params_yaml(profile):
    base = load_config(ROOT / "params.yaml").to_dict()
    cfg = load_config(profile)
    assert cfg.train.optimizer == "adam" and cfg.train.lr == 5e-4 and cfg.train.batch_size == 256
    assert cfg.data.sources == ["mjsynth", "synthtext"]
    # Keys a profile does not hold come from params.yaml.
    assert cfg.charset == load_config(ROOT / "params.yaml").charset and cfg.export.opset == base["export"]["opset"]
    # and -c with -o still works on a profile
    assert load_config(profile, ["train.lr=1e-4"]).train.lr == 1e-4


def test_the_finetune_profile_starts_from_production_and_replays_the_base_data():
    base = load_config(ROOT / "params.yaml")
    cfg = load_config(ROOT / "profiles" / "finetune.yaml")
    assert cfg.train.init_from == "models:/rosetta@production" and cfg.model == base.model
    assert cfg.train.batch_ratio["synth"] > 0 and cfg.train.source_start_step == {"real": 0}
    assert cfg.charset.dict_path == "profiles/dicts/printable_94.txt" and cfg.data.sources == base.data.sources
    assert cfg.registry.guarded_sets == ["synth_test"]


def test_r34_profile_carries_no_mobilenet_keys():
    cfg = load_config(ROOT / "profiles" / "rosetta_r34_vd.yaml")
    assert cfg.to_dict()["model"]["backbone"] == {"name": "ResNet", "layers": 34} and cfg.train.shuffle is True
    assert load_config(ROOT / "profiles" / "rosetta_mv3.yaml").model.backbone == MobileNetV3Config(model_name="large")


def test_overlay_merges_key_by_key_and_a_backbone_of_another_name_whole(tmp_path):
    (tmp_path / "base.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "small.yaml").write_text("base: base.yaml\nmodel: {backbone: {scale: 0.35}}\ntrain: {lr: 1.0e-3}\n")
    small = load_config(tmp_path / "small.yaml")
    assert small.model.backbone == MobileNetV3Config(model_name="small", scale=0.35) and small.train.lr == 1e-3
    assert small.train.batch_size == load_config(tmp_path / "base.yaml").train.batch_size
    (tmp_path / "r34.yaml").write_text("base: small.yaml\nmodel: {backbone: {name: ResNet, layers: 34}}\n")
    assert load_config(tmp_path / "r34.yaml").model.backbone == ResNetConfig()


def test_overlay_errors_name_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: its base: chain comes back to itself"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: configuration file not found"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("override, message", [
    ("model.backbone=resnet35", "model.backbone: 'resnet35' is not one of mobilenet_v3, resnet34_vd, nor a mapping"),
    ("model.backbone.scale=0.6", "model.backbone.scale: 0.6 is not one of 0.35, 0.5, 0.75, 1.0, 1.25"),
    ("model.backbone={name: ResNet, layers: 50}", "model.backbone.layers: 50 is not one of 34"),
    ("model.backbone={name: VGG}", "model.backbone.name: 'VGG' is not one of MobileNetV3, ResNet"),
    ("model.backbone={name: ResNet, scale: 0.5}", "model.backbone.scale: unknown key (known keys: layers, name)"),
    ("train.lrr=1", "train.lrr: unknown key"),
    ("train.lr=fast", "train.lr: 'fast' is not a number"),
    ("train.batch_size=2.5", "train.batch_size: 2.5 is not an integer"),
    ("train.batch_size=0", "train.batch_size: 0 must be between 1 and 65536 (images a step, per process)"),
    ("train.augment=3", "train.augment: 3 is not true or false or a list of one of synth, mjsynth, synthtext, lmdb, real"),
    ("model.image_height=48", "model.image_height: 48 must be 32"),
    ("data.sources=[synth, mnist]", "data.sources[1]: 'mnist' is not one of synth, mjsynth, synthtext, lmdb, real"),
    ("bogus=1", "bogus: unknown key"),
    ("train=3", "train: expected a mapping of settings"),
    ("noequals", "must look like section.key=value"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as exc:
        config_from_dict({}, [override])
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_cli_reports_config_error_in_one_line(rosetta_cli):
    proc = rosetta_cli("summary", "-c", str(ROOT / "params.yaml"), "-o", "model.backbone=resnet35")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: model.backbone: 'resnet35' is not one of mobilenet_v3, resnet34_vd, nor a "
                                   "mapping with a name (MobileNetV3, ResNet)")


def test_project_root_is_the_working_directorys_project_not_the_installed_checkout(tmp_path, monkeypatch):
    from rosetta.params import PROJECT_ROOT, project_root
    from rosetta.tracking.store import tracking_uri

    second = tmp_path / "second-checkout"  # a clone sharing this checkout's virtual environment
    (second / "stages").mkdir(parents=True)
    (second / "params.yaml").write_text((ROOT / "params.yaml").read_text().replace("seed: 42", "seed: 7", 1))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(second / "stages")
    assert project_root() == second.resolve()
    cfg = load_config()
    assert cfg.seed == 7
    assert tracking_uri(cfg) == f"sqlite:///{second.resolve() / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # in no project: the checkout the package is installed from
    assert project_root() == PROJECT_ROOT and load_config().seed == 42


def test_a_second_store_in_one_process_is_the_second_configs_not_the_first(tmp_path, monkeypatch):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; that export is ours, not the user's setting.
    import dataclasses

    import mlflow

    from rosetta.tracking.store import activate_store, tracking_uri

    def config(folder: str):
        cfg = load_config(ROOT / "params.yaml")
        return dataclasses.replace(cfg, mlflow=dataclasses.replace(
            cfg.mlflow, tracking_uri=f"sqlite:///{tmp_path / folder / 'mlflow.db'}"))

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second = config("a"), config("b")
    activate_store(tracking_uri(first))
    assert mlflow.get_tracking_uri() == tracking_uri(first)
    assert tracking_uri(second) == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////users/own.db")  # the user's own setting wins
    assert tracking_uri(second) == "sqlite:////users/own.db"
    activate_store(tracking_uri(second))
    assert tracking_uri(first) == "sqlite:////users/own.db"


def test_one_list_of_operational_settings_serves_mlflow_resume_and_dvc(tiny_data):
    """Field metadata on the schema is the one list: MLflow's params, the resume fingerprint and the train stage's
    DVC params (tests/test_dvc_deps.py) all leave out exactly the marked settings."""
    from dataclasses import fields, replace

    from dvc_deps import train_stage_params
    from rosetta.config import TrainConfig, operational_keys, result_params
    from rosetta.data.splits import training_sets
    from rosetta.training.resume import fingerprint
    from rosetta_infer.charset import Charset

    cfg = load_config(ROOT / "params.yaml", [f"data.root={tiny_data}", "data.sources=[synth]", "train.batch_ratio={}"])
    marked = operational_keys(cfg)
    # The settings the two former lists disagreed on, decided once.
    assert {"train.channels_last", "train.threads", "train.device", "train.compile", "eval", "mlflow"} <= marked
    assert not {"train.nproc", "train.eval_every", "train.val_samples", "train.lr"} & marked
    params = result_params(cfg)
    assert not [k for k in params if any(k == m or k.startswith(m + ".") for m in marked)]
    assert "train.eval_every" in params and "train.channels_last" not in params
    dvc_train = {k for k in train_stage_params() if k.startswith("train.")}
    assert dvc_train == {f"train.{f.name}" for f in fields(TrainConfig)} - marked

    streams = training_sets(cfg, Charset(), 1).streams

    def print_of(**train):
        return fingerprint(replace(cfg, train=replace(cfg.train, **train)), streams, 1)

    base = print_of()
    assert print_of(channels_last=False, threads=2, log_every=7, checkpoint_every=9) == base  # operational: resumes
    for changed in ({"eval_every": 7}, {"val_samples": 5}, {"nproc": 4}, {"lr": 1e-4}):
        assert print_of(**changed) != base, changed  # a result setting: a new run
