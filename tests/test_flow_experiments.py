"""DVC experiments that carry their results, read from the session's flow run and one `dvc exp run -S` beside it
(``flow_experiments`` in conftest.py): both list their benchmark scores in `dvc exp show`, `dvc exp diff` and
`dvc plots diff` compare them (the page drawn without a network), and `dvc exp apply` gives a run back whole, so
`dvc repro` reruns nothing."""
from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from dvc_fixtures import DVC, stages_run
from flow_fixtures import PREFECT, REAL_SETS

pytestmark = [pytest.mark.slow, pytest.mark.journey,  # make test-journeys: the README's pipeline and experiments
              pytest.mark.skipif(not (PREFECT.exists() and DVC.exists()), reason="prefect and dvc must be in the venv")]


def test_dvc_exp_show_has_the_scores_of_both_experiments(flow_run, flow_experiments):
    assert "Ran experiment(s): augmented" in flow_experiments["run"].stdout + flow_experiments["run"].stderr
    shown = flow_experiments["shown"]
    for name in (flow_run["experiment"], "augmented"):
        scores = shown[name]["metrics"]["runs/eval/metrics.json"]["data"]
        assert 0 <= scores["accuracy_real"] <= 1 and set(scores["sets"]) == {*REAL_SETS, "synth_test"}, name
        assert all(0 <= s["accuracy"] <= 1 for s in scores["sets"].values())
    assert shown["augmented"]["params"]["params.yaml"]["data"]["train"]["augment"] == ["synth"]


def test_dvc_exp_diff_and_plots_diff_compare_them(flow_experiments):
    diff = flow_experiments["diff"]
    assert diff.returncode == 0, diff.stderr
    changed = json.loads(diff.stdout)["params"]["params.yaml"]
    assert {"train.augment", "registry.margin"} <= set(changed)
    plots = flow_experiments["plots"]
    assert plots.returncode == 0 and "ERROR" not in plots.stderr, plots.stdout + plots.stderr


def test_the_plots_page_needs_no_network(flow_experiments):
    """DVC's page template with vega inline (scripts/dvc_offline_plots.py, `make install`): no script is fetched,
    and headless Chromium with every request sent to a proxy that does not exist draws each chart."""
    from headless_chromium import chromium

    html = flow_experiments["plots_html"].read_text()
    assert "<script src=" not in html and "window.vegaEmbed=" in html
    charts = html.count("vegaEmbed('#")
    assert charts >= 4  # training loss and accuracy, the data check's label lengths and characters
    with chromium(offline=True) as page:
        page.goto(flow_experiments["plots_html"].as_uri())
        drawn = "document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length"
        assert page.wait_for(f"{drawn} >= {charts}", 60), page.js(drawn)


def test_dvc_exp_apply_gives_the_run_back_and_repro_reruns_nothing(flow_stack, flow_experiments):
    always = {name for name, stage in yaml.safe_load((flow_stack.repo / "dvc.yaml").read_text())["stages"].items()
              if stage.get("always_changed")}
    status = json.loads(flow_experiments["status"])
    assert all(name in always and entries == ["always changed"] for name, entries in status.items()), status
    assert set(stages_run(flow_experiments["repro"])) <= always, flow_experiments["repro"]


def test_the_readme_exp_show_line_fits_a_220_column_terminal(flow_stack, flow_experiments):
    """The README's one `dvc exp show` line: the scores and what changed, no column folded away."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(line.split("#")[0].strip() for line in readme.splitlines() if line.startswith(".venv/bin/dvc exp show"))
    done = subprocess.run(shlex.split(line.replace(".venv/bin/dvc", str(DVC))), cwd=flow_stack.repo,
                          env={**flow_stack.env, "COLUMNS": "220"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    header = next(row for row in done.stdout.splitlines() if "Experiment" in row)
    assert "…" not in header and max(map(len, done.stdout.splitlines())) <= 220, done.stdout
    for column in ("accuracy_real", *REAL_SETS, "synth_test", "images_per_s", "train.augment"):
        assert column in header, header


def test_the_experiment_names_its_training_run(flow_stack, flow_experiments):
    """DVC names the experiment to its stages: the MLflow run says which it is, and its name leads with the recipe
    setting the experiment changed."""
    client = MlflowClient(tracking_uri=flow_stack.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("rosetta").experiment_id],
                                "tags.dvc_experiment = 'augmented' and tags.backbone != ''")
    changes = run.info.run_name.split(" ")[3:7]
    assert "augment=synth" in changes and not any(c.startswith(("max_steps", "train_size")) for c in changes)
    assert not run.data.tags["git_commit"].endswith("-dirty")
