"""A training's MLflow writes when the store goes away: ``JournaledTracker`` sends each write at once while the
store answers; when it fails, the training goes on and the writes wait, in order, in a journal in the run folder
(``RunLayout.mlflow_pending``), sent when the store answers again or by ``rosetta tracking sync`` (``sync_folder``).
Tracking loads no model: a journaled best model is sent through the ``ModelLogger`` the training gives it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from rosetta.config import Config
from rosetta.errors import RosettaError
from rosetta.fsutil import environ, exclusive_lock, write_json
from rosetta.layout import mlflow_pending, train_lock
from rosetta.tracking.failures import StoreUnavailable, store_errors
from rosetta.tracking.store import Tracker

JOURNAL = "journal.jsonl"  # one write a line, in the order the training made them
_SENT = "sent.json"  # how many lines of the journal reached the store
_RUN = "run.json"  # the run and the store the journal is for
_FILES = "files"  # copies of the artifacts: a later run in the folder replaces best.pt and the plots
SYNC_COMMAND = "rosetta tracking sync"

# How a call fails fast (``fail_fast``): no retry (the journal is the retry) and 10 s of silence at most per socket
# operation, instead of MLflow's defaults (7 retries with exponential backoff, a 120 s timeout: minutes before a dead
# server is told). A server that hangs rather than refuses costs a training those 10 s at each try.
_FAIL_FAST_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
def fail_fast():
    """MLflow's HTTP calls in the block give up within seconds when the server does not answer (MLflow reads these
    variables at each call); a value the user set in the environment stays theirs. For writes that have somewhere
    to wait (the journal), not for a command whose user waits for the store's answer."""
    return environ({k: v for k, v in _FAIL_FAST_ENV.items() if k not in os.environ})


class Journal:
    """The writes of one run waiting for its store, in ``folder``: ``journal.jsonl`` is only appended to, and
    ``sent.json`` counts the lines that reached the store, rewritten atomically after each one, so a replay cut
    short (a kill, the store failing again) resumes after the last record sent. A record sent and killed before it
    was counted is sent again: for metrics, params, artifacts and statuses that is the same write twice, not two; a
    model record would log a second model."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def run_id(self) -> str:
        return self.folder.name

    def uri(self) -> str:
        return json.loads((self.folder / _RUN).read_text())["tracking_uri"]

    def _lines(self) -> list[str]:
        try:
            return (self.folder / JOURNAL).read_text().splitlines()
        except FileNotFoundError:
            return []

    def _sent(self) -> int:
        try:
            return int(json.loads((self.folder / _SENT).read_text())["sent"])
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    def pending(self) -> list[dict]:
        """The records not sent yet, in order; a line a killed process left half-written is skipped."""
        out = []
        for line in self._lines()[self._sent():]:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def append(self, record: dict, uri: str) -> None:
        """``record`` at the end of the journal; a file it names (``path``) is copied in first, and named there."""
        if not (self.folder / _RUN).is_file():
            write_json(self.folder / _RUN, {"run_id": self.run_id, "tracking_uri": uri})
        if "path" in record:
            files = self.folder / _FILES
            files.mkdir(parents=True, exist_ok=True)
            copy = files / f"{len(list(files.iterdir())):04d}" / Path(record["path"]).name  # the name is logged
            copy.parent.mkdir()
            shutil.copyfile(record["path"], copy)
            record = {**record, "path": str(copy.relative_to(self.folder))}
        with open(self.folder / JOURNAL, "ab+") as f:
            if f.seek(0, os.SEEK_END) and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                f.write(b"\n")  # a line a killed process left half-written stays a line of its own
            f.write(json.dumps(record).encode() + b"\n")

    def replay(self, send: Callable[[dict, Path], None]) -> int:
        """``send(record, folder)`` each pending record in order, counting each as sent once it returns; the
        journal is removed when all went. Returns how many were sent; what ``send`` raises stops the replay."""
        sent, lines = self._sent(), self._lines()
        for i in range(sent, len(lines)):
            try:
                record = json.loads(lines[i])
            except ValueError:
                record = None  # a line a killed process left half-written
            if record is not None:
                send(record, self.folder)
            write_json(self.folder / _SENT, {"sent": i + 1})
        shutil.rmtree(self.folder)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()  # the last journal of the run folder
        return len(lines) - sent


# Logs the model of an inference checkpoint to a run (``rosetta.training.outputs.log_checkpoint_model``).
ModelLogger = Callable[[Tracker, Path], None]


def send(tracker: Tracker, record: dict, folder: Path, log_model: ModelLogger) -> None:
    """One journal record written to ``tracker``'s run (a file it names is read below ``folder`` when relative)."""
    op = record["op"]
    path = folder / record["path"] if "path" in record else None
    if op == "metrics":
        tracker.log_metrics(record["metrics"], record["step"], timestamp_ms=record["timestamp_ms"])
    elif op == "params":
        tracker.log_params(record["params"])
    elif op == "text":
        tracker.log_text(record["text"], record["artifact_file"])
    elif op == "artifact":
        tracker.log_artifact(path, record["artifact_path"])
    elif op == "model":
        log_model(tracker, path)
    elif op == "reopen":
        tracker.reopen()
    elif op == "end":
        tracker.end(record["status"])
    else:
        raise RosettaError(f"{folder / JOURNAL}: unknown record {op!r} (written by a newer rosetta?); send it with "
                           "that version")


class JournaledTracker:
    """A training's MLflow run, written through ``Tracker`` while the store answers and into the run's
    ``Journal`` below ``pending`` while it does not. A failing store is said once, in one line; while records
    wait, each write joins them and, ``retry_every_s`` after the last try, the journal is sent (said in one line
    too). Only a failing store is waited out: any other error is raised as ``Tracker`` raises it."""

    def __init__(self, uri: str, run_id: str, train_folder: Path, retry_every_s: float, tracker: Tracker | None,
                 log_model: ModelLogger):
        self.uri, self.run_id, self.train_folder, self.retry_every_s = uri, run_id, train_folder, retry_every_s
        self._log_model = log_model
        self.journal = Journal(mlflow_pending(train_folder) / run_id)
        self._tracker = tracker
        self._last_try = time.monotonic()
        self._logged: dict[str, int] = {}  # per metric, the last step an earlier process of the run logged
        self._waiting = bool(self.journal.pending())  # a journal an earlier process of this run left
        if self._waiting and tracker is not None:
            failure = self._retry(force=True)
            if failure is not None:
                self._say_unavailable(failure)

    @classmethod
    def start(cls, cfg: Config, train_folder: Path, tags: Mapping[str, str],
              log_model: ModelLogger) -> "JournaledTracker":
        """A new run; a store that fails now ends the training in one sentence (``StoreUnavailable``)."""
        with fail_fast():
            tracker = Tracker(cfg, tags=tags)
        return cls(tracker.uri, tracker.run_id, train_folder, cfg.mlflow.retry_every_s, tracker, log_model)

    @classmethod
    def resume(cls, cfg: Config, run_id: str, train_folder: Path, log_model: ModelLogger) -> "JournaledTracker":
        """Run ``run_id`` again (a resumed training): marked running, or, while its store fails, journaled."""
        try:
            with fail_fast():
                tracker = Tracker(cfg, run_id, reopen=False)
        except StoreUnavailable as exc:
            journaled = cls(exc.uri, run_id, train_folder, cfg.mlflow.retry_every_s, None, log_model)
            journaled._logged = journaled._logged_steps(None)
            journaled._keep({"op": "reopen"}, exc.failure)
            return journaled
        journaled = cls(tracker.uri, tracker.run_id, train_folder, cfg.mlflow.retry_every_s, tracker, log_model)
        journaled._logged = journaled._logged_steps(tracker)
        journaled._write({"op": "reopen"})  # after what the journal holds: an end status an earlier process left
        return journaled

    def _logged_steps(self, tracker: Tracker | None) -> dict[str, int]:
        """Per metric, the last step the run holds already, waiting in the journal or in its store (``tracker``'s,
        while it answers): a resumed training repeats the steps after its last checkpoint, which the killed
        process may have logged."""
        logged: dict[str, int] = {}
        for record in self.journal.pending():
            if record["op"] == "metrics":
                logged.update({k: max(logged.get(k, -1), record["step"]) for k in record["metrics"]})
        with contextlib.suppress(StoreUnavailable), fail_fast(), store_errors(self.uri):
            for key in tracker.client.get_run(self.run_id).data.metrics if tracker else ():
                steps = [m.step for m in tracker.client.get_metric_history(self.run_id, key)]
                logged[key] = max([logged.get(key, -1), *steps])
        return logged

    # ---- the writes the training makes

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """``metrics`` at ``step``, but those an earlier process of the run logged at this step or later."""
        metrics = {k: float(v) for k, v in metrics.items() if step > self._logged.get(k, -1)}
        if metrics:
            self._write({"op": "metrics", "metrics": metrics, "step": step, "timestamp_ms": int(time.time() * 1000)})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._write({"op": "params", "params": {k: str(v) for k, v in params.items()}})

    def log_text(self, text: str, artifact_file: str) -> None:
        self._write({"op": "text", "text": text, "artifact_file": artifact_file})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._write({"op": "artifact", "path": str(Path(path).absolute()), "artifact_path": artifact_path})

    def log_model(self, checkpoint: Path) -> None:
        """The model of ``checkpoint`` (an inference checkpoint) in MLflow's pytorch flavour."""
        self._write({"op": "model", "path": str(Path(checkpoint).absolute())})

    def end(self, status: str = "FINISHED") -> None:
        """The run's last write; what still waits then is said, with the command that sends it."""
        record = {"op": "end", "status": status}
        if self._waiting:  # one last try, whenever the last one was
            self.journal.append(record, self.uri)
            self._retry(force=True)
        else:
            self._write(record)
        if self._waiting:
            print(f"MLflow at {self.uri} still does not answer: {len(self.journal.pending())} records of run "
                  f"{self.run_id} are kept in {self.journal.folder}; send them with `{SYNC_COMMAND} "
                  f"{self.train_folder}` once it answers", flush=True)

    # ---- sending, keeping, retrying

    def _write(self, record: dict) -> None:
        if self._waiting:
            self.journal.append(record, self.uri)
            self._retry()
            return
        try:
            with fail_fast(), store_errors(self.uri):
                send(self._connect(), record, Path("/"), self._log_model)
        except StoreUnavailable as exc:
            self._keep(record, exc.failure)

    def _keep(self, record: dict, failure: str) -> None:
        """Start waiting: ``record`` is the journal's first (after what an earlier process left), said once."""
        self.journal.append(record, self.uri)
        self._waiting, self._last_try = True, time.monotonic()
        self._say_unavailable(failure)

    def _say_unavailable(self, failure: str) -> None:
        print(f"MLflow at {self.uri} is unavailable ({failure}); training goes on, its MLflow records are kept in "
              f"{self.journal.folder} and sent when the server answers (tried every {self.retry_every_s:g} s; or "
              f"`{SYNC_COMMAND} {self.train_folder}`)", flush=True)

    def _connect(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker.at(self.uri, self.run_id, reopen=False)
        return self._tracker

    def _retry(self, force: bool = False) -> str | None:
        """Send the journal when ``retry_every_s`` passed since the last try (or ``force``); what failed, if it did."""
        if not force and time.monotonic() - self._last_try < self.retry_every_s:
            return None
        self._last_try = time.monotonic()
        try:
            with fail_fast(), store_errors(self.uri):
                tracker = self._connect()
                n = self.journal.replay(lambda record, folder: send(tracker, record, folder, self._log_model))
        except StoreUnavailable as exc:
            return exc.failure  # still away: said once, when it went
        self._waiting = False
        print(f"MLflow at {self.uri} is back: {n} records sent to run {self.run_id}", flush=True)
        return None


def sync_folder(train_folder: Path, log_model: ModelLogger) -> int:
    """Send every journal of the training folder ``train_folder`` to its run's store; returns the records sent. A
    training running there is left to send its own; a store that still fails is one sentence, its records kept."""
    train_folder = Path(train_folder)
    root = mlflow_pending(train_folder)
    journals = sorted(p for p in root.glob("*") if (p / JOURNAL).is_file()) if root.is_dir() else []
    if not journals:
        raise RosettaError(f"{train_folder}: no MLflow records are waiting there (no {root.name}/ journal); "
                           "nothing to send")
    busy = (f"{train_folder}: a training is running in this folder ({{holder}}); it sends its MLflow records itself "
            "when the server answers: wait for it to end")
    total = 0
    with exclusive_lock(train_lock(train_folder), busy):
        for folder in journals:
            journal = Journal(folder)
            uri = journal.uri()
            try:
                with fail_fast(), store_errors(uri):
                    tracker = Tracker.at(uri, journal.run_id, reopen=False)
                    sent = journal.replay(lambda record, f: send(tracker, record, f, log_model))
            except StoreUnavailable as exc:
                left = len(journal.pending())
                raise RosettaError(f"the MLflow store at {uri} still fails ({exc.failure}); {left} records of run "
                                   f"{journal.run_id} stay in {folder}: start the server, then run "
                                   f"`{SYNC_COMMAND} {train_folder}` again") from None
            print(f"sent {sent} records to MLflow run {journal.run_id} at {uri}", flush=True)
            total += sent
    return total
