"""Our own MJSynth: word images rendered from the fonts on this machine, written in MJSynth's layout.

Train and val share font families; the test split uses families neither has seen, so its accuracy
measures generalisation to unseen typefaces. Every random choice comes from a per-sample seed, so a
seed gives the same bytes whatever the number of worker processes.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import math
import re
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from rosetta.config import SynthConfig, project_path
from rosetta.data.download import atomic_dir
from rosetta.data.lmdb_io import parallel_map
from rosetta.errors import RosettaError

SPLITS = ("train", "val", "test")
IMAGE_HEIGHT = 32
MJSYNTH_DIR = "90kDICT32px"
REPORT_NAME = "synth_report.json"
FONT_PACKAGES = ("font_roboto", "font_lato", "font_caladea", "font_source_sans_pro", "font_source_serif_pro",
                 "font_hanken_grotesk", "font_fredoka_one", "font_manrope", "font_fjallaone", "font_rhd")
CHECK_CHARS = string.digits + string.ascii_lowercase + string.ascii_uppercase

# Symbol, math and fallback fonts map letters to other shapes (or to one box), so a word drawn with
# them is unreadable; the render check catches most, the name catches the rest (cmmi's old-style digits).
_SKIP_NAME = re.compile(r"stix|math|symbol|dingbat|emoji|icon|lastresort|last resort|wingding|webding|"
                        r"cmex|cmsy|cmmi", re.IGNORECASE)
# Hairline weights fade to a faint grey at 32 px and hurt more than they teach.
_SKIP_STYLE = re.compile(r"thin|hairline", re.IGNORECASE)
# matplotlib's Computer Modern files each name their own family; roman, bold and text italic are one
# design, and a design seen in training must not count as an unseen test family.
_FAMILY_ALIASES = {"cmr10": "Computer Modern Roman", "cmb10": "Computer Modern Roman",
                   "cmti10": "Computer Modern Roman"}
_RENDER_SIZES = (36, 40, 44, 48)  # drawn large, then scaled to 32 px: smoother strokes


@dataclass(frozen=True)
class Font:
    path: str
    family: str
    style: str


# --------------------------------------------------------------------------- fonts


def font_dirs(extra: Sequence[str] = ()) -> list[Path]:
    """Where fonts are looked for, in priority order (the first copy of a duplicate font wins)."""
    dirs: list[Path] = []
    for pkg in FONT_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec and spec.submodule_search_locations:
            dirs.append(Path(list(spec.submodule_search_locations)[0]))
    import matplotlib  # only for the location of its bundled fonts

    dirs.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    dirs.append(Path("/usr/share/fonts"))
    dirs.extend(project_path(d) for d in extra)
    return [d for d in dirs if d.is_dir()]


def _glyph_problem(font: ImageFont.FreeTypeFont) -> str | None:
    bitmaps = []
    for ch in CHECK_CHARS:
        im = Image.new("L", (2 * font.size, 2 * font.size), 0)
        ImageDraw.Draw(im).text((font.size // 2, font.size // 4), ch, font=font, fill=255)
        if im.getbbox() is None:
            return f"{ch!r} renders empty"
        bitmaps.append(im.tobytes())
    # Fonts without Latin letters draw one box for every character; real fonts differ in (nearly) all.
    if len(set(bitmaps)) < len(CHECK_CHARS) - 4:
        return "0-9a-zA-Z do not render as distinct glyphs"
    return None


def discover_fonts(dirs: Sequence[Path]) -> tuple[list[Font], dict[str, str]]:
    """Usable fonts under ``dirs`` and, for the others, why they were skipped (path -> reason)."""
    fonts: dict[tuple[str, str], Font] = {}
    skipped: dict[str, str] = {}
    for d in dirs:
        for path in sorted(p for p in Path(d).rglob("*") if p.suffix.lower() in (".ttf", ".otf")):
            try:
                font = ImageFont.truetype(str(path), 24)
                family, style = font.getname()
            except OSError as exc:
                skipped[str(path)] = f"unreadable ({exc})"
                continue
            family, style = family or path.stem, style or "Regular"
            if _SKIP_NAME.search(f"{path.name} {family}"):
                skipped[str(path)] = "symbol, math or fallback font"
            elif _SKIP_STYLE.search(f"{style} {path.stem}"):
                skipped[str(path)] = "hairline weight"
            elif (problem := _glyph_problem(font)) is not None:
                skipped[str(path)] = problem
            elif (family, style) in fonts:
                skipped[str(path)] = f"duplicate of {fonts[(family, style)].path}"
            else:
                fonts[(family, style)] = Font(str(path), _FAMILY_ALIASES.get(family, family), style)
    return sorted(fonts.values(), key=lambda f: (f.family, f.style, f.path)), skipped


def split_families(families: Sequence[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train/val families, held-out test families): a deterministic share chosen by ``seed``."""
    names = sorted(set(families))
    if len(names) < 2:
        raise RosettaError(f"found {len(names)} usable font famil{'y' if len(names) == 1 else 'ies'}, need at "
                           "least 2 to hold one out for the test split; add font folders to data.synth.fonts_dirs")
    n_test = min(len(names) - 1, max(1, round(test_fraction * len(names))))
    order = np.random.default_rng([seed, 0x7E57]).permutation(len(names))
    test = sorted(names[i] for i in order[:n_test])
    return [n for n in names if n not in test], test


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


_FONTS: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    key = (path, size)
    if key not in _FONTS:
        _FONTS[key] = ImageFont.truetype(path, size)
    return _FONTS[key]


def _text_mask(text: str, font: ImageFont.FreeTypeFont, tracking: float, rng: np.random.Generator) -> Image.Image:
    """The word as an 8-bit coverage mask, cropped with padding so the text fills most of the height."""
    size = font.size
    advances = [font.getlength(c) + tracking for c in text]
    width = int(sum(advances) + 2 * size)
    ascent, descent = font.getmetrics()
    height = ascent + descent + size
    baseline = ascent + size // 2
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    if tracking == 0:
        draw.text((size, baseline), text, font=font, fill=255, anchor="ls")
    else:
        x = float(size)
        for c, adv in zip(text, advances):
            draw.text((x, baseline), c, font=font, fill=255, anchor="ls")
            x += adv
    x0, y0, x1, y1 = mask.getbbox() or (0, 0, width, height)
    if rng.random() < 0.6:
        # The line box (cap height to descender) rather than the ink: 'ace' and 'Ship' keep one scale.
        y0 = min(y0, baseline + font.getbbox("H", anchor="ls")[1])
        y1 = max(y1, baseline + font.getbbox("gjpqy", anchor="ls")[3])
    h = y1 - y0
    left, right = (rng.uniform(0.05, 0.3, 2) * h).tolist()
    top, bottom = (rng.uniform(0.04, 0.14, 2) * h).tolist()
    return mask.crop((round(x0 - left), round(y0 - top), round(x1 + right), round(y1 + bottom)))


def _warp(mask: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A slight rotation (smaller for long words, so the text keeps most of the height) and perspective."""
    w, h = mask.size
    max_angle = min(3.0, math.degrees(math.atan(0.35 * h / w)))
    angle = float(np.clip(rng.normal(0, max_angle / 2), -max_angle, max_angle))
    if abs(angle) > 0.2:
        mask = mask.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
        w, h = mask.size
    if rng.random() < 0.5:
        j = 0.03 * h
        dx = rng.uniform(-j, j, 8).tolist()
        quad = (dx[0], dx[1], dx[2], h + dx[3], w + dx[4], h + dx[5], w + dx[6], dx[7])
        mask = mask.transform((w, h), Image.Transform.QUAD, quad, resample=Image.Resampling.BILINEAR)
    return mask


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background and text colours whose brightness (mean of the channels) differs by about 0.4 or more."""
    bg_l = rng.uniform(0, 1)
    fg_l = rng.uniform(0, bg_l - 0.4) if bg_l >= 0.5 else rng.uniform(bg_l + 0.4, 1)
    tints = rng.uniform(-0.2, 0.2, (2, 3))
    tints -= tints.mean(axis=1, keepdims=True)  # hue without moving the brightness
    return np.clip(bg_l + tints[0], 0, 1), np.clip(fg_l + tints[1], 0, 1)


def render_word(text: str, font_path: str, rng: np.random.Generator) -> Image.Image:
    """One RGB word image, 32 px high and as wide as the text needs."""
    font = _font(font_path, int(rng.choice(_RENDER_SIZES)))
    tracking = float(rng.uniform(-0.03, 0.25) * font.size) if rng.random() < 0.3 else 0.0
    mask = _warp(_text_mask(text, font, tracking, rng), rng)
    width = max(1, round(IMAGE_HEIGHT * mask.width / mask.height))
    alpha = np.asarray(mask.resize((width, IMAGE_HEIGHT), Image.Resampling.LANCZOS), np.float32)[..., None] / 255
    bg, fg = _colours(rng)
    background = np.broadcast_to(bg, (IMAGE_HEIGHT, width, 3)).astype(np.float32)
    if rng.random() < 0.3:
        ramp = np.linspace(-1, 1, width if rng.random() < 0.5 else IMAGE_HEIGHT, dtype=np.float32)
        ramp = ramp[None, :, None] if ramp.size == width else ramp[:, None, None]
        background = np.clip(background + rng.uniform(-0.15, 0.15) * ramp, 0, 1)
    img = Image.fromarray(np.round((background * (1 - alpha) + fg * alpha) * 255).astype(np.uint8))
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
    sigma = rng.uniform(0, 6)
    noisy = np.asarray(img, np.float32) + rng.normal(0, sigma, (IMAGE_HEIGHT, width, 3))
    return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def _render_job(job: _Job) -> int:
    rng = np.random.default_rng(job.seed)
    img = render_word(job.text, job.font_path, rng)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
    path = Path(job.out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return img.width


# --------------------------------------------------------------------------- the dataset


def render_dataset(out: str | Path, cfg: SynthConfig, seed: int, workers: int = 0) -> dict:
    """Render train/val/test into ``out`` in MJSynth's layout and return the report (also saved as json).

    ``out/90kDICT32px/<a>/<b>/<n>_<Word>_<lexicon index>.jpg`` with ``annotation_{train,val,test}.txt``
    and ``lexicon.txt`` beside the folders, as in the released archive; ``out/synth_report.json``
    records the fonts and families each split used.
    """
    started = time.monotonic()
    fonts, skipped = discover_fonts(font_dirs(cfg.fonts_dirs))
    # Rendering is deterministic, so the same inputs over a complete output need no second pass.
    inputs = {"seed": seed, "config": dataclasses.asdict(cfg), "fonts": [f.path for f in fonts]}
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
                    "fonts_skipped": dict(sorted(skipped.items())), "splits": {}}
    with atomic_dir(out, marker=False) as tmp:
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
        else:
            lex = int(rng.integers(n_dict))
        text = _cased(lexicon.words[lex], rng.random())
        # Family first, then style: a family with many weights must not crowd out the others.
        family = by_family[families[int(rng.integers(len(families)))]]
        font = family[int(rng.integers(len(family)))]
        used.add(font)
        g = offset + i
        rel = f"{g // 1000 + 1}/{g // 100 % 10 + 1}/{g % 100 + 1}_{text}_{lex}.jpg"
        jobs.append(_Job(str(root / rel), text, font.path, (seed, split_id, i)))
        lines.append(f"./{rel} {lex}\n")
    return jobs, lines, used
