"""The README's `mlflow ui` comparison picture (docs/mlflow_compare.png), taken from real runs so it stays true:
two short trainings (two MobileNetV3 recipes on a few hundred rendered words) evaluated as the pipeline
does it (synth_test, and the real sets where data.real_benchmarks has them) into a fresh store, `mlflow ui`
serving it, and headless Chromium on the Compare page with the params' "Show diff only" on.
``make mlflow-screenshot``.

Needs Debian's ``chromium`` (``make mlflow-screenshot`` installs it). The runs stay in ``--work`` for a look.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Two recipes: the default backbone, and a smaller one trained with augmentation. (ResNet34_vd trains at a few
# images per second on 2 CPU cores: too slow for a picture.)
RUNS = {"default": [], "small": ["model.backbone.model_name=small", "train.augment=true"]}


def train_and_evaluate(work: Path, steps: int) -> tuple[str, list[str]]:
    """Render the tiny data, train and evaluate the two runs; returns the store's URI and the run ids."""
    from rosetta.config import load_config
    from rosetta.evaluation.evaluate import evaluate_benchmarks
    from rosetta.layout import DataLayout
    from rosetta.params import project_path
    from rosetta.prep.benchmarks import convert_real_benchmarks, real_lmdbs, write_real_manifest
    from rosetta.prep.convert import convert_sources
    from rosetta.prep.download import prepare_raw
    from rosetta.training.trainer import run_training

    uri = f"sqlite:///{work / 'mlflow.db'}"
    base = load_config(ROOT / "params.yaml")
    fonts = base.data.synth.font_packages  # relative to the project, as the real sets' folder
    common = [f"data.root={work / 'data'}", "data.synth.train_size=400", "data.synth.val_size=50",
              "data.synth.test_size=100", f"data.real_benchmarks={project_path(base.data.real_benchmarks, ROOT)}",
              f"data.synth.font_packages={fonts and project_path(fonts, ROOT)}",
              f"mlflow.tracking_uri={uri}", f"train.max_steps={steps}", "train.warmup_steps=20",
              "train.batch_size=16", f"train.eval_every={steps}", f"train.checkpoint_every={steps}",
              "train.log_every=10", "train.log_model=false", "train.num_workers=0", "eval.batch_size=64"]
    cfg = load_config(ROOT / "params.yaml", common)
    layout = DataLayout.from_config(cfg)
    prepare_raw(cfg.data, cfg.seed, layout)
    convert_sources(cfg.data, layout)
    write_real_manifest(cfg.data.real_benchmarks, layout.real_manifest)
    convert_real_benchmarks(layout.real_manifest, layout.real_benchmarks, cfg.data.workers)
    run_ids = []
    for name, extra in RUNS.items():
        cfg = load_config(ROOT / "params.yaml", [*common, *extra, f"train.out_dir={work / 'runs' / name}"])
        result = run_training(cfg, resume=False)
        evaluate_benchmarks(result.best_checkpoint, layout.benchmarks, cfg, work / "runs" / name / "eval",
                            result.run_id, real_dir=real_lmdbs(layout.real_benchmarks))
        run_ids.append(result.run_id)
    return uri, run_ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


# Closes the assistant panel MLflow opens on the right (its close button, by the id MLflow gives it).
CLOSE_ASSISTANT = """
(() => {
  const close = document.querySelector('[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (close) close.click();
  return Boolean(close);
})()
"""

# Turns on the "Show diff only" switch of the params table (the metrics all stay: equal scores matter too).
SHOW_DIFF_ONLY = """
(() => {
  const label = [...document.querySelectorAll('label, span')].find(e => e.textContent.trim() === 'Show diff only');
  let box = label;
  for (let i = 0; i < 4 && box; i++, box = box.parentElement) {
    const sw = box.querySelector('button[role=switch], input[type=checkbox]');
    if (sw) { if (sw.getAttribute('aria-checked') !== 'true' && !sw.checked) sw.click(); return true; }
  }
  return false;
})()
"""


def screenshot(uri: str, run_ids: list[str], out: Path, width: int, height: int) -> None:
    from mlflow import MlflowClient

    from headless_chromium import chromium

    exp_id = MlflowClient(tracking_uri=uri).get_run(run_ids[0]).info.experiment_id
    port = free_port()
    server = subprocess.Popen([str(BIN / "mlflow"), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", 120)
        with chromium(width, height) as page:
            query = urllib.parse.urlencode({"runs": json.dumps(run_ids), "experiments": json.dumps([exp_id]),
                                            "workflowType": "machine_learning"})
            page.goto(f"http://127.0.0.1:{port}/#/compare-runs?{query}")
            if not page.wait_text("Show diff only"):
                raise SystemExit("the MLflow Compare page never showed 'Show diff only'")
            time.sleep(3)  # the charts draw after the tables
            page.js(CLOSE_ASSISTANT)
            page.click_text("Visualizations")  # folded: the params and metrics come up
            page.js(SHOW_DIFF_ONLY)
            time.sleep(2)
            shot = page.send("Page.captureScreenshot", format="png")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "mlflow_compare.png")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "rosetta-mlflow-screenshot",
                   help="where the tiny data, the runs and their store go (replaced)")
    p.add_argument("--steps", type=int, default=800, help="training steps of each run (about 4 min each on 2 cores)")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1150)
    p.add_argument("--reuse", action="store_true", help="photograph the runs already in --work")
    args = p.parse_args()
    work = args.work.resolve()
    if args.reuse:
        state = json.loads((work / "runs.json").read_text())
        uri, run_ids = state["uri"], state["run_ids"]
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        os.chdir(work)
        uri, run_ids = train_and_evaluate(work, args.steps)
        (work / "runs.json").write_text(json.dumps({"uri": uri, "run_ids": run_ids}))
    screenshot(uri, run_ids, args.out, args.width, args.height)
    print(f"wrote {args.out} (runs in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
