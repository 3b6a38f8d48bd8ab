"""Downloads and archives against a real HTTP server on 127.0.0.1, and conversion of the MJSynth and
SynthText layouts fetched from it."""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import scipy.io
from PIL import Image

from rosetta_infer.charset import Charset
from rosetta.data.dataset import LmdbDataset
from rosetta.errors import RosettaError
from rosetta.fsutil import COMPLETE_MARKER
from rosetta.prep.convert import convert_mjsynth, convert_synthtext, mjsynth_label
from rosetta.prep.download import download, extract, fetch


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` with Range support; the first ``server.cuts`` answers stop half-way."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, status = 0, 200
        if rng := self.headers.get("Range"):
            start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if srv.cuts > 0:
            srv.cuts -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.cuts = {}, [], 0
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _jpeg(color=(200, 30, 30), size=(60, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def _tar(members: dict[str, bytes], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# --------------------------------------------------------------------------- download


def test_download_writes_file_and_sidecar_and_is_a_noop_when_complete(server, tmp_path):
    payload = bytes(range(256)) * 4000
    server.files["/data.bin"] = payload
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "data.bin"
    assert download(server.url + "/data.bin", dest, digest) == dest
    assert dest.read_bytes() == payload
    assert json.loads((tmp_path / "data.bin.json").read_text())["sha256"] == digest
    assert not (tmp_path / "data.bin.part").exists()
    download(server.url + "/data.bin", dest, digest)
    assert len(server.requests) == 1  # complete: nothing fetched again


def test_interrupted_download_resumes_with_range(server, tmp_path):
    payload = np.random.default_rng(0).bytes(300_000)
    server.files["/big.bin"] = payload
    server.cuts = 1
    dest = download(server.url + "/big.bin", tmp_path / "big.bin", hashlib.sha256(payload).hexdigest(),
                    backoff=0.0)
    assert dest.read_bytes() == payload
    assert len(server.requests) == 2
    assert server.requests[0]["range"] is None
    # The second request asks only for what the first did not deliver (whole chunks it wrote).
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", server.requests[1]["range"])[1])
    assert 0 < resumed_at <= len(payload) // 2


def test_part_left_by_a_failed_run_is_resumed_by_the_next(server, tmp_path):
    payload = np.random.default_rng(1).bytes(300_000)
    server.files["/f.bin"] = payload
    server.cuts = 5
    with pytest.raises(RosettaError, match="run again to resume"):
        download(server.url + "/f.bin", tmp_path / "f.bin", retries=0)
    (part,) = tmp_path.glob("f.bin.*.part")
    have = part.stat().st_size
    assert 0 < have <= len(payload) // 2
    server.cuts = 0
    assert download(server.url + "/f.bin", tmp_path / "f.bin").read_bytes() == payload
    assert server.requests[-1]["range"] == f"bytes={have}-"


def test_cache_is_keyed_by_url_and_a_part_never_takes_another_urls_bytes(server, tmp_path):
    first, second = b"first url " * 20_000, b"second url" * 20_000
    server.files["/plain.bin"], server.files["/other/plain.bin"] = first, second
    downloads = tmp_path / "downloads"
    assert (fetch(server.url + "/plain.bin", tmp_path / "a", downloads) / "plain.bin").read_bytes() == first
    assert (fetch(server.url + "/other/plain.bin", tmp_path / "b", downloads) / "plain.bin").read_bytes() == second
    # download() into one file name: a .part of one URL is not resumed by another, a file of another URL
    # is replaced.
    server.cuts = 1
    with pytest.raises(RosettaError, match="run again to resume"):
        download(server.url + "/plain.bin", tmp_path / "one.bin", retries=0)
    assert download(server.url + "/other/plain.bin", tmp_path / "one.bin").read_bytes() == second
    assert server.requests[-1]["range"] is None
    assert download(server.url + "/plain.bin", tmp_path / "one.bin").read_bytes() == first


def test_refused_archive_is_not_kept_in_the_cache(server, tmp_path):
    server.files["/x.tar"] = _tar({"../evil.txt": b"escaped"}, gz=False)
    downloads = tmp_path / "downloads"
    with pytest.raises(RosettaError, match="download was deleted"):
        fetch(server.url + "/x.tar", tmp_path / "x", downloads)
    assert [p for p in downloads.rglob("*") if p.is_file()] == []
    server.files["/x.tar"] = _tar({"ok.txt": b"fine"}, gz=False)  # fixed upstream: the next run fetches it
    assert (fetch(server.url + "/x.tar", tmp_path / "x", downloads) / "ok.txt").read_bytes() == b"fine"
    local = tmp_path / "local.tar"  # a local archive is the user's: refused, never deleted
    local.write_bytes(_tar({"/abs.txt": b"x"}, gz=False))
    with pytest.raises(RosettaError, match="absolute"):
        fetch(str(local), tmp_path / "y", downloads)
    assert local.is_file()


def test_output_that_is_not_ours_is_refused_before_downloading(server, tmp_path):
    server.files["/a.tar"] = _tar({"ok.txt": b"fine"}, gz=False)
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    with pytest.raises(RosettaError, match="not empty and was not written by rosetta"):
        fetch(server.url + "/a.tar", thesis, tmp_path / "downloads")
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    with pytest.raises(RosettaError, match="is not a folder"):
        fetch(server.url + "/a.tar", notes, tmp_path / "downloads")
    assert (thesis / "chapter1.tex").read_text() == "years of work" and notes.read_text() == "keep me"
    assert server.requests == [] and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "thesis"]


def test_a_finished_output_answers_only_the_request_it_records(server, tmp_path):
    """The completion marker records what the folder completes (source, sha256): another archive, or a sha256
    the recorded one does not match, is never answered by the folder as it is."""
    a, b = _tar({"a.txt": b"from a"}), _tar({"b.txt": b"from b"})
    server.files["/a.tar.gz"], server.files["/b.tar.gz"] = a, b
    out, downloads = tmp_path / "OUT", tmp_path / "downloads"
    fetch(server.url + "/a.tar.gz", out, downloads)
    with pytest.raises(RosettaError, match=r"b\.tar\.gz: sha256 is [0-9a-f]{64}, expected 0{64}"):
        fetch(server.url + "/b.tar.gz", out, downloads, "0" * 64)
    assert sorted(p.name for p in out.iterdir() if p.name != COMPLETE_MARKER) == ["a.txt"]  # a's, as it was
    sha_b = hashlib.sha256(b).hexdigest()
    assert (fetch(server.url + "/b.tar.gz", out, downloads, sha_b) / "b.txt").read_bytes() == b"from b"
    assert not (out / "a.txt").exists()
    fetched = len(server.requests)
    fetch(server.url + "/b.tar.gz", out, downloads, sha_b.upper())  # the same request: nothing done
    fetch(server.url + "/b.tar.gz", out, downloads)
    assert len(server.requests) == fetched
    with pytest.raises(RosettaError, match="expected 1{64}"):  # a sha256 the record does not match
        fetch(server.url + "/b.tar.gz", out, downloads, "1" * 64)
    assert (fetch(server.url + "/a.tar.gz", out, downloads) / "a.txt").read_bytes() == b"from a"


def test_checksum_mismatch_leaves_nothing_behind(server, tmp_path):
    server.files["/x.tar"] = b"not what you expected" * 100
    url = server.url + "/x.tar"
    with pytest.raises(RosettaError) as err:
        download(url, tmp_path / "x.tar", "0" * 64)
    assert url in str(err.value) and "sha256" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_http_error_names_the_url(server, tmp_path):
    with pytest.raises(RosettaError, match=r"/missing.tar.*404"):
        download(server.url + "/missing.tar", tmp_path / "missing.tar")


def test_local_path_and_file_url_are_used_in_place(tmp_path):
    f = tmp_path / "local.bin"
    f.write_bytes(b"abc")
    assert download(str(f), tmp_path / "unused") == f
    assert download(f.as_uri(), tmp_path / "unused", hashlib.sha256(b"abc").hexdigest()) == f
    with pytest.raises(RosettaError, match="sha256"):
        download(str(f), tmp_path / "unused", "1" * 64)


# --------------------------------------------------------------------------- archives


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_archive_member_escaping_with_dotdot_is_refused(server, tmp_path, kind):
    members = {"ok/a.txt": b"fine", "../evil.txt": b"escaped"}
    server.files[f"/bad.{kind}"] = _tar(members, gz=False) if kind == "tar" else _zip(members)
    dest = tmp_path / "out" / "bad"
    with pytest.raises(RosettaError, match=r"\.\./evil\.txt"):
        fetch(server.url + f"/bad.{kind}", dest, tmp_path / "downloads")
    assert not dest.exists()
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no half-extracted temp folder


def test_archive_with_symlink_or_absolute_path_is_refused(tmp_path):
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as tar:
        info = tarfile.TarInfo("data/passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(RosettaError, match="is a link"):
        extract(link, tmp_path / "a")
    absolute = tmp_path / "abs.tar"
    absolute.write_bytes(_tar({"/tmp/owned.txt": b"x"}, gz=False))
    with pytest.raises(RosettaError, match="absolute"):
        extract(absolute, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_extraction_is_complete_or_absent(tmp_path):
    archive = tmp_path / "a.tar.gz"
    big = np.random.default_rng(2).bytes(200_000)
    archive.write_bytes(_tar({"d/x.txt": b"1", "d/big.bin": big, "d/y.txt": b"2"}))
    out = extract(archive, tmp_path / "out")
    assert (out / COMPLETE_MARKER).is_file() and (out / "d" / "y.txt").read_bytes() == b"2"
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:100_000])  # cut inside d/big.bin
    with pytest.raises(RosettaError, match="truncated or corrupt"):
        extract(truncated, tmp_path / "t")
    assert not (tmp_path / "t").exists()


# --------------------------------------------------------------------------- MJSynth and SynthText layouts


def _mjsynth_archive() -> bytes:
    """A tiny mjsynth.tar.gz in the released layout, with an empty, a corrupt and a missing image."""
    root = "mnt/ramdisk/max/90kDICT32px"
    words = {"train": ["EFFLORESCENT", "slinking", "Joint", "2194"], "val": ["hello"], "test": ["World", "x"]}
    members, lines = {}, {}
    n = 0
    for split, ws in words.items():
        lines[split] = []
        for w in ws:
            n += 1
            rel = f"./{2000 + n}/{n % 7 + 1}/{n}_{w}_{100 + n}.jpg"
            members[f"{root}/{rel[2:]}"] = _jpeg((n * 30 % 255, 80, 120))
            lines[split].append(f"{rel} {100 + n}")
    members[f"{root}/9/1/1_EMPTY_1.jpg"] = b""
    members[f"{root}/9/1/2_CORRUPT_2.jpg"] = b"\xff\xd8 not a jpeg"
    lines["train"] += ["./9/1/1_EMPTY_1.jpg 1", "./9/1/2_CORRUPT_2.jpg 2", "./9/1/3_MISSING_3.jpg 3"]
    for split, ls in lines.items():
        members[f"{root}/annotation_{split}.txt"] = ("\n".join(ls) + "\n").encode()
    members[f"{root}/lexicon.txt"] = b"\n".join(w.lower().encode() for ws in words.values() for w in ws)
    return _tar(members)


def test_mjsynth_layout_downloaded_and_converted(server, tmp_path):
    data = _mjsynth_archive()
    server.files["/mjsynth.tar.gz"] = data
    raw = fetch(server.url + "/mjsynth.tar.gz", tmp_path / "raw" / "mjsynth", tmp_path / "downloads",
                hashlib.sha256(data).hexdigest())
    assert (raw / "mnt/ramdisk/max/90kDICT32px/annotation_train.txt").is_file()
    reports = convert_mjsynth(raw, tmp_path / "lmdb", workers=1)
    assert sorted(reports) == ["test", "train", "val"]
    assert reports["train"]["written"] == 4
    assert reports["train"]["rejected"] == {"empty_image": 1, "missing": 1, "undecodable": 1}
    assert reports["train"]["examples"]["undecodable"] == ["./9/1/2_CORRUPT_2.jpg"]
    ds = LmdbDataset(tmp_path / "lmdb" / "train", Charset())
    assert ds.labels == ["efflorescent", "slinking", "joint", "2194"]
    img, label = ds[0]
    assert img.mode == "RGB" and label == "efflorescent"
    assert LmdbDataset(tmp_path / "lmdb" / "test", Charset()).labels == ["world", "x"]
    # Again: the extracted tree is complete, so nothing is downloaded or extracted twice.
    before = len(server.requests)
    fetch(server.url + "/mjsynth.tar.gz", tmp_path / "raw" / "mjsynth", tmp_path / "downloads")
    assert len(server.requests) == before


def test_mjsynth_label_is_the_middle_token():
    assert mjsynth_label("334_EFFLORESCENT_24742.jpg") == "EFFLORESCENT"
    assert mjsynth_label("./2194/2/1_a_b_7.jpg") == "a_b"
    assert mjsynth_label("broken.jpg") == ""


def _synthtext_zip() -> tuple[bytes, list[str]]:
    """A tiny SynthText.zip: gt.mat as released (1xK cells), one image with a single word (wordBB 2x4)
    and a txt entry whose words are split across spaces and newlines."""
    scene = Image.new("RGB", (200, 100), (255, 255, 255))
    scene.paste((255, 0, 0), (10, 10, 70, 40))  # word 1
    scene.paste((0, 0, 255), (100, 50, 190, 90))  # word 2
    scene.paste((0, 160, 0), (20, 60, 60, 80))  # word 3
    single = Image.new("RGB", (120, 60), (0, 0, 0))
    single.paste((255, 255, 0), (10, 10, 110, 50))
    enc = {}
    for name, im in (("8/ballet_106_0.jpg", scene), ("8/one_word_0.jpg", single)):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=95)
        enc[name] = buf.getvalue()

    def box(x0, y0, x1, y1):  # corners clockwise from top-left; x row then y row
        return np.array([[x0, x1, x1, x0], [y0, y0, y1, y1]], dtype=np.float64)

    imnames = np.empty((1, 2), dtype=object)
    word_bb = np.empty((1, 2), dtype=object)
    txt = np.empty((1, 2), dtype=object)
    imnames[0, 0], imnames[0, 1] = np.array(["8/ballet_106_0.jpg"]), np.array(["8/one_word_0.jpg"])
    word_bb[0, 0] = np.stack([box(10, 10, 70, 40), box(100, 50, 190, 90), box(20, 60, 60, 80)], axis=2)
    word_bb[0, 1] = box(10, 10, 110, 50)  # 2x4: MATLAB's shape for an image with one word
    txt[0, 0] = np.array(["Lorem ipsum", "dolor"])  # a char matrix, as released: rows padded
    txt[0, 1] = np.array(["Single"])
    char_bb = np.empty((1, 2), dtype=object)
    char_bb[0, 0], char_bb[0, 1] = np.zeros((2, 4, 15)), np.zeros((2, 4, 6))  # present, unused
    gt = io.BytesIO()
    scipy.io.savemat(gt, {"imnames": imnames, "wordBB": word_bb, "txt": txt, "charBB": char_bb})
    members = {"SynthText/gt.mat": gt.getvalue(), **{f"SynthText/{k}": v for k, v in enc.items()}}
    return _zip(members), ["Lorem", "ipsum", "dolor", "Single"]


def test_synthtext_layout_downloaded_and_converted(server, tmp_path):
    data, words = _synthtext_zip()
    server.files["/SynthText.zip"] = data
    raw = fetch(server.url + "/SynthText.zip", tmp_path / "raw" / "synthtext", tmp_path / "downloads")
    mat = scipy.io.loadmat(str(raw / "SynthText" / "gt.mat"))
    assert mat["wordBB"][0, 1].shape == (2, 4)  # the released quirk survives the round trip
    reports = convert_synthtext(raw, tmp_path / "lmdb", workers=1)
    assert reports["train"]["written"] == 4 and reports["train"]["rejected"] == {}
    ds = LmdbDataset(tmp_path / "lmdb" / "train", Charset(lowercase=False, characters="LoremipsuSngld"))
    assert ds.labels == words
    red, _ = ds[0]
    assert red.size == (60, 30)
    r, g, b = np.asarray(red, dtype=float).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60  # the crop is the red word box, not its surroundings
    single, _ = ds[3]
    assert single.size == (100, 40)


def test_newline_separated_words_follow_wordbb_order(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_jpeg(size=(100, 40)))
    bb = np.zeros((2, 4, 3))
    for i in range(3):
        bb[:, :, i] = [[i * 30, i * 30 + 25, i * 30 + 25, i * 30], [5, 5, 35, 35]]
    cells = {k: np.empty((1, 1), dtype=object) for k in ("imnames", "wordBB", "txt")}
    cells["imnames"][0, 0] = np.array(["a.jpg"])
    cells["wordBB"][0, 0] = bb
    cells["txt"][0, 0] = np.array(["one two\nthree"])
    scipy.io.savemat(tmp_path / "gt.mat", cells)
    convert_synthtext(tmp_path, tmp_path / "out", workers=1)
    assert LmdbDataset(tmp_path / "out" / "train", Charset()).labels == ["one", "two", "three"]
