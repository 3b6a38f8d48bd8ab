"""Configuration: params.yaml loads into typed objects; bad keys end in one sentence naming the key."""
import subprocess
import sys
from pathlib import Path

import pytest

from rosetta.config import Config, ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_project_params_load_and_round_trip():
    cfg = load_config(ROOT / "params.yaml")
    assert isinstance(cfg, Config)
    assert config_from_dict(cfg.to_dict()) == cfg


def test_override_types_are_read_as_yaml():
    cfg = config_from_dict({}, ["train.lr=1e-3", "train.augment=true", "train.betas=[0.8, 0.99]",
                                "model.backbone=resnet34_vd"])
    assert cfg.train.lr == 1e-3 and cfg.train.augment is True and cfg.train.betas == [0.8, 0.99]
    assert cfg.model.backbone == "resnet34_vd"


@pytest.mark.parametrize("override, message", [
    ("model.backbone=resnet35", "model.backbone: 'resnet35' is not one of resnet34_vd, mobilenet_v3"),
    ("model.mobilenet_v3.scale=0.6", "model.mobilenet_v3.scale: 0.6 is not one of 0.35, 0.5, 0.75, 1.0, 1.25"),
    ("train.lrr=1", "train.lrr: unknown key"),
    ("train.lr=fast", "train.lr: 'fast' is not a number"),
    ("train.batch_size=2.5", "train.batch_size: 2.5 is not an integer"),
    ("train.batch_size=0", "train.batch_size: 0 must be at least 1"),
    ("train.augment=3", "train.augment: 3 is not true or false"),
    ("model.image_height=48", "model.image_height: 48 must be 32"),
    ("data.sources=[synth, mnist]", "data.sources[1]: 'mnist' is not one of synth, mjsynth, synthtext, lmdb"),
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


def test_cli_reports_config_error_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rosetta", "summary", "-c", str(ROOT / "params.yaml"),
                           "-o", "model.backbone=resnet35"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: model.backbone: 'resnet35' is not one of resnet34_vd, mobilenet_v3"
