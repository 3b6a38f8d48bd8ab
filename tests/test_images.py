"""The serving image built and run as a deployment runs it, on this machine type without a registry: built by
scripts/images.py (`make image-serve`) on the local Debian base, serving the registered production model from a
mounted store on 127.0.0.1, it reads the same words `rosetta predict` reads; it holds no torch, and neither its
history nor its files hold this machine's pip settings (index URLs, package folders, CA bundle, constraints)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from flow_fixtures import free_port
from model_fixtures import WORDS, config, png_bytes, register_production, word_image
from rosetta.delivery.http_server import invocations_body, post

import images  # scripts/images.py (conftest puts scripts/ on the path)
from rosetta.errors import RosettaError

pytestmark = pytest.mark.journey  # make test-journeys

needs_podman = pytest.mark.skipif(shutil.which("podman") is None or os.geteuid() != 0,
                                  reason="builds with Podman as root (make test-journeys installs "
                                         "packages/debian-podman.txt)")

TAG = images.TAGS["serve-onnx"]
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


@pytest.fixture(scope="module")
def cache() -> Path:
    return images.default_cache()


@pytest.fixture(scope="module")
def serving_image(cache) -> str:
    """`make image-serve`: the base imported from its cached tarball (debootstrap once), the target built."""
    started = time.monotonic()
    images.build_base(cache)
    images.build(cache, "serve-onnx", TAG, images.BASE_IMAGE)
    print(f"serving image ready in {time.monotonic() - started:.0f} s")
    return TAG


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_data, untrained_model):
    """The session's untrained model (it reads each crop differently) registered as production in a sqlite store,
    readable by the image's user (uid 1000), and word crops beside it."""
    root = tmp_path_factory.mktemp("image_store")
    cfg = config(f"data.root={tiny_data}", f"mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
                 "registry.min_score=0.2")
    shutil.copy(untrained_model.onnx, root / "model.onnx")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert register_production(cfg, root / "model.onnx", untrained_model.parity).promoted
    rng = np.random.default_rng(7)
    crops = []
    for i, word in enumerate(WORDS):
        crops.append(root / "crops" / f"{i}_{word}.png")
        crops[-1].parent.mkdir(exist_ok=True)
        crops[-1].write_bytes(png_bytes(word_image(word, rng)))
    subprocess.run(["chmod", "-R", "a+rwX", str(root)], check=True)
    return {"root": root, "uri": cfg.mlflow.tracking_uri, "crops": crops}


@pytest.fixture(scope="module")
def served(cache, serving_image, store):
    """The image's own command, on 127.0.0.1 and a free port (host network), the store mounted at its path."""
    command = images.podman(cache, "image", "inspect", "--format", "{{json .Config.Cmd}}", serving_image,
                            capture=True).stdout
    command = json.loads(command)
    port = free_port()
    for option, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        command[command.index(option) + 1] = value
    name = f"rosetta-serve-test-{os.getpid()}"
    images.podman(cache, "run", "--detach", "--name", name, "--network", "host",
                  "--volume", f"{store['root']}:{store['root']}", "--env", f"MLFLOW_TRACKING_URI={store['uri']}",
                  serving_image, *command, capture=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5):
                    break
            except OSError:
                state = images.podman(cache, "inspect", "--format", "{{.State.Running}}", name, capture=True).stdout
                if state.strip() != "true" or time.monotonic() > deadline:
                    logs = images.podman(cache, "logs", name, capture=True, check=False)
                    pytest.fail(f"the serving container did not answer on {url}: {(logs.stdout + logs.stderr)[-2000:]}")
                time.sleep(1)
        yield url
    finally:
        images.podman(cache, "rm", "--force", "--time", "3", name, capture=True, check=False)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # on a fresh machine its setup runs debootstrap and builds the image
@needs_podman
def test_the_serving_image_reads_the_words_rosetta_predict_reads(served, store, rosetta_cli):
    crops = store["crops"]
    status, answer = post(served, invocations_body([p.read_bytes() for p in crops]))
    assert status == 200, answer
    served_rows = answer["predictions"]
    done = rosetta_cli("predict", "--json", "--model", "models:/rosetta@production", "-o",
                       f"mlflow.tracking_uri={store['uri']}", *map(str, crops))
    assert done.returncode == 0, done.stderr
    expected = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["image"] for r in expected] == [str(p) for p in crops]
    assert [r["text"] for r in served_rows] == [r["text"] for r in expected]
    assert [r["abstained"] for r in served_rows] == [r["abstained"] for r in expected]
    assert [r["confidence"] for r in served_rows] == pytest.approx([r["confidence"] for r in expected], abs=1e-4)
    assert [r["error"] for r in served_rows] == [""] * len(crops)
    assert len({r["text"] for r in expected}) > 3  # the model reads the crops differently: the check compares texts


def _host_secrets() -> tuple[list[str], set[str], list[str]]:
    """What must not be in the image: the strings of this machine's pip settings that name an index, a link or
    a folder (credentials ride in those URLs), the digests of the files pip's settings name but its CA bundle, and
    the certificates that bundle adds to Debian's (Debian's own bundle is in the image, as in any)."""
    entries = images.pip_config_entries()
    needles, digests = [], set()
    for _, key, value in entries:
        if key in images.SECRET_FILES and key != "cert":
            digests.add(hashlib.sha256(Path(value).read_bytes()).hexdigest())
        elif key in ("index-url", "extra-index-url", "find-links", "trusted-host"):
            needles += [item for item in value.split() if item != "https://pypi.org/simple"]
    debian = {pem for path in Path("/usr/share/ca-certificates").rglob("*.crt")
              for pem in PEM.findall(path.read_text())}
    bundles = [Path(value) for _, key, value in entries if key == "cert"]
    extra = [pem.splitlines()[1] for bundle in bundles for pem in PEM.findall(bundle.read_text()) if pem not in debian]
    return sorted(set(needles)), digests, sorted(set(extra))


def build_secrets_in(cache: Path, image: str) -> list[str]:
    """Where ``image`` holds any of this machine's pip settings: history lines, its configuration, file paths."""
    needles, digests, extra_cas = _host_secrets()
    history = images.podman(cache, "history", "--no-trunc", "--format", "{{.CreatedBy}}", image, capture=True).stdout
    inspect = images.podman(cache, "image", "inspect", image, capture=True).stdout
    found = [f"{where}: {needle}" for needle in needles for where, text in (("history", history), ("config", inspect))
             if needle in text]
    root = Path(images.podman(cache, "image", "mount", image, capture=True).stdout.strip())
    try:
        secrets = root / "run" / "secrets"
        found += [str(p) for p in secrets.rglob("*")] if secrets.is_dir() else []
        patterns = [*needles, *extra_cas]
        if patterns:
            grep = subprocess.run(["grep", "-r", "-l", "-F", *[a for p in patterns for a in ("-e", p)], str(root)],
                                  capture_output=True, text=True)
            found += grep.stdout.splitlines()
        sizes = {Path(value).stat().st_size for _, key, value in images.pip_config_entries()
                 if key in images.SECRET_FILES and key != "cert"}
        found += [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size in sizes
                  and hashlib.sha256(p.read_bytes()).hexdigest() in digests]
    finally:
        images.podman(cache, "image", "unmount", image, capture=True, check=False)
    return found


@pytest.mark.slow
@needs_podman
def test_the_serving_image_holds_no_torch_and_no_build_secret(cache, serving_image):
    assert build_secrets_in(cache, serving_image) == []
    done = images.podman(cache, "run", "--rm", "--network", "none", serving_image, "python", "-c",
                         "import importlib.util as u; print([m for m in ('onnxruntime', 'rosetta', 'torch') "
                         "if u.find_spec(m)])", capture=True)
    assert done.stdout.split() == ["['onnxruntime',", "'rosetta']"]


def test_pip_settings_become_build_secrets_and_read_only_folders(tmp_path):
    ca, constraints = tmp_path / "ca.pem", tmp_path / "constraints.txt"
    ca.write_text("a CA"), constraints.write_text("torch<=2.14.1\n")
    settings = images.pip_settings([
        ("global", "cert", str(ca)), ("global", "constraint", str(constraints)),
        ("global", "extra-index-url", "file:///srv/pypi/simple https://user:token@index.example/simple"),
        ("global", "find-links", "/srv/wheels"), ("install", "timeout", "60"), ("global", "cert", str(ca))])
    assert settings.files == {"pip-cert": ca, "pip-constraint": constraints}
    assert settings.folders == [Path("/srv/pypi"), Path("/srv/wheels")]  # an index's files lie beside simple/
    assert settings.config == ("[global]\ncert = /run/secrets/pip-cert\nconstraint = /run/secrets/pip-constraint\n"
                               "extra-index-url = file:///srv/pypi/simple https://user:token@index.example/simple\n"
                               "find-links = /srv/wheels\n[install]\ntimeout = 60\n")
    with pytest.raises(RosettaError, match=r"pip's global.cert names /nowhere.pem, which is not a file; fix it"):
        images.pip_settings([("global", "cert", "/nowhere.pem")])


def test_the_base_comes_from_the_mirror_apt_uses(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64] http://mirror.example/debian-security bookworm-security main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert images.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text("Types: deb\nURIs: http://x/debian\nSuites: trixie\n"
                                                                 "Components: main\n")
    with pytest.raises(RosettaError, match=f"apt has no Debian bookworm main entry in {tmp_path}/sources.list or"):
        images.debian_mirror(tmp_path)
