"""``scripts/gpu_check.py`` (``make gpu-check``): its dry mode runs every row on the CPU and writes the table as
JSON; a row that breaks is one FAIL line naming it, and the check goes on."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from rosetta.params import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_mode_runs_every_row_and_writes_the_table(tmp_path, rosetta_cli):
    out = tmp_path / "check.json"
    gpu = torch.cuda.is_available()  # on a GPU host the dry mode must be asked for
    proc = subprocess.run([sys.executable, str(SCRIPT), *(["--dry"] if gpu else []), "--work", str(tmp_path / "work"),
                           "--json", str(out)], cwd=tmp_path, env=rosetta_cli.env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(("--dry" if gpu else "no CUDA GPU here") + ": running the dry mode (tiny sizes, CPU")

    report = json.loads(out.read_text())
    assert report["mode"] == "dry" and report["failures"] == []
    rows = {(r["check"], r["name"]): r for r in report["rows"]}
    ran = {k: r for k, r in rows.items() if r["status"] == "ok"}
    assert set(ran) == {("data", "synth 32/8/4"), ("train", "mobilenet_v3 fp32"), ("train", "mobilenet_v3 bf16"),
                        ("train", "resnet34_vd fp32"), ("torchrun", "2 process(es), gloo"),
                        ("resume", "mobilenet_v3 fp32, killed and resumed"), ("export", "mobilenet_v3 fp32 -> onnx"),
                        ("evaluate", "mobilenet_v3 fp32 on cpu")}
    for key in [k for k in ran if k[0] in ("train", "torchrun")]:
        r = ran[key]
        assert r["steps"] == 3 and r["images_per_s"] > 0 and r["peak_memory_mib"] > 100 and r["loss"] > 0, r
    bf16 = ran[("train", "mobilenet_v3 bf16")]
    assert bf16["loss_vs_fp32"] == pytest.approx((bf16["loss"] - ran[("train", "mobilenet_v3 fp32")]["loss"])
                                                 / ran[("train", "mobilenet_v3 fp32")]["loss"])
    assert ran[("torchrun", "2 process(es), gloo")]["note"] == "2 ranks ended with identical weights"
    resume = ran[("resume", "mobilenet_v3 fp32, killed and resumed")]
    assert resume["steps"] == 6 and resume["note"].startswith("killed at step ") and "same MLflow run" in resume["note"]
    assert ran[("export", "mobilenet_v3 fp32 -> onnx")]["note"].startswith("CPUExecutionProvider: max |p_onnx")
    evaluated = ran[("evaluate", "mobilenet_v3 fp32 on cpu")]
    assert evaluated["val_accuracy"] == ran[("train", "mobilenet_v3 fp32")]["val_accuracy"]
    assert evaluated["images_per_s"] > 0 and "on 8 images" in evaluated["note"]
    # Everything the CPU cannot run is listed with the reason, not silently left out.
    skipped = {k[1]: r["note"] for k, r in rows.items() if r["status"] == "skip"}
    assert len(skipped) == 9 and "fp16 needs CUDA" in skipped["resnet34_vd fp16"]
    assert [e["backbone"] for e in report["estimates"]] == ["mobilenet_v3", "resnet34_vd"]
    assert report["estimates"][0]["hours_per_epoch_1"] == pytest.approx(
        14.4e6 / report["estimates"][0]["images_per_s"] / 3600, rel=1e-2)

    # The printed table holds the same rows, and the verdict.
    table = proc.stdout[proc.stdout.index(" check "):]
    for check, name in ran:
        assert f"{check} " in table and name in table
    assert "published: CRNN ResNet34_vd (mindocr) on 8 x Ascend 910: 6,695 img/s -> 0.60 h per epoch" in table
    assert "all rows passed (dry mode" in table


def test_a_broken_row_is_one_line_and_the_check_goes_on(tmp_path, capsys):
    gc = _module()
    check = gc.GpuCheck(gc.dry_plan(300), tmp_path, {}, gc.LOSS_RTOL)
    check.train("mobilenet_v3", "fp32", False)  # no data was rendered: `rosetta train` refuses
    check.export()  # goes on, and says why it has nothing to export
    rows = check.report.rows
    assert [(r.check, r.status) for r in rows] == [("train", "FAIL"), ("export", "skip")]
    assert len(check.report.failures) == 1
    line = check.report.failures[0]
    assert line.startswith("FAIL train mobilenet_v3 fp32: exit status 2: error: ")
    assert f"(log: {tmp_path / 'logs' / 'train_mobilenet_v3_fp32.log'})" in line and "\n" not in line
    assert line in capsys.readouterr().out


def test_half_precision_must_track_fp32_loss(tmp_path):
    gc = _module()
    check = gc.GpuCheck(gc.dry_plan(300), tmp_path, {}, gc.LOSS_RTOL)
    for precision, compiled, loss in (("fp32", False, 2.0), ("bf16", False, 2.2), ("fp16", False, 2.9),
                                      ("bf16", True, 1.8)):
        check.add(gc.Row("train", gc._train_name("resnet34_vd", precision, compiled), backbone="resnet34_vd",
                         precision=precision, compile=compiled, steps=300, images_per_s=100.0, loss=loss))
    check.compare_losses()
    status = {r.name: (r.status, round(r.loss_vs_fp32, 3) if r.loss_vs_fp32 is not None else None)
              for r in check.report.rows}
    # Tolerance 0.05 + 15 % of fp32's 2.0 = 0.35.
    assert status == {"resnet34_vd fp32": ("ok", None), "resnet34_vd bf16": ("ok", 0.1),
                      "resnet34_vd fp16": ("FAIL", 0.45), "resnet34_vd bf16 compile": ("ok", -0.1)}
    assert check.report.failures == [
        "FAIL train resnet34_vd fp16: loss 2.9000 after 300 steps does not track fp32's 2.0000 (+45.0%; "
        "tolerance 0.05 + 15%)"]


def test_gpu_plan_runs_compile_last_and_lists_what_the_card_lacks():
    gc = _module()
    plan = gc.gpu_plan(gpus=1, bf16=True, steps=300, batch_size=256, budget_s=450)
    assert plan.train_rows == tuple((b, p, False) for b in gc.BACKBONES for p in ("fp32", "bf16", "fp16"))
    # Compiling is the slow part: after torchrun, resume and export, the recommended precision first.
    assert plan.late_rows[:2] == (("mobilenet_v3", "bf16", True), ("resnet34_vd", "bf16", True))
    assert len(plan.late_rows) == 6 and plan.skipped_rows == ()
    assert plan.synth[0] == 50 * 256 and plan.resume_precision == "fp16" and plan.torchrun_procs == 1
    old_card = gc.gpu_plan(gpus=2, bf16=False, steps=300, batch_size=256, budget_s=450)
    assert all(p != "bf16" for _, p, _ in old_card.train_rows + old_card.late_rows)
    assert {(b, p, c) for b, p, c, _ in old_card.skipped_rows} == {(b, "bf16", c) for b in gc.BACKBONES
                                                                    for c in (False, True)}
    assert old_card.torchrun_precision == "fp16"


def test_a_folder_it_did_not_make_is_never_emptied(tmp_path, capsys):
    gc = _module()
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    assert gc.main(["--dry", "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {tmp_path} holds files that no earlier gpu check wrote; name an empty or new folder "
                   "with --work\n")
    assert keep.read_text() == "mine"
