"""``rosetta bench train`` measures each backbone with synthetic tensors, the LMDB loader and the loader alone."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow


def test_bench_train_reports_throughput_and_memory(tmp_path, rosetta_cli, tiny_data):
    data = tiny_data / "lmdb" / "synth" / "train"
    proc = rosetta_cli("bench", "train", "--backbones", "mobilenet_v3", "--batch-size", "4", "--steps", "2",
                   "--warmup", "1", "--data", str(data), "--json", "-o", "train.num_workers=0",
                   "-o", "train.threads=1", "-o", "train.device=cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[1:3] for line in lines[:3]] == [["synthetic", "tensors"], ["LMDB", "loader"],
                                                          ["loader", "alone"]]
    rows = json.loads("\n".join(lines[3:]))
    assert [r["mode"] for r in rows] == ["synthetic", "loader", "loader_only"]
    for r in rows:
        assert r["images_per_s"] > 0 and r["peak_rss_mib"] > 50 and r["batch_size"] == 4
        assert r["ms_per_image"] == pytest.approx(1000 / r["images_per_s"])


def test_bench_without_data_says_what_to_do(tmp_path, rosetta_cli):
    proc = rosetta_cli("bench", "train", "--data", str(tmp_path / "nothing"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no training LMDB" in proc.stderr and proc.stderr.count("\n") == 1


def test_bench_train_measures_processes_together(tmp_path, rosetta_cli):
    proc = rosetta_cli("bench", "train", "--backbones", "mobilenet_v3", "--batch-size", "4", "--steps", "2",
                       "--warmup", "1", "--modes", "synthetic", "--processes", "2", "--json",
                       "-o", "train.threads=1", "-o", "train.device=cpu", "-o", "model.backbone.scale=0.35",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 processes x batch 4" in proc.stdout.splitlines()[0]
    (row,) = json.loads("\n".join(proc.stdout.splitlines()[1:]))
    assert row["processes"] == 2 and row["threads"] == 1 and row["batch_size"] == 4
    # The configured MobileNetV3 is measured (scale 0.35 from -o), not the preset's 0.5.
    from model_fixtures import config
    from rosetta.modeling import build_model

    count = lambda scale: sum(p.numel() for p in build_model(config(f"model.backbone.scale={scale}").model, 37).parameters())
    assert row["model_params"] == count(0.35) != count(0.5)
    assert f"{count(0.35) / 1e6:.2f} M params" in proc.stdout.splitlines()[0]
    # two ranks' images over the slower rank's time
    assert row["ms_per_image"] == pytest.approx(1000 / row["images_per_s"])


def test_each_rank_of_a_loader_measurement_reads_a_whole_batch(tiny_data):
    # A rank counts batch_size images a step, so it must read batch_size of them, as training's ranks do:
    # a plan drawing one batch for the group would halve each rank's share and double the figure.
    from rosetta.bench.train import _batches_from_loader
    from rosetta.config import Config

    data = tiny_data / "lmdb" / "synth" / "train"
    firsts = []
    for rank in (0, 1):
        images, targets, lengths = next(_batches_from_loader(Config(), data, 4, rank=rank, world_size=2))
        assert images.shape[0] == targets.shape[0] == lengths.shape[0] == 4
        firsts.append(images)
    assert not torch.equal(firsts[0], firsts[1])  # the ranks read different words
