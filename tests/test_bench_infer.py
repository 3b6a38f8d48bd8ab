"""``rosetta bench infer``: every backend, scope and batch size gets its row, each from a fresh process."""
from __future__ import annotations

import json

from rosetta.bench.infer import BACKENDS, SCOPES


def test_bench_infer_prints_every_row(rosetta_cli, tiny_data, tmp_path):
    result = rosetta_cli("bench", "infer", "--backbones", "mobilenet_v3", "--batch-sizes", "1", "3",
                         "--min-seconds", "0", "--data", str(tiny_data / "lmdb" / "synth" / "val"), "--json",
                         "-o", "eval.threads=1", cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    table, _, rows = result.stdout.partition("\n[")
    rows = json.loads("[" + rows)
    assert [(r["backend"], r["scope"], r["batch_size"]) for r in rows] == [
        (b, s, n) for b in BACKENDS for s in SCOPES for n in (1, 3)]
    lines = table.splitlines()
    assert len(lines) == len(rows) and all(line.startswith("mobilenet_v3") for line in lines)
    assert "ONNX Runtime int8  model only  batch   3" in table
    for r in rows:
        assert r["threads"] == 1 and r["batches"] >= 3 and r["ms_per_image"] > 0
        assert abs(r["images_per_s"] * r["ms_per_image"] - 1000) < 1e-6
        assert 50 < r["peak_rss_mib"] < 2000  # this process's own peak, not its parent's
    # PyTorch is not loaded where ONNX Runtime runs alone: those processes stay far smaller.
    rss = {r["backend"]: r["peak_rss_mib"] for r in rows}
    assert rss["onnx_fp32"] < rss["pytorch"]


def test_bench_infer_without_images_says_so(rosetta_cli, tmp_path):
    result = rosetta_cli("bench", "infer", "--data", str(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: no LMDB found under {tmp_path}; ")
