"""``scripts/recipe_curve.py``: the curve's points from a metric's MLflow history, on a real sqlite store."""
from __future__ import annotations

from mlflow import MlflowClient

import recipe_curve  # scripts/recipe_curve.py (conftest puts scripts/ on the path)


def test_minutes_follow_the_stated_speed_and_the_table_lists_every_evaluation(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("curve", artifact_location=(tmp_path / "art").as_uri()))
    rid = run.info.run_id
    client.log_param(rid, "train.batch_size", "32")
    client.log_param(rid, "train.nproc", "2")
    start = run.info.start_time
    for step, value, after_s in ((2400, 0.55, 600), (1200, 0.40, 300)):  # out of order: drawn by step
        client.log_metric(rid, "val/real_accuracy", value, timestamp=start + after_s * 1000, step=step)
    curve = recipe_curve.run_curve(client, rid, images_per_s=256)
    assert [p.step for p in curve] == [1200, 2400]
    assert curve[0].minutes == 1200 * 64 / 256 / 60 == 5.0 and curve[1].wall_minutes == 10.0
    out = tmp_path / "curve.png"
    assert recipe_curve.main(["--tracking-uri", uri, "--run", f"default={rid}", "--images-per-s", "256",
                              "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| default | 2,400 | 10.0 | 10.0 | 0.5500 |" in printed and out.read_bytes()[:4] == b"\x89PNG"
    assert recipe_curve.main(["--tracking-uri", uri, "--run", rid, "--images-per-s", "256"]) == 2
    assert "give LABEL=RUN_ID" in capsys.readouterr().err
