"""Our own MJSynth: words drawn by rosetta.prep.render in the declared fonts (rosetta.prep.fonts), over
natural-photo backgrounds, written in MJSynth's layout.

Train and val share font families; the test split uses families neither has seen, so its accuracy
measures generalisation to unseen typefaces. Every random choice comes from a per-sample seed, so a
seed gives the same bytes whatever the number of worker processes.
"""
from __future__ import annotations

import dataclasses
import io
import json
import re
import string
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from rosetta.config import SynthConfig, SynthEffects
from rosetta.errors import RosettaError
from rosetta.fsutil import atomic_dir
from rosetta.prep.fonts import Font, missing_glyphs, portable_path, split_families, synth_fonts
from rosetta.prep.parallel import parallel_map
from rosetta.prep.render import IMAGE_HEIGHT, photo_paths, render_word

SPLITS = ("train", "val", "test")
MJSYNTH_DIR = "90kDICT32px"
REPORT_NAME = "synth_report.json"
PLAIN = SynthEffects(**{f.name: 0.0 for f in dataclasses.fields(SynthEffects)})  # every effect off
# --------------------------------------------------------------------------- words


@dataclass(frozen=True)
class Lexicon:
    """``words`` (lower case, one per lexicon.txt line); the first ``n_dictionary`` are English words,
    the rest digit strings and alphanumeric codes."""

    words: list[str]
    n_dictionary: int


def build_lexicon(cfg: SynthConfig, seed: int) -> Lexicon:
    from wordfreq import top_n_list  # offline word list shipped inside the package

    lo, hi = cfg.min_word_len, cfg.max_word_len
    # Letters only: wordfreq folds multi-digit numbers to zeros, and the word becomes a file name.
    words = list(dict.fromkeys(w.lower() for w in top_n_list("en", cfg.vocabulary_size)
                               if re.fullmatch(r"[A-Za-z]+", w) and lo <= len(w) <= hi))
    if not words:
        raise RosettaError(f"data.synth: none of the {cfg.vocabulary_size} most frequent words has {lo} to {hi} "
                           "letters; widen min_word_len/max_word_len or raise vocabulary_size")
    rng = np.random.default_rng([seed, 0x1E71C0])
    seen = set(words)
    codes: list[str] = []
    alphabet = string.digits + string.ascii_lowercase
    n_codes = max(100, len(words) // 4)
    for _ in range(50 * n_codes):
        if len(codes) == n_codes:
            break
        length = int(rng.integers(lo, min(hi, 8) + 1))
        if rng.random() < 0.6:
            code = "".join(rng.choice(list(string.digits), length))
        else:
            code = "".join(rng.choice(list(alphabet), length))
            if not any(c.isdigit() for c in code):
                continue
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return Lexicon(words + codes, len(words))


# Punctuation as signs carry it ("SALE!", "$20", "Joe's", "Sign-up"). Only characters every file system takes in
# a file name (no ? : " * / \\ < > |): the drawn text is the MJSynth file name's word, and the label, so a
# charset without these characters drops them (the model learns to read past them) and one with them keeps them.
PUNCT_BEFORE = "($#'&"
PUNCT_AFTER = ".,!');%"
PUNCT_INSIDE = "-'.&"


PUNCTUATION = "".join(sorted(set(PUNCT_BEFORE + PUNCT_AFTER + PUNCT_INSIDE)))


def _punctuated(text: str, rng: np.random.Generator, missing: str = "") -> str:
    """``text`` with one punctuation mark before, after or inside it, never one in ``missing`` (the font has
    no glyph for it)."""
    before, after, inside = ([c for c in marks if c not in missing] for marks in (PUNCT_BEFORE, PUNCT_AFTER,
                                                                                   PUNCT_INSIDE))
    r = rng.random()
    if r < 0.25 and before:
        return before[int(rng.integers(len(before)))] + text
    can_go_inside = len(text) >= 2 and bool(inside)
    if after and (r < 0.8 or not can_go_inside):
        return text + after[int(rng.integers(len(after)))]
    if not can_go_inside:
        return text
    at = int(rng.integers(1, len(text)))
    return text[:at] + inside[int(rng.integers(len(inside)))] + text[at:]


def _cased(word: str, r: float) -> str:
    if r < 0.4:
        return word
    if r < 0.7:
        return word[:1].upper() + word[1:]
    return word.upper()


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Job:
    out_path: str
    text: str
    font_path: str
    seed: tuple[int, ...]
    effects: SynthEffects
    clip_margins: bool = True


def _render_job(job: _Job) -> int:
    rng = np.random.default_rng(job.seed)
    img = render_word(job.text, job.font_path, rng, job.effects, _photos(), job.clip_margins)
    buf = io.BytesIO()
    lo = 15 if rng.random() < job.effects.low_resolution else 60  # IC15-like blocky artefacts with low resolution
    img.save(buf, "JPEG", quality=int(rng.integers(lo, 96)))
    path = Path(job.out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return img.width


@lru_cache(maxsize=1)
def _photos() -> list[Path]:
    """The background photographs, looked up once per process."""
    return photo_paths()


# --------------------------------------------------------------------------- the dataset


def render_dataset(out: str | Path, cfg: SynthConfig, seed: int, workers: int = 0) -> dict:
    """Render train/val/test into ``out`` in MJSynth's layout and return the report (also saved as json).

    ``out/90kDICT32px/<a>/<b>/<n>_<Word>_<lexicon index>.jpg`` with ``annotation_{train,val,test}.txt``
    and ``lexicon.txt`` beside the folders, as in the released archive; ``out/synth_report.json``
    records the fonts and families each split used.
    """
    started = time.monotonic()
    fonts, skipped = synth_fonts(cfg)
    # Rendering is deterministic, so the same inputs over a complete output need no second pass.
    inputs = {"seed": seed, "config": dataclasses.asdict(cfg), "fonts": [f.portable for f in fonts]}
    out = Path(out)
    previous = out / REPORT_NAME
    if previous.is_file() and json.loads(previous.read_text()).get("inputs") == inputs:
        print(f"synth: {out} is up to date")
        return json.loads(previous.read_text())
    train_families, test_families = split_families([f.family for f in fonts], cfg.test_font_fraction, seed)
    split_fonts = {"train": [f for f in fonts if f.family in train_families]}
    split_fonts["val"] = split_fonts["train"]
    split_fonts["test"] = [f for f in fonts if f.family in test_families]
    sizes = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size}
    lexicon = build_lexicon(cfg, seed)
    report: dict = {"inputs": inputs, "lexicon_size": len(lexicon.words), "fonts_usable": len(fonts),
                    "fonts_skipped": dict(sorted((portable_path(p), why) for p, why in skipped.items())),
                    "splits": {}}
    with atomic_dir(out) as tmp:
        root = tmp / MJSYNTH_DIR
        root.mkdir()
        (root / "lexicon.txt").write_text("".join(w + "\n" for w in lexicon.words))
        offset = 0
        for split_id, split in enumerate(SPLITS):
            jobs, lines, used = _plan(split, split_id, sizes[split], split_fonts[split], lexicon, cfg, seed,
                                      offset, root)
            offset += sizes[split]
            widths = list(parallel_map(_render_job, jobs, workers, total=len(jobs), desc=f"render {split}",
                                       unit=" images", chunksize=64))
            (root / f"annotation_{split}.txt").write_text("".join(lines))
            families = sorted({f.family for f in used})
            report["splits"][split] = {
                "samples": len(jobs), "fonts": len(used), "families": len(families), "family_names": families,
                "font_files": sorted(Path(f.path).name for f in used),
                "mean_width": round(float(np.mean(widths)), 2)}
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    for split, info in report["splits"].items():
        print(f"synth {split}: {info['samples']} images, {info['fonts']} fonts from {info['families']} "
              f"families ({', '.join(info['family_names'])})")
    print(f"synth: rendered in {time.monotonic() - started:.1f}s into {out}")
    return report


def _plan(split: str, split_id: int, size: int, fonts: list[Font], lexicon: Lexicon, cfg: SynthConfig,
          seed: int, offset: int, root: Path) -> tuple[list[_Job], list[str], set[Font]]:
    """What each sample of a split shows (word, case, font) and where it goes; cheap, so done up front."""
    rng = np.random.default_rng([seed, split_id, 0x5A3])
    # Its own generator: the share of punctuated words changes no other choice of the plan.
    punct_rng = np.random.default_rng([seed, split_id, 0x9C7])
    by_family: dict[str, list[Font]] = {}
    for f in fonts:
        by_family.setdefault(f.family, []).append(f)
    families = sorted(by_family)
    n_dict = lexicon.n_dictionary
    n_codes = len(lexicon.words) - n_dict
    jobs: list[_Job] = []
    lines: list[str] = []
    used: set[Font] = set()
    for i in range(size):
        if n_codes and rng.random() < cfg.numeric_fraction:
            lex = n_dict + int(rng.integers(n_codes))
        elif rng.random() < 0.5:
            # Log-uniform over frequency rank: signs repeat short common words ("the", "of", "exit").
            lex = min(n_dict - 1, int(n_dict ** rng.random()) - 1)
        else:
            lex = int(rng.integers(n_dict))
        text = _cased(lexicon.words[lex], rng.random())
        # Family first, then style: a family with many weights must not crowd out the others.
        family = by_family[families[int(rng.integers(len(families)))]]
        font = family[int(rng.integers(len(family)))]
        used.add(font)
        # The test split stays plain (below); the others draw a punctuated word now and then.
        if split != "test" and punct_rng.random() < cfg.punctuation:
            text = _punctuated(text, punct_rng, missing_glyphs(font.path, PUNCTUATION))
        g = offset + i
        rel = f"{g // 1000 + 1}/{g // 100 % 10 + 1}/{g % 100 + 1}_{text}_{lex}.jpg"
        # The test split stays plain, its crops never cut into a glyph: it measures reading unseen typefaces;
        # the real sets measure realism.
        effects = PLAIN if split == "test" or rng.random() < cfg.clean_fraction else cfg.effects
        jobs.append(_Job(str(root / rel), text, font.path, (seed, split_id, i), effects, split != "test"))
        lines.append(f"./{rel} {lex}\n")
    # The annotation lists the plain words first (the files and their names stay as drawn): the head of the
    # training set is what train.curriculum_steps reads first.
    plain = [job.effects == PLAIN for job in jobs]
    lines = [line for line, p in zip(lines, plain) if p] + [line for line, p in zip(lines, plain) if not p]
    return jobs, lines, used


# --------------------------------------------------------------------------- samples for people


SAMPLE_WORDS = ("Hotel", "EXIT", "coffee", "2024", "Station", "PARKING", "the", "Burger")


def effect_samples(cfg: SynthConfig, seed: int, words: Sequence[str] = SAMPLE_WORDS) -> dict[str, Image.Image]:
    """A strip of ``words`` per effect of data.synth.effects, that effect always on and the others off
    ("none": all off; "all": the configured mix), in the training fonts: for a person to look at."""
    fonts, _ = synth_fonts(cfg)
    train_families, _ = split_families([f.family for f in fonts], cfg.test_font_fraction, seed)
    fonts = [f for f in fonts if f.family in train_families]
    off = PLAIN
    variants = {"none": off, **{f.name: dataclasses.replace(off, **{f.name: 1.0})
                                for f in dataclasses.fields(SynthEffects)}, "all": cfg.effects}
    strips = {}
    for k, (name, effects) in enumerate(variants.items()):
        images = []
        for i, word in enumerate(words):
            rng = np.random.default_rng([seed, 0x5A41, k, i])
            images.append(render_word(word, fonts[int(rng.integers(len(fonts)))].path, rng, effects, _photos()))
        strip = Image.new("RGB", (sum(im.width for im in images) + 4 * (len(images) - 1), IMAGE_HEIGHT), "white")
        x = 0
        for im in images:
            strip.paste(im, (x, 0))
            x += im.width + 4
        strips[name] = strip
    return strips


def sample_sheet(strips: dict[str, Image.Image], scale: int = 2) -> Image.Image:
    """The strips one under the other, each named on its left, scaled up ``scale`` times."""
    label_w, gap = 110, 4
    width = label_w + max(s.width for s in strips.values())
    sheet = Image.new("RGB", (width, len(strips) * (IMAGE_HEIGHT + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (name, strip) in enumerate(strips.items()):
        y = row * (IMAGE_HEIGHT + gap)
        draw.text((4, y + IMAGE_HEIGHT // 2), name, fill="black", anchor="lm")
        sheet.paste(strip, (label_w, y))
    return sheet.resize((sheet.width * scale, sheet.height * scale), Image.Resampling.NEAREST)
