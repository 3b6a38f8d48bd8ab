"""What a user can get wrong ends in one sentence naming the thing and what to do (``error: ...``, exit
status 2), never a traceback: unreadable params files, impossible values, garbage LMDBs for every command that
reads one, a damaged MLflow store, a batch size of 0."""
from __future__ import annotations

import pytest

from model_fixtures import config, untrained_checkpoint
from rosetta.cli import main
from train_fixtures import TINY

PARAMS = ["-c", "params.yaml"]


def _error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n"), err
    last = err.splitlines()[-1]  # notices may come first (evaluate: the model names no MLflow run)
    assert last.startswith("error: "), err
    return last + "\n"


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A working directory holding the project's params.yaml and an LMDB whose data.mdb is garbage."""
    from rosetta.params import PROJECT_ROOT

    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    garbage = tmp_path / "data" / "lmdb" / "synth"
    for split in ("train", "val"):
        (garbage / split).mkdir(parents=True)
        (garbage / split / "data.mdb").write_bytes(b"\x13garbage, not an LMDB\x00" * 600)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_params_files_that_cannot_be_read(project, capsys):
    latin = project / "latin.yaml"
    latin.write_bytes("base: params.yaml\n# caf\xe9\n".encode("latin-1"))
    assert _error(capsys, ["summary", "-c", str(latin)]) == f"error: {latin}: not UTF-8 text; save the params file as UTF-8\n"
    assert _error(capsys, ["summary", "-c", str(project)]) == (
        f"error: {project}: is a folder, not a params file; pass -c with the path to a params.yaml\n")


@pytest.mark.parametrize("override, sentence", [
    ("train.lr=.inf", "train.lr: inf is not a finite number"),
    ("train.lr=.nan", "train.lr: nan is not a finite number"),
    ("train.out_dir=", "train.out_dir: '' must name a folder (e.g. runs/<stage>)"),
])
def test_impossible_values_are_refused(project, capsys, override, sentence):
    assert _error(capsys, ["summary", *PARAMS, "-o", override]) == f"error: {sentence}\n"


def test_garbage_lmdb_in_validate_evaluate_and_train(project, capsys):
    train = project / "data" / "lmdb" / "synth" / "train"
    expected = "data.mdb is not a readable LMDB (MDB_INVALID: File is not an LMDB file); convert the dataset again"
    assert expected in _error(capsys, ["data", "validate", str(train), *PARAMS, "-o", "data.workers=1"])
    model = untrained_checkpoint(project / "best.pt", config(*TINY))
    assert expected in _error(capsys, ["evaluate", "--model", str(model), "--data", str(train), *PARAMS])
    tiny = [a for o in TINY for a in ("-o", o)]
    assert expected in _error(capsys, ["train", *PARAMS, *tiny, "-o", f"mlflow.tracking_uri=sqlite:///{project}/m.db"])


def test_damaged_mlflow_store(project, capsys):
    (project / "mlflow.db").write_bytes(b"these bytes were once a database" * 100)
    assert _error(capsys, ["rollback", *PARAMS]) == (
        f"error: {project / 'mlflow.db'}: the MLflow store is not an SQLite database (damaged or overwritten); move "
        "it aside to start a new store, or set mlflow.tracking_uri to another one\n")


def test_predict_batch_size_must_be_positive(project, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", "best.pt", "--batch-size", "0", "word.png"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("argument --batch-size: 0 must be at least 1")


def test_deleting_is_advised_only_for_files_rosetta_made(project, capsys):
    """A file the user points at that is no checkpoint or no archive (/etc/passwd, a damaged .tar.gz of theirs) is
    told as such, never with "delete it": that advice is for a training's own checkpoint only."""
    (project / "mine.tar.gz").write_bytes(b"not gzip at all")
    for argv, start in ((["evaluate", "--model", "/etc/passwd", *PARAMS], "error: /etc/passwd: not a readable "
                         "checkpoint (IndexError); give a checkpoint (.pt) a rosetta training wrote, or an "
                         "exported .onnx file\n"),
                        (["data", "download", str(project / "mine.tar.gz"), str(project / "OUT"), *PARAMS],
                         f"error: {project / 'mine.tar.gz'}: ")):
        err = _error(capsys, argv)
        assert err.startswith(start) and "delete" not in err, err
    run = project / "runs" / "train"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".rosetta-run").touch()
    (run / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 cut short")
    assert _error(capsys, ["evaluate", "--model", str(run / "checkpoints" / "last.pt"), *PARAMS]).endswith(
        "it may be truncated: delete it and resume from an earlier one\n")


def test_evaluate_out_never_writes_over_someone_elses_metrics(project, capsys):
    mine = project / "report"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"my": "results"}')
    assert _error(capsys, ["evaluate", "--model", "best.pt", "--out", str(mine), *PARAMS]) == (
        f"error: {mine}: the folder holds files and was not made by rosetta (no .rosetta-eval in it); give --out a "
        "new or empty folder\n")
    assert (mine / "metrics.json").read_text() == '{"my": "results"}'
