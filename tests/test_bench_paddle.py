"""``scripts/bench_paddle.py`` (``make bench-paddle``) without Paddle: the table and its ratios from given rows, the
CPU line, the one-sentence errors for a missing PaddleOCR checkout or Paddle python, and make checking the checkout
before it installs anything."""
from __future__ import annotations

import shutil
import subprocess

import pytest

import bench_paddle  # scripts/bench_paddle.py (conftest puts scripts/ on the path)
from bench_paddle import OURS_1, OURS_2P, OURS_2T, PADDLE_1, PADDLE_2T
from rosetta.errors import RosettaError
from rosetta.params import PROJECT_ROOT


def _row(setup, images_per_s: float) -> dict:
    row = {"setup": setup.label, "side": setup.side, "images_per_s": images_per_s}
    return {**row, "cpu_per_wall": 0.98} if setup.side == "paddle" else row


def test_the_table_gives_medians_and_the_ratios_of_each_comparison():
    speeds = {OURS_1: (150.0, 160.0), PADDLE_1: (50.0, 40.0), OURS_2P: (300.0, 320.0), OURS_2T: (200.0, 220.0),
              PADDLE_2T: (80.0, 100.0)}
    rows = [_row(setup, speeds[setup][r]) for r in range(2) for setup in bench_paddle.ROUND]
    text = bench_paddle.report(rows, ["CPU: test"])
    lines = text.splitlines()
    assert lines[0] == "CPU: test"
    assert "| ours, 1 process x 1 thread, batch 64 | 150.0 / 160.0 | 155.0 | 6.45 | - |" in lines
    assert "| Paddle, 1 process x 2 threads, batch 64 | 80.0 / 100.0 | 90.0 | 11.11 | 0.98 / 0.98 |" in lines
    assert "| ours, 2 processes x 1 thread, batch 32 each | 300.0 / 320.0 | 310.0 | 3.23 | - |" in lines
    # ratio of the medians, and each round's own ratio (rows of a round ran together)
    assert "| 1 thread (speed per thread) | 155.0 | 45.0 | **3.44** (3.00, 4.00) |" in lines
    assert ("| 2 cores: ours as the recipe trains (2 processes x 32) / Paddle 2 threads | 310.0 | 90.0 | **3.44** "
            "(3.75, 3.20) |") in lines
    assert "| 2 cores: ours 2 threads / Paddle 2 threads | 210.0 | 90.0 | **2.33** (2.50, 2.20) |" in lines


def test_the_cpu_line_names_the_model_and_avx512():
    lscpu = "Architecture:  x86_64\nCPU(s):        2\nModel name:    AMD EPYC\nFlags:         fpu sse avx2 avx512f\n"
    assert bench_paddle.describe_cpu(lscpu, "") == "AMD EPYC, 2 CPUs, avx512f: yes"
    cpuinfo = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx2 avx512vl\n"
    line = bench_paddle.describe_cpu("", cpuinfo)
    assert line.startswith("Intel Xeon, ") and line.endswith(", avx512f: no")  # avx512vl is not avx512f


def test_a_paddleocr_checkout_is_what_holds_the_network_files(tmp_path):
    with pytest.raises(RosettaError) as unset:
        bench_paddle.paddleocr_checkout(None)
    clone = "(git clone https://github.com/PaddlePaddle/PaddleOCR)"
    assert str(unset.value) == ("no PaddleOCR checkout given; pass --paddleocr DIR (make bench-paddle PADDLEOCR=DIR) "
                                f"with the folder of a PaddleOCR clone {clone}")
    with pytest.raises(RosettaError) as empty:
        bench_paddle.paddleocr_checkout(str(tmp_path))
    assert str(empty.value) == (f"{tmp_path}: not a PaddleOCR checkout (no ppocr/modeling/backbones/"
                                f"rec_mobilenet_v3.py); pass the folder of a PaddleOCR clone {clone}")
    for name in bench_paddle.PADDLEOCR_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    assert bench_paddle.paddleocr_checkout(str(tmp_path)) == tmp_path.resolve()


def test_errors_are_one_sentence_and_exit_2(tmp_path, capsys):
    assert bench_paddle.main(["--check-only", "--paddleocr", ""]) == 2
    assert capsys.readouterr().err.startswith("error: no PaddleOCR checkout given; ")
    for name in bench_paddle.PADDLEOCR_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    assert bench_paddle.main(["--check-only", "--paddleocr", str(tmp_path)]) == 0
    assert bench_paddle.main(["--paddleocr", str(tmp_path), "--paddle-python", str(tmp_path / "nopython")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {tmp_path / 'nopython'}: no Python here; `make bench-paddle` makes .venv-paddle, or pass "
                   "--paddle-python with the python of a venv holding paddlepaddle==2.6.2\n")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_checks_the_checkout_before_making_the_paddle_venv(tmp_path):
    def plan(*assignments: str) -> list[str]:
        return subprocess.run(["make", "-n", "bench-paddle", f"VENV={tmp_path / 'venv'}", "PADDLEOCR=/x",
                               f"PADDLE_VENV={tmp_path / 'paddle'}", *assignments], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()

    lines = plan()
    check = next(i for i, line in enumerate(lines) if "--check-only" in line)
    install = next(i for i, line in enumerate(lines) if "pip install paddlepaddle==2.6.2 numpy==1.26.4" in line)
    assert check < install
    # a given Paddle python is used as it is: no venv made
    assert not any("paddlepaddle" in line for line in plan("PADDLE_PYTHON=/opt/paddle/bin/python"))
