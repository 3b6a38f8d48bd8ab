"""A registered version's decision history: every decision about it (promoted, not promoted, replaced, rolled back)
with the scores compared and the reason, kept whole and shown to people.

Each decision is a JSON file of its own in the version's run (``registry/<model>/v<N>/decisions/``): written
once, never rewritten, so two decisions at once both stay. The version's description, what MLflow's versions
list and version page show, is rebuilt from those files after each one: a short line saying where the version
stands, then the history, newest first.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from rosetta.tracking.store import artifact_bars_on_terminal

TAG_DECISION = "promotion.decision"  # the latest decision, for searching and the versions list
# MLflow's SQL stores keep a version's description in 5,000 characters; older decisions beyond are in the files.
DESCRIPTION_LIMIT = 5000


@dataclass(frozen=True)
class DecisionRecord:
    """One decision about a version, as its file and its row in the description hold it."""

    decision: str  # promoted, not promoted, replaced, rolled back
    reason: str
    command: str  # what decided: `dvc repro register`, `rosetta promote --force`, `rosetta rollback`, ...
    metric: str | None = None  # the score compared, and this version's value of it
    score: float | None = None
    production_version: str | None = None  # production before the decision, and its score
    production_score: float | None = None
    set_deltas: dict | None = None  # each set's accuracy minus production's then
    time: str = ""  # UTC, ISO 8601; set when written

    @classmethod
    def from_dict(cls, data: dict) -> "DecisionRecord":
        return cls(**{f.name: data.get(f.name) for f in fields(cls) if f.name in data})


def history_folder(model_name: str, version: str) -> str:
    """The version's folder in its run's artifacts; ``decisions/`` and ``evidence.json`` are in it."""
    return f"registry/{model_name}/v{version}"


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _when(record: DecisionRecord) -> str:
    return record.time[:16].replace("T", " ") if record.time else "before the history was kept"


def describe(records: list[DecisionRecord], limit: int = DESCRIPTION_LIMIT) -> str:
    """The description of a version with ``records`` (oldest first): one plain line on its latest decision
    (the versions list shows the start of it), then every decision, newest first, as a Markdown table; the
    oldest rows are left out, and counted, where the whole would pass ``limit`` characters."""
    if not records:
        return ""
    last = records[-1]
    score = f", {last.metric} {_score(last.score)}" if last.metric else ""
    head = f"{last.decision} {_when(last)} UTC{score}: {last.reason}"
    table = ["Decision history, newest first:", "",
             "| when (UTC) | decision | score | production then | reason | by |", "|---|---|---:|---|---|---|"]
    rows = []
    for r in reversed(records):
        production = f"v{r.production_version} ({_score(r.production_score)})" if r.production_version else "none"
        deltas = "; ".join(f"{name} {d:+.4f}" for name, d in (r.set_deltas or {}).items())
        reason = (r.reason + (f" (each set against production: {deltas})" if deltas else "")).replace(
            "|", "\\|").replace("\n", " ")
        score = f"{r.metric} {_score(r.score)}" if r.metric else ""
        rows.append(f"| {_when(r)} | {r.decision} | {score} | {production} | {reason} | {r.command} |")
    text = "\n\n".join([head, "\n".join(table + rows)])
    while len(text) > limit and rows:
        rows.pop()
        note = f"\n\n{len(records) - len(rows)} older decisions are in the run's artifacts only."
        text = "\n\n".join([head, "\n".join(table + rows)]) + note
    return text[:limit]


# --------------------------------------------------------------------------- in the registry


def _run_of(client, name: str, version: str) -> str:
    return client.get_model_version(name, version).run_id


def decision_history(client, name: str, version: str) -> list[DecisionRecord]:
    """Every decision recorded about ``name`` v``version``, oldest first."""
    run_id = _run_of(client, name, version)
    folder = f"{history_folder(name, version)}/decisions"
    if not client.list_artifacts(run_id, folder):
        return []
    with tempfile.TemporaryDirectory(prefix="rosetta-decisions-") as tmp, artifact_bars_on_terminal():
        local = Path(client.download_artifacts(run_id, folder, tmp))
        return [DecisionRecord.from_dict(json.loads(p.read_text())) for p in sorted(local.glob("*.json"))]


def record_decision(client, name: str, version: str, record: DecisionRecord) -> DecisionRecord:
    """Add ``record`` to the version's history (a new file), tag the version with the decision, and rebuild its
    description from the whole history. A description written before the history was kept becomes its first
    entry, so nothing a person wrote or read there is lost."""
    record = DecisionRecord(**{**asdict(record), "time": datetime.now(timezone.utc).isoformat(timespec="microseconds")})
    folder = f"{history_folder(name, version)}/decisions"
    earlier = decision_history(client, name, version)
    mv = client.get_model_version(name, version)
    if not earlier and mv.description:
        earlier = [DecisionRecord("recorded", mv.description.replace("\n", " "), "an earlier rosetta")]
        client.log_dict(mv.run_id, asdict(earlier[0]), f"{folder}/0-earlier.json")  # sorts before any time
    stamp = record.time.replace(":", "").replace("-", "").replace("+0000", "Z")
    client.log_dict(mv.run_id, asdict(record), f"{folder}/{stamp}.json")
    client.set_model_version_tag(name, version, TAG_DECISION, record.decision)
    client.update_model_version(name, version, description=describe([*earlier, record]))
    return record
