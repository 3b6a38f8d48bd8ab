"""``make dvc-deps``: rewrite dvc.yaml from the code, so it never drifts from it.

- Each stage's code deps (``src/``, ``stages/``) become exactly its script's import closure: every ``rosetta``
  module the script can load, function-level imports included (``import_graph.import_closure``), and nothing
  else. Its other deps (data, packages lists) stay as they are, after the code.
- The train stage's params become the settings that can change the trained model (``rosetta.config``: every
  field not marked ``OPERATIONAL``), plus ``mlflow.tracking_uri`` and ``mlflow.experiment``, the store and
  experiment the run record names.

tests/test_dvc_deps.py fails when dvc.yaml differs from what this writes. After running it, refresh the lock
(``dvc repro``, or ``dvc commit -f`` when the outputs are known to be unchanged).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from import_graph import ROOT, import_closure

DVC_YAML = ROOT / "dvc.yaml"
CODE_PREFIXES = ("src/", "stages/")
# What the train stage reads that decides the model, section by section; ``train`` stands for its result fields.
TRAIN_READS = ("seed", "charset", "model", "data.sources", "train")


STAGE_CMD = ["sh", "stages/python.sh"]  # a stage's command: this, then its script (stages/python.sh says why)


def stage_script(stage: dict) -> Path | None:
    parts = stage["cmd"].split()
    return ROOT / parts[2] if parts[:2] == STAGE_CMD and len(parts) == 3 and parts[2].endswith(".py") else None


def code_deps(stage: dict) -> list[str]:
    """The code deps a stage must list: its script's import closure, sorted as dvc.yaml lists them."""
    script = stage_script(stage)
    if script is None:
        raise SystemExit(f"cmd {stage['cmd']!r} is not `sh stages/python.sh stages/<script>.py`")
    return sorted(import_closure(script), key=lambda p: (not p.startswith("stages/"), p))


def train_stage_params() -> list[str]:
    """The train stage's params: the result settings it reads, then the MLflow store and experiment (the run record
    names a run of them, so another one must train again); how often a training retries a store that does not
    answer, or what it names its run, trains nothing again."""
    from rosetta.config import Config, result_fields

    cfg = Config()
    keys = [f"train.{k}" for k in result_fields(cfg.train)]
    return [k for read in TRAIN_READS for k in (keys if read == "train" else [read])] + ["mlflow.tracking_uri", "mlflow.experiment"]


def _replace_list(lines: list[str], start: int, keep, new_items: list[str]) -> list[str]:
    """The list under ``lines[start]`` (a ``key:`` line) with the items ``keep`` refuses replaced by ``new_items``,
    put where the first of them was; comments and the kept items stay where they were."""
    end = start + 1
    while end < len(lines) and lines[end].startswith("      "):
        end += 1
    item = re.compile(r"^      - ([^\s#:]+)")
    out, placed = [], False
    for line in lines[start + 1:end]:
        match = item.match(line)
        if match and not keep(match[1]):
            if not placed:
                out += [f"      - {p}" for p in new_items]
                placed = True
        else:
            out.append(line)
    if not placed:
        out += [f"      - {p}" for p in new_items]
    return lines[:start + 1] + out + lines[end:]


def rewrite(text: str) -> str:
    stages = yaml.safe_load(text)["stages"]
    lines = text.split("\n")
    for name, stage in stages.items():
        head = lines.index(f"  {name}:")
        deps = next(i for i in range(head + 1, len(lines)) if lines[i] == "    deps:")
        lines = _replace_list(lines, deps, lambda p: not p.startswith(CODE_PREFIXES), code_deps(stage))
        if name == "train":
            params = next(i for i in range(head + 1, len(lines)) if lines[i] == "    params:")
            lines = _replace_list(lines, params, lambda p: False, train_stage_params())
    return "\n".join(lines)


def main() -> int:
    before = DVC_YAML.read_text()
    after = rewrite(before)
    if after != before:
        DVC_YAML.write_text(after)
        print("dvc.yaml: deps rewritten from the code; refresh the lock (`dvc repro`, or `dvc commit -f`)")
    else:
        print("dvc.yaml: deps already match the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
