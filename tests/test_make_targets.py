"""What each make target installs, read from make's own plan (``make -n`` on a venv that does not exist yet): the
demo only what it runs; the team's PostgreSQL, the UI tests' Chromium and the image tools with their targets."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from rosetta.params import PROJECT_ROOT

LISTS = {"fonts": "debian-fonts.txt", "postgresql": "debian-postgresql.txt", "chromium": "debian-screenshot.txt",
         "podman": "debian-podman.txt"}


def _installs(target: str, venv) -> set[str]:
    """The Debian package lists ``make TARGET`` would install on a fresh clone."""
    plan = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60, check=True).stdout
    named = set(re.findall(r"install_debian_packages\.sh packages/(\S+)", plan))
    return {name for name, listed in LISTS.items() if listed in named}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_demo_installs_only_what_it_runs_and_each_server_comes_with_its_target(tmp_path):
    venv = tmp_path / "venv"
    assert _installs("demo", venv) == {"fonts"}
    assert _installs("test", venv) == {"fonts"}  # what CI runs, with test-journeys
    assert _installs("test-journeys", venv) == {"fonts", "postgresql", "chromium", "podman"}
    assert _installs("team-up", venv) == {"fonts", "postgresql"}
    assert _installs("mlflow-screenshot", venv) == {"fonts", "chromium"}
    assert _installs("image-serve", venv) == {"podman"}
