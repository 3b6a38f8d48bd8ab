"""The MLflow server killed (SIGKILL) during a real training: the training goes on, says so in one line, and
nothing it measured is lost: its writes reach the server when it is back (sent by the training itself, or by
``rosetta tracking sync`` after it ended), exactly once. A real ``mlflow server`` on 127.0.0.1 with a sqlite
store, restarted on the same port and store; trainings run as ``rosetta train`` subprocesses."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flow_fixtures import free_port, stop, wait_http
from rosetta.layout import RunLayout
from rosetta.tracking.journal import JOURNAL, Journal, fail_fast
from train_fixtures import TINY

pytestmark = pytest.mark.slow

MLFLOW = Path(sys.executable).parent / "mlflow"
# Enough steps for the kill to land mid-run, each logged; the server is tried again at every write (retry 0 s).
STEPS = ["train.max_steps=24", "train.log_every=2", "train.eval_every=6", "train.checkpoint_every=6",
         "mlflow.retry_every_s=0"]


class Server:
    """``mlflow server`` on one port and one sqlite store, started, killed and started again."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.proc = subprocess.Popen(
            [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            cwd=self.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_http(f"{self.uri}/health", self.proc)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("mlflow_server"))
    s.start()
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            stop(s.proc)


def _overrides(*items: str) -> list[str]:
    return [arg for item in items for arg in ("-o", item)]


def _train(rosetta_cli, root: Path, tiny_data: Path, server: Server) -> tuple[subprocess.Popen, list[str]]:
    cmd = rosetta_cli.command("train", *_overrides(
        f"data.root={tiny_data}", *TINY, *STEPS, f"train.out_dir={root / 'train'}", f"eval.out_dir={root / 'eval'}",
        f"mlflow.tracking_uri={server.uri}", f"mlflow.experiment={root.name}"))
    proc = subprocess.Popen(cmd, cwd=root, env=rosetta_cli.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return proc, cmd


def _read_until(proc: subprocess.Popen, out: list[str], start: str) -> str:
    for line in proc.stdout:
        out.append(line)
        if line.startswith(start):
            return line
    raise AssertionError(f"the training ended before a line starting {start!r}:\n{''.join(out)}")


def _finish(proc: subprocess.Popen, out: list[str]) -> str:
    out.extend(proc.stdout)
    assert proc.wait(timeout=300) == 0, "".join(out)
    return "".join(out)


def _csv_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _assert_complete(server: Server, train: Path) -> None:
    """Every metric history the training wrote, at every step it measured, and every file, on the server."""
    runs = RunLayout(train, train, train, train)
    run_id = json.loads(runs.run_json.read_text())["run_id"]
    client = server.client()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    losses = _csv_rows(runs.loss_csv)
    vals = _csv_rows(runs.val_csv)
    for key, rows in (("loss", losses), ("lr", losses), ("train/throughput_img_s", losses),
                      ("val_accuracy", vals), ("val_norm_edit_dis", vals)):
        steps = {m.step for m in client.get_metric_history(run_id, key)}
        assert {int(r["step"]) for r in rows} <= steps, key
    final = {int(losses[-1]["step"])}
    for key in ("best_val_accuracy", "skipped_steps"):
        assert {m.step for m in client.get_metric_history(run_id, key)} == final, key
    assert run.data.params["train.max_steps"] == "24"
    stored = {a.path for folder in ("", "checkpoints", "plots", "config")
              for a in client.list_artifacts(run_id, folder or None)}
    assert {"checkpoints/best.pt", "train_metrics.json", "curve.png", "plots/train_loss.csv",
            "plots/val_accuracy.csv", "config/params.yaml"} <= stored, stored
    assert not runs.mlflow_pending.exists(), "a journal sent is removed"


def test_a_server_back_before_the_end_gets_everything_from_the_training(server, tmp_path, tiny_data, rosetta_cli):
    proc, _ = _train(rosetta_cli, tmp_path, tiny_data, server)
    out: list[str] = []
    _read_until(proc, out, "step ")
    server.kill()
    _read_until(proc, out, "MLflow at ")
    proc.send_signal(signal.SIGSTOP)  # the training waits while the server starts again, however slowly
    try:
        server.start()
    finally:
        proc.send_signal(signal.SIGCONT)
    text = _finish(proc, out)
    unavailable = [line for line in text.splitlines() if "unavailable" in line]
    assert len(unavailable) == 1, text
    # Refused, or closed when the kill caught a request on its way.
    assert re.match(rf"MLflow at {server.uri} is unavailable \(connection (refused|closed)\); training goes on, ",
                    unavailable[0]), unavailable[0]
    assert f"MLflow at {server.uri} is back: " in text
    assert "still does not answer" not in text
    _assert_complete(server, tmp_path / "train")


def test_a_server_back_after_the_end_gets_everything_from_sync_and_a_resume_goes_on_journaling(
        server, tmp_path, tiny_data, rosetta_cli):
    train = tmp_path / "train"
    last = RunLayout(train, train, train, train).last_checkpoint
    proc, cmd = _train(rosetta_cli, tmp_path, tiny_data, server)
    out: list[str] = []
    _read_until(proc, out, "step ")
    server.kill()
    _read_until(proc, out, "MLflow at ")
    while not last.exists():  # killed after a checkpoint, the server still away
        _read_until(proc, out, "step ")
    proc.kill()
    proc.wait()
    # The resumed training continues the same run, still journaling, and ends saying how to send the journal.
    resumed = subprocess.run(cmd, cwd=tmp_path, env=rosetta_cli.env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout
    assert len([line for line in resumed.stdout.splitlines() if "unavailable" in line]) == 1, resumed.stdout
    assert f"`rosetta tracking sync {train}` once it answers" in resumed.stdout

    away = rosetta_cli("tracking", "sync", str(train), cwd=tmp_path)
    assert away.returncode == 2 and away.stderr.count("\n") == 1, away.stderr
    assert away.stderr.startswith(f"error: the MLflow store at {server.uri} still fails (connection refused); ")
    server.start()
    done = rosetta_cli("tracking", "sync", str(train), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "records to MLflow run" in done.stdout
    _assert_complete(server, train)
    again = rosetta_cli("tracking", "sync", str(train), cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == f"error: {train}: no MLflow records are waiting there (no mlflow_pending/ journal); " \
                           "nothing to send\n"


def test_a_run_that_cannot_be_created_is_one_sentence(tmp_path, tiny_data, rosetta_cli):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = rosetta_cli("train", *_overrides(f"data.root={tiny_data}", *TINY, f"train.out_dir={tmp_path / 'train'}",
                                            f"mlflow.tracking_uri={uri}"), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"error: the MLflow store at {uri} failed (") and done.stderr.count("\n") == 1, \
        done.stderr


def test_a_replay_cut_short_sends_each_record_once(tmp_path):
    journal = Journal(tmp_path / "pending" / "run1")
    kept = tmp_path / "best.pt"
    kept.write_text("the best of this run")
    for i in range(6):
        journal.append({"op": "metrics", "metrics": {"loss": float(i)}, "step": i, "timestamp_ms": i}, "http://x")
    journal.append({"op": "artifact", "path": str(kept), "artifact_path": "checkpoints"}, "http://x")
    kept.write_text("a later run's best")  # the journal sends the file as it was when it was written
    with open(journal.folder / JOURNAL, "a") as f:
        f.write('{"op": "metr')  # a line a killed process left half-written
    journal.append({"op": "end", "status": "FINISHED"}, "http://x")
    assert journal.uri() == "http://x" and journal.run_id == "run1"
    sent = []

    def send(record, folder):
        if record["op"] == "artifact":
            assert Path(record["path"]).name == "best.pt"  # logged under its own name
            record = {**record, "content": (folder / record["path"]).read_text()}
        sent.append(record)

    def fails_at_the_fourth(record, folder):
        if len(sent) == 3:
            raise ConnectionError("refused")
        send(record, folder)

    with pytest.raises(ConnectionError):
        journal.replay(fails_at_the_fourth)
    assert len(journal.pending()) == 5  # 3 metrics, the artifact, the end: the half-written line is no record

    def proxy_page(record, folder):  # a proxy's HTML where JSON was expected: requests raises a ValueError
        raise ValueError("Expecting value: line 1 column 1 (char 0)")

    with pytest.raises(ValueError):
        journal.replay(proxy_page)
    assert len(journal.pending()) == 5  # a failed send is no record sent
    assert journal.replay(send) == 6  # lines: the half-written one is skipped
    assert [r["op"] for r in sent] == ["metrics"] * 6 + ["artifact", "end"]
    assert [r["step"] for r in sent[:6]] == list(range(6))
    assert sent[6]["content"] == "the best of this run"
    assert not journal.folder.exists() and not journal.folder.parent.exists()


def test_calls_fail_fast_unless_the_user_chose_otherwise(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with fail_fast():
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
