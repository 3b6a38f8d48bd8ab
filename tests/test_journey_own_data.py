"""The README's "Read text" and "Bring your own data", command for command, in a clone of the project with tiny
params (the scale is the test's; the commands are the README's): `dvc repro` makes a production model, `rosetta
predict` reads crops with it, `rosetta params apply profiles/finetune.yaml -o data.real_train=...` and
`dvc exp run -n my-words` fine-tune it on the user's sets (case, punctuation, a character the dictionary lacks),
and what the user looks at says what happened: the characters met and missing, the head kept and grown, both
protocols in `dvc exp show`, the registry's decision with every set's delta."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from dvc_fixtures import VENV_BIN, command_env, dvc, project_copy, run
from flow_fixtures import PARAMS
from model_fixtures import WORDS, write_gt_set

pytestmark = [pytest.mark.slow, pytest.mark.journey]

# The user's sets: case, punctuation and one character the 94-character dictionary lacks.
MY_WORDS = ["Joint", "EXIT", "Sign-up", "$20", "Hotel!", "B52", "Street", "€5", "OCR", "Paddle", "Rosetta", "ctc"] * 2
README_OVERRIDES = ["train.max_steps=6", "train.warmup_steps=0", "train.eval_every=3", "train.checkpoint_every=3",
                    "train.batch_size=8"]  # the profile's schedule, shrunk to the test's scale


def _readme_block(heading: str) -> list[str]:
    from rosetta.params import PROJECT_ROOT

    text = (PROJECT_ROOT / "README.md").read_text()
    block = text.split(f"## {heading}\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_bring_your_own_data_as_the_readme_tells_it(tmp_path):
    commands = _readme_block("Bring your own data")
    assert commands[0] == ".venv/bin/rosetta params apply profiles/finetune.yaml -o data.real_train=/data/my_sets"
    assert commands[1].startswith(".venv/bin/dvc exp run -n my-words")
    for name, labels in {"REALA_12": WORDS, "REALB_8": WORDS[:8]}.items():
        write_gt_set(tmp_path / "benchmarks" / name, labels, seed=len(labels))
    write_gt_set(tmp_path / "base_real" / "BASE", WORDS * 2, seed=4)  # what production trained on besides synth
    write_gt_set(tmp_path / "my_sets" / "LABELS", MY_WORDS, seed=5)
    env = command_env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
                      GIT_COMMITTER_EMAIL="t@example.org")
    repo = project_copy(tmp_path / "project", {**PARAMS, "train.num_workers": 0, "data.sources": ["synth", "real"],
                                               "data.real_train": str(tmp_path / "base_real"),
                                               "train.source_start_step": {"real": 2},
                                               "mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                               "data.real_benchmarks": str(tmp_path / "benchmarks")},
                        files=("README.md",), folders=("profiles",), commit=True, env=env)
    (repo / ".venv").symlink_to(VENV_BIN.parent)
    first = dvc(repo, "repro", env=env, timeout=900)  # what `make demo` runs
    assert "promoted to production" in first

    # Read text: the README's lines on a file and a folder of crops, the production model by default.
    crops = tmp_path / "benchmarks" / "REALB_8" / "images"
    shutil.copytree(crops, repo / "crops")
    shutil.copy(crops / "0.png", repo / "word_1.png")
    read_text = _readme_block("Read text")
    plain = run(repo, *read_text[0].split(), env=env, stdout_only=True).splitlines()
    assert len(plain) == 9 and plain[0].startswith("word_1.png\t") and all(len(l.split("\t")) >= 3 for l in plain)
    assert read_text[1].endswith("> out.jsonl")
    lines = [json.loads(line) for line in run(repo, *read_text[1].split(" > ")[0].split(), env=env,
                                              stdout_only=True).splitlines()]
    assert len(lines) == 8 and all({"image", "text", "confidence", "abstained", "reading"} <= set(x) for x in lines)
    unsure = [json.loads(line) for line in run(repo, *read_text[2].split(), "--json", env=env,
                                               stdout_only=True).splitlines()]
    assert all(x["abstained"] == (x["confidence"] < 0.8) and (x["text"] == "") >= x["abstained"] for x in unsure)

    # Bring your own data: the README's two commands, the sets where the user keeps them.
    applied = run(repo, *commands[0].replace("/data/my_sets", str(tmp_path / "my_sets")).split(),
                  *sum([["-o", o] for o in README_OVERRIDES], []), env=env)
    assert "train.init_from: '' -> 'models:/rosetta@production'" in applied
    out = run(repo, *commands[1].split(), env=env, timeout=900)
    assert re.search(r"training set real: \d+ of \d+ labels hold characters the charset lacks, which are left out "
                     r"of them: '€' \d \(e\.g\. '€5'\); to read them, add them to profiles/dicts/printable_94.txt", out)
    assert re.search(r"train.init_from: models:/rosetta@production \(v1, training run \w+\) reads 36 characters, "
                     r"the configured charset 94: 36 kept, 58 added", out)
    assert re.search(r"rosetta v2 (not )?promoted", out)
    shown = run(repo, ".venv/bin/dvc", "exp", "show", "--json", env=env, stdout_only=True)
    exps = {e["name"]: e["revs"][0]["data"] for rev in json.loads(shown) for e in (rev.get("experiments") or [])}
    metrics = exps["my-words"]["metrics"]["runs/eval/metrics.json"]["data"]
    assert {"accuracy_real", "accuracy_real_exact", "REALA_12", "REALB_8"} <= set(metrics)
    assert "accuracy_exact" in metrics["sets"]["REALA_12"]
    audit_line = commands[3].replace("/data/my_sets", str(tmp_path / "my_sets"))
    assert audit_line.startswith(".venv/bin/rosetta data audit")
    run(repo, *audit_line.split(), env=env)
    assert (repo / "runs" / "audit" / "LABELS" / "audit.html").is_file()
    decision = json.loads((repo / "runs" / "register" / "decision.json").read_text())
    # The real sets and the base data's own test split (the profile's registry.guarded_sets) are guarded.
    assert set(decision["set_deltas"]) == {"REALA_12", "REALB_8", "synth_test"} and decision["production_version"] == "1"
