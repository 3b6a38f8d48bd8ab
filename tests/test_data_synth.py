"""The synthetic MJSynth renderer: layout, determinism, declared fonts only, font filtering, the held-out
font families and the realism effects (each saved as a picture for a person to look at)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rosetta_infer.charset import Charset
from rosetta.config import CharsetConfig, SynthConfig, SynthEffects
from rosetta.errors import RosettaError
from rosetta.params import PROJECT_ROOT
from rosetta.prep import fonts as fonts_mod
from rosetta.prep.convert import mjsynth_label
from rosetta.prep.fonts import (debian_package_fonts, discover_fonts, font_files, missing_glyphs, split_families,
                                synth_fonts)
from rosetta.prep.render import photo_paths, render_word, text_mask
from rosetta.prep.synth import (MJSYNTH_DIR, PLAIN, PUNCTUATION, REPORT_NAME, SAMPLE_WORDS, _plan, _punctuated,
                                build_lexicon, effect_samples, render_dataset, sample_sheet)

TINY = SynthConfig(train_size=24, val_size=6, test_size=8, vocabulary_size=2000)
# Where the effect pictures go for a person to open (runs/ is git-ignored).
SAMPLES_DIR = PROJECT_ROOT / "runs" / "test-artifacts" / "synth_effects"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    render_dataset(out, TINY, seed=7, workers=2)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_is_mjsynth(rendered):
    root = rendered / MJSYNTH_DIR
    lexicon = (root / "lexicon.txt").read_text().splitlines()
    for split, size in (("train", 24), ("val", 6), ("test", 8)):
        lines = (root / f"annotation_{split}.txt").read_text().splitlines()
        assert len(lines) == size
        for line in lines:
            m = re.fullmatch(r"\./\d+/\d+/\d+_([0-9A-Za-z%s]+)_(\d+)\.jpg (\d+)" % re.escape(PUNCTUATION), line)
            assert m, line
            word, index = m[1], int(m[2])
            assert int(m[3]) == index and lexicon[index] == re.sub("[^0-9A-Za-z]", "", word).lower()
            assert split != "test" or word.isalnum()  # the test split stays plain
            with Image.open(root / line.split()[0]) as im:
                assert im.format == "JPEG" and im.height == 32 and im.width >= 8


def test_same_seed_same_bytes_whatever_the_workers(rendered, tmp_path):
    again = tmp_path / "b"
    render_dataset(again, TINY, seed=7, workers=1)
    assert _files(again) == _files(rendered)
    other = tmp_path / "c"
    render_dataset(other, TINY, seed=8, workers=1)
    assert _files(other) != _files(rendered)


def test_the_annotation_lists_the_plain_words_first(rendered):
    # train.curriculum_steps reads the head of the training set first: it must be the words drawn plainly.
    fonts, _ = synth_fonts(TINY)
    train_families, _ = split_families([f.family for f in fonts], TINY.test_font_fraction, 7)
    jobs, _, _ = _plan("train", 0, TINY.train_size, [f for f in fonts if f.family in train_families],
                       build_lexicon(TINY, 7), TINY, 7, 0, Path("/r"))
    plain = {Path(j.out_path).relative_to("/r").as_posix() for j in jobs if j.effects == PLAIN}
    assert 0 < len(plain) < len(jobs)
    listed = [line.split()[0][2:] for line in
              (rendered / MJSYNTH_DIR / "annotation_train.txt").read_text().splitlines()]
    assert set(listed[:len(plain)]) == plain and sorted(listed) == sorted(Path(j.out_path).relative_to("/r").as_posix()
                                                                          for j in jobs)


def test_test_split_uses_only_held_out_font_families(rendered):
    report = json.loads((rendered / REPORT_NAME).read_text())
    splits = report["splits"]
    test = set(splits["test"]["family_names"])
    seen = set(splits["train"]["family_names"]) | set(splits["val"]["family_names"])
    assert test and seen and not test & seen
    assert splits["train"]["fonts"] >= 1 and splits["test"]["families"] == len(test)


def test_rerender_with_same_inputs_is_a_noop(rendered, capsys):
    before = (rendered / MJSYNTH_DIR / "annotation_train.txt").stat().st_mtime_ns
    render_dataset(rendered, TINY, seed=7, workers=1)
    assert "is up to date" in capsys.readouterr().out
    assert (rendered / MJSYNTH_DIR / "annotation_train.txt").stat().st_mtime_ns == before


def test_symbol_and_math_fonts_are_skipped(tmp_path):
    (tmp_path / "broken.ttf").write_bytes(b"not a font")
    fonts, skipped = discover_fonts(font_files(dataclasses.replace(TINY, fonts_dirs=[str(tmp_path)])))
    names = {Path(f.path).name for f in fonts}
    assert "DejaVuSansMono.ttf" in names
    assert not any(re.search(r"STIX|cmex|cmsy|cmmi|LastResort|Math", n) for n in names)
    reasons = {Path(p).name: r for p, r in skipped.items()}
    assert reasons["cmsy10.ttf"].startswith("symbol") and reasons["STIXSizOneSymReg.ttf"].startswith("symbol")
    assert reasons["broken.ttf"].startswith("unreadable")
    assert len({f.family for f in fonts}) >= 4


def test_family_split_is_deterministic_and_needs_two_families():
    fams = [f"F{i}" for i in range(16)]
    train, test = split_families(fams, 0.25, seed=3)
    assert split_families(list(reversed(fams)), 0.25, seed=3) == (train, test)
    assert len(test) == 4 and not set(train) & set(test) and sorted(train + test) == sorted(fams)
    assert split_families(fams, 0.25, seed=4) != (train, test)
    with pytest.raises(RosettaError, match="fonts_dirs"):
        split_families(["Only"], 0.25, seed=0)


def test_lexicon_words_are_file_name_safe():
    lex = build_lexicon(TINY, seed=1)
    assert all(re.fullmatch(r"[0-9a-z]{1,12}", w) for w in lex.words)
    assert len(set(lex.words)) == len(lex.words)
    assert all(w.isalpha() for w in lex.words[: lex.n_dictionary])
    assert all(any(c.isdigit() for c in w) for w in lex.words[lex.n_dictionary:])


def test_train_and_val_words_carry_punctuation_the_label_reads_past(tmp_path):
    cfg = dataclasses.replace(TINY, punctuation=1.0)
    render_dataset(tmp_path / "p", cfg, seed=7, workers=1)
    root = tmp_path / "p" / MJSYNTH_DIR
    lexicon = (root / "lexicon.txt").read_text().splitlines()
    for split in ("train", "val", "test"):
        for line in (root / f"annotation_{split}.txt").read_text().splitlines():
            word = mjsynth_label(line.split()[0])
            marks = [c for c in word if not c.isalnum()]
            assert len(marks) == (0 if split == "test" else 1), (split, word)
            # The 0-9a-z charset drops the mark: the label is the lexicon word.
            assert Charset.from_config(CharsetConfig()).normalize(word) == lexicon[int(line.split()[1])]


def test_a_mark_the_font_cannot_draw_is_never_chosen():
    fonts, _ = discover_fonts(font_files(TINY))
    assert missing_glyphs(fonts[0].path, PUNCTUATION) == ""  # DejaVu-like text fonts draw them all
    assert missing_glyphs(fonts[0].path, "\ue001") == "\ue001"  # a private-use code point is missing
    rng = np.random.default_rng(0)
    drawn = {c for _ in range(400) for c in _punctuated("Word", rng, missing="$#&;%") if not c.isalnum()}
    assert drawn and not drawn & set("$#&;%") and drawn <= set(PUNCTUATION)


def test_rendered_text_is_dark_on_light_or_light_on_dark():
    fonts, _ = discover_fonts(font_files(TINY))
    img = render_word("Contrast", fonts[0].path, np.random.default_rng(0))
    gray = np.asarray(img.convert("L"), dtype=float)
    assert img.height == 32 and img.width > 32
    assert gray.max() - gray.min() > 80  # readable: the text stands out from its background


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for rel, data in _files(root).items():
        h.update(rel.encode() + b"\0" + data)
    return h.hexdigest()


def test_extra_system_fonts_do_not_change_the_rendered_bytes(tmp_path, monkeypatch):
    """The embedded default reads declared packages only: a font added to the system folder changes
    nothing, unless data.synth.system_fonts asks for the machine's fonts."""
    system = tmp_path / "system_fonts"
    system.mkdir()
    monkeypatch.setattr(fonts_mod, "SYSTEM_FONT_DIR", system)
    cfg = dataclasses.replace(TINY, train_size=12, val_size=4, test_size=4)
    render_dataset(tmp_path / "before", cfg, seed=3, workers=1)
    extra = next(p for p in font_files(cfg) if p.name == "DejaVuSans.ttf")
    shutil.copy(extra, system / "ExtraSans.ttf")
    render_dataset(tmp_path / "after", cfg, seed=3, workers=1)
    assert _tree_hash(tmp_path / "after") == _tree_hash(tmp_path / "before")
    assert str(system / "ExtraSans.ttf") not in font_files(cfg)
    assert system / "ExtraSans.ttf" in font_files(dataclasses.replace(cfg, system_fonts=True))
    report = json.loads((tmp_path / "after" / REPORT_NAME).read_text())
    assert report["inputs"]["fonts"] and not any(f.startswith(str(system)) for f in report["inputs"]["fonts"])
    # Where the project and its venv live is not part of what was rendered: a clone elsewhere hashes the same.
    assert any(f.startswith("<site-packages>/") for f in report["inputs"]["fonts"])
    assert any(f.startswith("<site-packages>/") for f in report["fonts_skipped"])  # pip's STIX fonts, skipped
    assert sys.prefix not in (tmp_path / "after" / REPORT_NAME).read_text()  # the skipped ones' duplicates too


def test_a_missing_declared_font_package_is_one_sentence(tmp_path):
    listing = tmp_path / "fonts.txt"
    listing.write_text("# the renderer's fonts\nfonts-not-a-real-package\n")
    with pytest.raises(RosettaError, match="fonts-not-a-real-package is not installed; run `make install`"):
        font_files(dataclasses.replace(TINY, font_packages=str(listing)))
    with pytest.raises(RosettaError, match="does not exist"):
        font_files(dataclasses.replace(TINY, font_packages=str(tmp_path / "nope.txt")))


def test_declared_debian_packages_bring_many_families():
    listed = [line.strip() for line in (PROJECT_ROOT / TINY.font_packages).read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert all(debian_package_fonts(p) for p in listed)  # each package installs at least one font file
    fonts, _ = discover_fonts(font_files(TINY))
    assert len({f.family for f in fonts}) >= 60


def test_excluded_families_are_never_drawn_and_say_why():
    all_fonts, _ = discover_fonts(font_files(TINY))
    family = all_fonts[0].family
    fonts, skipped = synth_fonts(dataclasses.replace(TINY, exclude_families=[family]))
    assert family not in {f.family for f in fonts}
    assert len(fonts) == len([f for f in all_fonts if f.family != family])
    assert {skipped[f.path] for f in all_fonts if f.family == family} == {"family in data.synth.exclude_families"}
    # the embedded default drops the script faces that the declared packages bring
    default_families = {f.family for f in synth_fonts(TINY)[0]}
    assert not default_families & set(TINY.exclude_families)


def test_every_effect_changes_the_image_and_is_saved_for_a_person():
    strips = effect_samples(TINY, seed=0)
    effects = [f.name for f in dataclasses.fields(SynthEffects)]
    assert list(strips) == ["none", *effects, "all"]
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    plain = np.asarray(strips["none"].convert("L"), dtype=float)
    for name, strip in strips.items():
        strip.save(SAMPLES_DIR / f"{name}.png")
        assert strip.height == 32
        if name != "none":
            other = np.asarray(strip.convert("L"), dtype=float)
            assert other.shape != plain.shape or np.abs(other - plain).mean() > 2, name
    sample_sheet(strips).save(SAMPLES_DIR / "sheet.png")
    assert (SAMPLES_DIR / "photo_background.png").stat().st_size > 1000


def test_photo_backgrounds_come_from_installed_packages():
    photos = photo_paths()
    assert len(photos) >= 12 and all(p.is_file() for p in photos)
    assert not any(p.name in ("text.png", "page.png", "logo.png") for p in photos)  # no legible words


def test_training_crops_may_cut_into_glyphs_and_test_crops_never_do():
    # Real boxes are often tight; the synth test split measures typefaces, so its crops keep every stroke.
    from PIL import ImageFont

    font = ImageFont.truetype(discover_fonts(font_files(TINY))[0][0].path, 40)
    clipped = 0
    for seed in range(40):
        tight = np.asarray(text_mask("Burger", font, 0.0, False, np.random.default_rng(seed)), float)
        whole = np.asarray(text_mask("Burger", font, 0.0, False, np.random.default_rng(seed), clip=False), float)
        assert whole.sum() >= tight.sum()
        clipped += whole.sum() > tight.sum()
    assert 0 < clipped < 40


# What an AVX2-only machine runs: NumPy without its AVX-512 kernels, OpenBLAS with its Haswell ones.
AVX2_ONLY = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR", "OPENBLAS_CORETYPE": "Haswell"}
# Words of the default data (seed 42) whose bytes differed between the two CPU types while the text colour's
# luma went through OpenBLAS: (text, font file, per-sample seed, drawn with the default effects, else plainly).
CPU_DEPENDENT_WORDS = (("not,", "FanwoodText-Italic.otf", (42, 0, 16016), True),
                       ("3yb62jc", "tiresias_pcfontz.ttf", (42, 0, 28216), True),
                       ("OPIOIDS;", "PTZ56F.ttf", (42, 1, 322), True),
                       ("piping'", "Arapey-Regular.otf", (42, 1, 949), False))
# Renders the jobs as the download stage does, and prints the glyph offsets and angles of curved baselines: the
# arctan behind them differs by CPU in a few of these seeds, a difference the rounding after it rarely shows.
_RENDER_JOBS = """
import json, sys
import numpy as np
from rosetta.config import SynthEffects
from rosetta.prep.render import _glyph_offsets
from rosetta.prep.synth import _Job, _render_job
for i, (text, font, seed, effects) in enumerate(json.loads(sys.stdin.read())):
    _render_job(_Job(f"{sys.argv[1]}/{i}.jpg", text, font, tuple(seed), SynthEffects(**effects)))
centres = 40 + np.cumsum(np.full(10, 23.7))
print(json.dumps([[a.tolist() for a in _glyph_offsets(centres, np.random.default_rng(s), 40)] for s in range(60)]))
"""


def _render_in_a_process(jobs: list, out: Path, env: dict[str, str]) -> tuple[list[bytes], list]:
    import rosetta

    out.mkdir()
    path = os.pathsep.join(filter(None, [str(Path(rosetta.__file__).parents[1]), os.environ.get("PYTHONPATH")]))
    clean = {k: v for k, v in os.environ.items() if k not in AVX2_ONLY}
    run = subprocess.run([sys.executable, "-c", _RENDER_JOBS, str(out)], input=json.dumps(jobs), text=True,
                         check=True, capture_output=True, env={**clean, **env, "PYTHONPATH": path})
    return [(out / f"{i}.jpg").read_bytes() for i in range(len(jobs))], json.loads(run.stdout)


def test_a_seed_renders_the_same_bytes_on_avx512_and_avx2_machines(tmp_path):
    """The renderer's float paths give the same bits under NumPy's AVX-512 and AVX2 kernels and OpenBLAS's
    core types (here both run on this machine, the second as an AVX2-only CPU would)."""
    by_name = {Path(f.path).name: f.path for f in synth_fonts(TINY)[0]}
    every = dataclasses.asdict(SynthEffects(**{f.name: 1.0 for f in dataclasses.fields(SynthEffects)}))
    fonts = sorted(by_name.values())
    jobs = [(word, fonts[(7 * i + k) % len(fonts)], (5, k, i), every)
            for k in range(3) for i, word in enumerate(SAMPLE_WORDS)]
    jobs += [(text, by_name[font], seed, dataclasses.asdict(SynthEffects() if effects else PLAIN))
             for text, font, seed, effects in CPU_DEPENDENT_WORDS]
    native, native_glyphs = _render_in_a_process(jobs, tmp_path / "native", {})
    avx2, avx2_glyphs = _render_in_a_process(jobs, tmp_path / "avx2", AVX2_ONLY)
    assert [job[0] for job, a, b in zip(jobs, native, avx2) if a != b] == []
    assert [seed for seed, (a, b) in enumerate(zip(native_glyphs, avx2_glyphs)) if a != b] == []
