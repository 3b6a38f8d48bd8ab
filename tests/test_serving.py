"""One inference contract and safe HTTP serving: an image's text is the same whatever its batch and backend
(.pt, .onnx, the registered pyfunc, ``mlflow models serve``), and the server reads image bytes only, answers a
bad row with a sentence of its own, and refuses images and requests beyond ``serve.*``."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flow_fixtures import free_port, wait_http
from model_fixtures import EPS, REFUSED_FORMAT, WORDS, config, png_bytes, word_image
from rosetta.bench.serve import bench_serve
from rosetta.delivery.http_server import Server, invocations_body, post, running_server, serve_command
from rosetta.registry.versions import register_and_promote
from rosetta.recognition.model_file import load_recognizer
from rosetta.tracking.store import Tracker
from rosetta_infer.preprocess import ImageDecodeError, ImageLimits, decode_image, resize_norm_img

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # a real server

LIMITS = ["serve.max_image_side=4096", "serve.max_request_images=48", "serve.max_request_mb=1"]


def varied_images(n: int, seed: int = 0) -> list[Image.Image]:
    """Word images from 0.3:1 to 30:1 (log-uniform), 12 to 80 px high: far narrower and far wider than the
    training width, so any padding to a batch's widest would show."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = word_image(WORDS[i % len(WORDS)], rng)
        height = int(rng.integers(12, 80))
        width = max(4, int(height * np.exp(rng.uniform(np.log(0.3), np.log(30)))))
        out.append(img.resize((width, height), Image.BILINEAR))
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_data, untrained_model):
    """A checkpoint and its gated ONNX export (the session's untrained model), registered with the production
    alias in a sqlite store, and `mlflow models serve` of that alias starting."""
    # MLflow's set_tracking_uri exports MLFLOW_TRACKING_URI, which rosetta reads first: an earlier test's store
    # must not stand in for this module's.
    env = pytest.MonkeyPatch()
    env.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path_factory.mktemp("serving")
    cfg = config(f"data.root={tiny_data}", f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
                 "export.parity_samples=8", "export.batch_size=4", "registry.min_score=0.2", *LIMITS)
    ckpt, parity = untrained_model.best, untrained_model.parity
    shutil.copy(untrained_model.onnx, root / "model.onnx")
    tracker = Tracker(cfg)
    tracker.end()
    summary = {"sets": {"synth_test": {"accuracy": 0.5, "norm_edit_dis": 0.5, "count": 12}}, "accuracy_total": 0.5,
               "accuracy_mean": 0.5, "norm_edit_dis_total": 0.5, "count_total": 12, "images_per_s": 1.0}
    assert register_and_promote(cfg, root / "model.onnx", parity, summary, tracker.run_id).promoted
    server = Server(cfg)  # starts now, answers while the tests without it run
    yield {"root": root, "cfg": cfg, "ckpt": ckpt, "onnx": root / "model.onnx", "server": server, "parity": parity}
    server.stop()
    env.undo()


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return varied_images(40)


@pytest.fixture(scope="module")
def server(served) -> str:
    """``mlflow models serve -m models:/rosetta@production`` on 127.0.0.1, as the README starts it."""
    return served["server"].wait()


def _texts(results) -> list[str]:
    return [t for t, _ in results]


def test_text_does_not_depend_on_the_batch(served, images):
    images = images[:24]  # batches of 7 mix widths; one batch of 64 holds them all
    for model in (served["ckpt"], served["onnx"]):
        by_batch = {bs: load_recognizer(model, batch_size=bs).recognize(images) for bs in (1, 7, 64)}
        assert _texts(by_batch[1]) == _texts(by_batch[7]) == _texts(by_batch[64])
        for bs in (7, 64):
            assert [c for _, c in by_batch[bs]] == pytest.approx([c for _, c in by_batch[1]], abs=1e-5)
    assert len(set(_texts(by_batch[1]))) > 5  # the model reads the images differently: the check compares texts


def test_every_backend_reads_the_same_text(served, images, server):
    by_torch = load_recognizer(served["ckpt"]).recognize(images)
    by_onnx = load_recognizer(served["onnx"]).recognize(images)
    mlflow.set_tracking_uri(served["cfg"].mlflow.tracking_uri)
    mlflow.set_registry_uri(served["cfg"].mlflow.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model("models:/rosetta@production")
    by_pyfunc = pyfunc.predict(pd.DataFrame({"image": [png_bytes(im) for im in images]}))
    status, answer = post(server, invocations_body([png_bytes(im) for im in images]))
    assert status == 200, answer
    by_http = answer["predictions"]
    assert _texts(by_torch) == _texts(by_onnx) == by_pyfunc["text"].tolist() == [r["text"] for r in by_http]
    assert [r["error"] for r in by_http] == [""] * len(images)
    expected = [c for _, c in by_onnx]
    assert [r["confidence"] for r in by_http] == pytest.approx(expected, abs=1e-6)
    assert [c for _, c in by_torch] == pytest.approx(expected, abs=1e-4)


def _wide_png(width: int, height: int) -> bytes:
    return png_bytes(Image.new("RGB", (width, height), "white"))


def test_a_bad_row_gets_its_sentence_and_the_others_are_read(served, server, images):
    good = png_bytes(images[1])
    rows = [good, b"not an image at all", _wide_png(20000, 10), b"", good[:200]]
    status, answer = post(server, invocations_body(rows))
    assert status == 200, answer
    got = answer["predictions"]
    expected = load_recognizer(served["onnx"]).recognize([images[1]])[0][0]
    assert got[0] == {"text": expected, "confidence": pytest.approx(got[0]["confidence"]), "abstained": False,
                      "reading": expected, "error": "", "model_name": "rosetta", "model_version": "1",
                      "model_alias": "production"}
    assert got[1]["error"].startswith("row 1: not a readable image") and got[1]["text"] == ""
    assert got[2]["error"] == ("row 2: 20000x10 pixels is over the limit of 4096 pixels a side and 16000000 in all "
                               "(serve.max_image_side, serve.max_image_pixels); crop or downscale the word image")
    assert got[3]["error"] == "row 3: the file is empty"
    assert got[4]["text"] == "" and got[4]["error"].startswith("row 4: not a readable image")  # a cut PNG
    assert "Traceback" not in json.dumps(answer)


def test_an_eps_body_is_refused_by_its_format_before_any_image_plugin(server, images):
    """An EPS payload (PIL would hand it to Ghostscript, where one is installed) gets its row's sentence, whether or
    not Ghostscript is here; the other rows are read."""
    status, answer = post(server, invocations_body([EPS, png_bytes(images[0])]))
    assert status == 200, answer
    got = answer["predictions"]
    assert got[0]["error"] == f"row 0: {REFUSED_FORMAT}" and got[0]["text"] == "" and got[1]["error"] == ""


def test_a_path_is_never_opened_nor_an_existence_oracle(served, server, images):
    existing = served["root"] / "found.png"
    existing.write_bytes(png_bytes(images[2]))
    missing = served["root"] / "lost0.png"  # as long as the existing one's name
    answers = []
    for path in (existing, missing):
        for cell in (str(path), base64.b64encode(str(path).encode()).decode()):
            body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[cell]]}}).encode()
            answers.append(post(server, body))
    text_of_file = load_recognizer(served["onnx"]).recognize([images[2]])[0][0]
    for status, answer in answers:
        dumped = json.dumps(answer)
        assert "Traceback" not in dumped and 'File "' not in dumped and "site-packages" not in dumped
        if status == 200:
            assert answer["predictions"][0]["text"] == "" and answer["predictions"][0]["error"]
            assert answer["predictions"][0]["text"] != text_of_file
        else:
            assert status == 400 and answer["message"]
    # Same answers for a file that exists and one that does not, once its name is taken out.
    strip = [json.dumps(a).replace(str(existing), "P").replace(str(missing), "P").replace(
        base64.b64encode(str(existing).encode()).decode(), "B").replace(
        base64.b64encode(str(missing).encode()).decode(), "B") for _, a in answers]
    assert strip[:2] == strip[2:]


def test_request_limits_fall_on_the_rows_beyond_them(served, images):
    mlflow.set_registry_uri(served["cfg"].mlflow.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model("models:/rosetta@production")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 800, 3), dtype=np.uint8))
    big = png_bytes(noise)  # about 1.7 MB: alone it passes the 1 MB request budget
    assert len(big) > 2**20
    rows = [png_bytes(im) for im in images[:3]] + [big] + [png_bytes(images[0])] * 46
    got = pyfunc.predict(pd.DataFrame({"image": rows}))
    assert got["error"][:3].tolist() == ["", "", ""]
    assert got["error"][3] == ("row 3: the request's images pass 1 MB (serve.max_request_mb); send the rest in "
                               "another request")
    assert got["error"][4].startswith("row 4: the request's images pass 1 MB")  # the budget stays spent
    assert got["error"][48] == ("row 48: a request holds at most 48 images (serve.max_request_images); send the "
                                "rest in another request")
    assert (got["text"][3], got["text"][48]) == ("", "")


def test_limits_are_checked_before_decoding():
    limits = ImageLimits(max_side=8192, max_pixels=16_000_000)
    huge = _wide_png(20000, 10)
    assert len(huge) < 2000  # a tiny file that claims a 20000-pixel side
    with pytest.raises(ImageDecodeError, match="20000x10 pixels is over the limit"):
        decode_image(huge, "huge.png", limits)
    wide = decode_image(_wide_png(8000, 10), "ok.png", limits)
    # An 8000x10 word costs the model what a 100x32 one does: the contract squeezes it to the training width.
    assert resize_norm_img(wide).shape == (3, 32, 100)


def test_readme_serve_command_and_curl_line(served, server, images, tmp_path):
    """What the README shows: the command it names, and its curl line answered by the running server."""
    assert serve_command("models:/rosetta@production", "127.0.0.1", 5001)[1:] == [
        "models", "serve", "-m", "models:/rosetta@production", "--env-manager", "local", "-h", "127.0.0.1",
        "-p", "5001"]
    (tmp_path / "word.png").write_bytes(png_bytes(images[3]))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    curl = next(line for line in readme.splitlines() if line.startswith("curl "))
    done = subprocess.run(["bash", "-c", curl.replace("http://127.0.0.1:5001", server)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=os.environ)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["predictions"][0]["text"] == load_recognizer(served["onnx"]).recognize([images[3]])[0][0]


def _register(served, name: str, accuracy: float, min_score: float = 0.2, *overrides: str):
    """Another registered model in the module's store: the served ONNX file (other bytes) at ``accuracy``, under
    params with ``overrides``."""
    import onnx

    cfg = config(*[f"{k}={v}" for k, v in (("data.root", served["cfg"].data.root),
                                             ("mlflow.tracking_uri", served["cfg"].mlflow.tracking_uri))],
                 "export.parity_samples=8", "registry.min_score=" + str(min_score), f"registry.model_name={name}",
                 *overrides)
    model = onnx.load(str(served["onnx"]))
    model.doc_string = f"{name}-{accuracy}"
    path = served["root"] / f"{name}-{accuracy}.onnx"
    onnx.save(model, str(path))
    tracker = Tracker(cfg)
    tracker.end()
    summary = {"sets": {"synth_test": {"accuracy": accuracy, "norm_edit_dis": accuracy, "count": 12}},
               "accuracy_total": accuracy, "accuracy_mean": accuracy, "norm_edit_dis_total": accuracy,
               "count_total": 12, "images_per_s": 1.0}
    return register_and_promote(cfg, path, served["parity"], summary, tracker.run_id)


def test_the_server_abstains_below_serve_abstain_below(served, images):
    """serve.confidence and serve.abstain_below travel in the registered model: a reading less confident than the
    threshold is answered with no text and ``abstained`` true, its text kept in ``reading``."""
    batch = images[:10]
    readings = load_recognizer(served["onnx"], confidence="min").recognize(batch)
    ranked = sorted(c for _, c in readings)
    gap = max(range(3, 7), key=lambda i: ranked[i + 1] - ranked[i])  # a threshold far from every confidence
    threshold = (ranked[gap] + ranked[gap + 1]) / 2
    overrides = ("serve.confidence=min", f"serve.abstain_below={threshold}")
    assert _register(served, "cautious", 0.5, 0.2, *overrides).promoted
    cfg = config(f"mlflow.tracking_uri={served['cfg'].mlflow.tracking_uri}", "registry.model_name=cautious")
    with running_server(cfg) as url:
        status, answer = post(url, invocations_body([png_bytes(im) for im in batch]))
    assert status == 200, answer
    rows = answer["predictions"]
    assert [r["abstained"] for r in rows] == [c < threshold for _, c in readings]
    assert 3 <= sum(r["abstained"] for r in rows) <= 7
    assert [r["text"] for r in rows] == ["" if c < threshold else t for t, c in readings]
    assert [r["reading"] for r in rows] == [t for t, _ in readings]
    assert [r["confidence"] for r in rows] == pytest.approx([c for _, c in readings], abs=1e-6)


def _serve_cli(served, rosetta_cli, name: str, *args: str) -> list[str]:
    overrides = ["-o", f"mlflow.tracking_uri={served['cfg'].mlflow.tracking_uri}", "-o", f"registry.model_name={name}"]
    return rosetta_cli.command("serve", *args, "-c", str(Path(__file__).resolve().parents[1] / "params.yaml"),
                               *overrides)


def test_rosetta_serve_picks_an_alias_or_a_version_and_says_which_it_serves(served, rosetta_cli, images):
    """The README's `rosetta serve --alias previous`: the version production replaced, named in every answer."""
    assert _register(served, "served", 0.5).promoted and _register(served, "served", 0.7).promoted  # v2, v1 previous
    port = str(free_port())
    proc = subprocess.Popen(_serve_cli(served, rosetta_cli, "served", "--alias", "previous", "--port", port),
                            cwd=served["root"], env=rosetta_cli.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == f"serving served v1 (alias previous) on http://127.0.0.1:{port}"
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ping", proc)
        status, answer = post(url, invocations_body([png_bytes(images[0])]))
        assert status == 200, answer
        row = answer["predictions"][0]
        assert (row["model_name"], row["model_version"], row["model_alias"]) == ("served", "1", "previous")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    by_number = subprocess.run(_serve_cli(served, rosetta_cli, "served", "--version", "7"), cwd=served["root"],
                               env=rosetta_cli.env(), capture_output=True, text=True, timeout=120)
    assert by_number.returncode == 2 and by_number.stderr.startswith("error: rosetta serve: served has no version 7 (versions 1 to ")


def test_rosetta_serve_without_the_alias_is_one_line(served, rosetta_cli):
    """Every first run below registry.min_score leaves no production version: one line, no traceback."""
    assert not _register(served, "never-promoted", 0.1, min_score=0.5).promoted
    done = subprocess.run(_serve_cli(served, rosetta_cli, "never-promoted"), cwd=served["root"], env=rosetta_cli.env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_bench_serve_measures_the_running_server(server, capsys):
    rows = bench_serve(server, (1, 4), requests=2, warmup=1)
    assert [(r["batch"], r["requests"]) for r in rows] == [(1, 2), (4, 2)]
    assert all(r["requests_per_s"] > 0 and r["ms_per_image"] > 0 for r in rows)
    assert "requests/s" in capsys.readouterr().out
