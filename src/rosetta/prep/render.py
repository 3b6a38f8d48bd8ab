"""One word image as MJSynth and SynthText make them: a text layer (font, tracking, curved baseline,
rotation, perspective), optional border and shadow layers, all blended over a background cut from a
natural photograph (or a flat or ramped colour), then what a camera adds (uneven light, occlusion,
blur, low resolution, noise; the JPEG quality is the caller's).

Every random choice comes from the ``rng`` the caller passes, so a seed gives the same pixels in any
process and on any CPU: the float arithmetic is NumPy's elementwise operations (exact on every SIMD width),
trigonometry goes through Python's ``math`` and no product through BLAS (see ``_libm``, ``_luma``).
``SynthEffects`` (data.synth.effects) holds the probability of each optional step; all zero draws clean
words on flat or ramped colour.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from rosetta.config import SynthEffects

IMAGE_HEIGHT = 32
_RENDER_SIZES = (36, 40, 44, 48)  # drawn large, then scaled to 32 px: smoother strokes

# Photographs that install with scikit-image (skimage/data) and matplotlib (sample_data): scenes,
# textures and objects, none with legible text (text.png, page.png and logos would teach words the
# label does not name).
_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png",
           "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
           "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg", "grace_hopper.jpg")


def photo_paths() -> list[Path]:
    """The background photographs found in the installed packages, in a fixed order."""
    import matplotlib
    import skimage

    dirs = [Path(skimage.__file__).parent / "data", Path(matplotlib.get_data_path()) / "sample_data"]
    return [d / name for name in _PHOTOS for d in dirs if (d / name).is_file()]


@lru_cache(maxsize=None)
def _photo(path: str) -> np.ndarray:
    with Image.open(path) as im:
        img = im.convert("RGB")
    # Large photographs are shrunk once: crops of a 512 px picture already span fine to coarse texture.
    if max(img.size) > 640:
        s = 640 / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BILINEAR)
    return np.asarray(img, np.float32) / 255


@lru_cache(maxsize=None)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


# --------------------------------------------------------------------------- the text layer


def _libm(fn: Callable[[float], float], x: np.ndarray) -> np.ndarray:
    """``fn`` (a ``math`` function) of each element: NumPy picks its transcendental kernels by CPU type, and
    its AVX-512 ones (arctan among them) give other last bits than the AVX2 ones, which would move a glyph."""
    return np.array([fn(v) for v in x.tolist()])


def _glyph_offsets(centres: np.ndarray, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-glyph vertical offset (px, down) and rotation (degrees, PIL's counter-clockwise) along an arc
    or a wave through the glyph centres."""
    span = max(float(centres[-1] - centres[0]), 1.0)
    t = 2 * (centres - centres[0]) / span - 1
    if rng.random() < 0.7:  # an arc: a parabola through both ends, bending up or down
        bend = min(rng.uniform(0.15, 0.6) * size, 0.25 * span) * rng.choice([-1, 1])
        dy, slope = bend * (t ** 2 - 1), bend * 2 * t * 2 / span
    else:
        amp = min(rng.uniform(0.05, 0.2) * size, 0.1 * span)
        phase, cycles = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.5)
        dy = amp * _libm(math.sin, math.pi * cycles * t + phase)
        slope = amp * math.pi * cycles * _libm(math.cos, math.pi * cycles * t + phase) * 2 / span
    return dy, -np.degrees(_libm(math.atan, slope))


def text_mask(text: str, font: ImageFont.FreeTypeFont, tracking: float, curved: bool,
              rng: np.random.Generator, clip: bool = True) -> Image.Image:
    """The word as an 8-bit coverage mask, cropped with padding so the text fills most of the height;
    without ``clip`` a margin drawn below zero is zero (the same draws: only the clipping is left out)."""
    size = font.size
    per_glyph = tracking != 0 or (curved and len(text) > 2)
    advances = [font.getlength(c) + tracking for c in text] if per_glyph else []
    width = int((sum(advances) if per_glyph else font.getlength(text)) + 2 * size)
    ascent, descent = font.getmetrics()
    height = ascent + descent + (3 if curved else 1) * size
    baseline = ascent + (3 * size // 2 if curved else size // 2)
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    if curved and len(text) > 2:
        centres = size + np.cumsum(advances) - np.asarray(advances) / 2
        dys, angles = _glyph_offsets(centres, rng, size)
        x = float(size)
        for c, adv, dy, angle in zip(text, advances, dys, angles):
            glyph = Image.new("L", (int(2 * size + adv), 3 * size), 0)
            ImageDraw.Draw(glyph).text((size, 2 * size), c, font=font, fill=255, anchor="ls")
            glyph = glyph.rotate(float(angle), resample=Image.Resampling.BILINEAR, center=(size + adv / 2, 2 * size))
            layer = Image.new("L", mask.size, 0)
            layer.paste(glyph, (round(x - size), round(baseline + dy - 2 * size)))
            mask = ImageChops.lighter(mask, layer)
            x += adv
    elif not per_glyph:
        draw.text((size, baseline), text, font=font, fill=255, anchor="ls")
    else:
        x = float(size)
        for c, adv in zip(text, advances):
            draw.text((x, baseline), c, font=font, fill=255, anchor="ls")
            x += adv
    x0, y0, x1, y1 = mask.getbbox() or (0, 0, width, height)
    if not curved and rng.random() < 0.6:
        # The line box (cap height to descender) rather than the ink: 'ace' and 'Ship' keep one scale.
        y0 = min(y0, baseline + font.getbbox("H", anchor="ls")[1])
        y1 = max(y1, baseline + font.getbbox("gjpqy", anchor="ls")[3])
    h = y1 - y0
    # Margins as annotators draw boxes: from a little clipped to loose (real crops are often tight).
    low = -np.inf if clip else 0.0
    left, right = (np.maximum(rng.uniform(-0.02, 0.35, 2), low) * h).tolist()
    top, bottom = (np.maximum(rng.uniform(-0.05, 0.2, 2), low) * h).tolist()
    return mask.crop((round(x0 - left), round(y0 - top), round(x1 + right), round(y1 + bottom)))


def warp(mask: Image.Image, rng: np.random.Generator, strong: bool) -> Image.Image:
    """A rotation (smaller for long words, so the text keeps most of the height) and a perspective:
    slight by default, up to a fifth of the height on each corner when ``strong``."""
    w, h = mask.size
    max_angle = min(8.0 if strong else 3.0, math.degrees(math.atan(0.35 * h / w)))
    angle = float(np.clip(rng.normal(0, max_angle / 2), -max_angle, max_angle))
    if abs(angle) > 0.2:
        mask = mask.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
        w, h = mask.size
    if strong:
        # Room around the word first: a strong quad pushes corners outwards, and nothing may be cut off.
        pad = h // 2
        padded = Image.new("L", (w + 2 * pad, h + 2 * pad), 0)
        padded.paste(mask, (pad, pad))
        j = rng.uniform(0.06, 0.2) * h
        dx = rng.uniform(-j, j, 8)
        dx[[0, 2]] += rng.uniform(-0.3, 0.3) * h    # a shear, or one side farther away
        dx[[5, 7]] += rng.uniform(-0.25, 0.25) * h
        corners = np.array([pad, pad, pad, pad + h, pad + w, pad + h, pad + w, pad], np.float64) + dx
        mask = padded.transform(padded.size, Image.Transform.QUAD, tuple(corners.tolist()),
                                resample=Image.Resampling.BILINEAR)
        x0, y0, x1, y1 = mask.getbbox() or (0, 0, *mask.size)
        m = rng.uniform(0.03, 0.15, 4) * (y1 - y0)
        mask = mask.crop((round(x0 - m[0]), round(y0 - m[1]), round(x1 + m[2]), round(y1 + m[3])))
    elif rng.random() < 0.5:
        j = 0.03 * h
        dx = rng.uniform(-j, j, 8).tolist()
        quad = (dx[0], dx[1], dx[2], h + dx[3], w + dx[4], h + dx[5], w + dx[6], dx[7])
        mask = mask.transform((w, h), Image.Transform.QUAD, quad, resample=Image.Resampling.BILINEAR)
    return mask


# --------------------------------------------------------------------------- colour and background


def _luma(rgb: np.ndarray) -> np.ndarray:
    # Elementwise rather than ``rgb @ weights``: a product goes to OpenBLAS, whose kernel (and its rounding)
    # depends on the CPU type.
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)


def _tinted(level: float, rng: np.random.Generator, spread: float = 0.2) -> np.ndarray:
    tint = rng.uniform(-spread, spread, 3)
    return np.clip(level + tint - tint.mean(), 0, 1).astype(np.float32)  # hue without moving the brightness


def background(width: int, rng: np.random.Generator, effects: SynthEffects, photos: list[Path]) -> np.ndarray:
    """(32, width, 3) float32 in [0, 1]: a photograph crop blended with a colour, or a flat/ramped colour."""
    shape = (IMAGE_HEIGHT, width, 3)
    if photos and rng.random() < effects.photo_background:
        photo = _photo(str(photos[int(rng.integers(len(photos)))]))
        ph, pw = photo.shape[:2]
        # A window of the word's aspect ratio at a random scale: from a patch of texture to half the photo.
        crop_h = int(np.clip(rng.uniform(0.06, 0.5) * ph, 8, ph))
        crop_w = int(min(pw, max(8, crop_h * width / IMAGE_HEIGHT)))
        crop_h = int(min(crop_h, max(8, crop_w * IMAGE_HEIGHT / width)))
        y, x = int(rng.integers(ph - crop_h + 1)), int(rng.integers(pw - crop_w + 1))
        patch = Image.fromarray(np.round(photo[y:y + crop_h, x:x + crop_w] * 255).astype(np.uint8))
        if rng.random() < 0.5:
            patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        bg = np.asarray(patch.resize((width, IMAGE_HEIGHT), Image.Resampling.BILINEAR), np.float32) / 255
        # MJSynth's blending: pull the photo towards a colour, so texture stays and text stays readable.
        keep = rng.uniform(0.2, 0.6)
        bg = keep * bg + (1 - keep) * _tinted(float(rng.uniform(0, 1)), rng)
        return np.clip(bg, 0, 1)
    bg = np.broadcast_to(_tinted(float(rng.uniform(0, 1)), rng), shape).astype(np.float32)
    if rng.random() < 0.3:
        ramp = np.linspace(-1, 1, width if rng.random() < 0.5 else IMAGE_HEIGHT, dtype=np.float32)
        ramp = ramp[None, :, None] if ramp.size == width else ramp[:, None, None]
        bg = np.clip(bg + rng.uniform(-0.15, 0.15) * ramp, 0, 1)
    return bg


def _text_colour(bg_luma: float, rng: np.random.Generator) -> np.ndarray:
    """A colour whose brightness differs from the background's by about 0.35 or more."""
    if bg_luma >= 0.5:
        level = rng.uniform(0, max(0.0, bg_luma - 0.35))
    else:
        level = rng.uniform(min(1.0, bg_luma + 0.35), 1)
    return _tinted(float(level), rng)


# --------------------------------------------------------------------------- the word image


def render_word(text: str, font_path: str, rng: np.random.Generator, effects: SynthEffects = SynthEffects(),
                photos: list[Path] | None = None, clip_margins: bool = True) -> Image.Image:
    """One RGB word image, 32 px high and as wide as the text needs; ``clip_margins`` lets the crop cut into
    the glyphs a little, as tight real boxes do."""
    font = _font(font_path, int(rng.choice(_RENDER_SIZES)))
    tracking = float(rng.uniform(-0.03, 0.25) * font.size) if rng.random() < 0.3 else 0.0
    curved = rng.random() < effects.curve
    mask = warp(text_mask(text, font, tracking, curved, rng, clip_margins), rng, rng.random() < effects.perspective)
    width = max(1, round(IMAGE_HEIGHT * mask.width / mask.height))
    scale = IMAGE_HEIGHT / mask.height
    small = mask.resize((width, IMAGE_HEIGHT), Image.Resampling.LANCZOS)
    alpha = np.asarray(small, np.float32)[..., None] / 255
    bg = background(width, rng, effects, photos or [])
    # The text colour contrasts with what lies under the strokes, not with the whole crop.
    under = float((_luma(bg) * alpha[..., 0]).sum() / max(alpha.sum(), 1e-3))
    fg = _text_colour(under, rng)
    img = bg
    if rng.random() < effects.shadow:
        dx, dy = (rng.uniform(1, 4, 2) * rng.choice([-1, 1], 2)).tolist()
        shadow = small.transform(small.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy),
                                 resample=Image.Resampling.BILINEAR)
        shadow = shadow.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
        s_alpha = np.asarray(shadow, np.float32)[..., None] / 255 * rng.uniform(0.4, 0.9)
        img = img * (1 - s_alpha) + _tinted(float(rng.uniform(0, 0.3)) if under > 0.3 else 0.9, rng) * s_alpha
    if rng.random() < effects.border:
        grow = max(3, 2 * round(rng.uniform(1, 3) / scale / 2) + 1)
        ring = mask.filter(ImageFilter.MaxFilter(min(grow, 9))).resize((width, IMAGE_HEIGHT), Image.Resampling.LANCZOS)
        b_alpha = np.asarray(ring, np.float32)[..., None] / 255
        img = img * (1 - b_alpha) + _text_colour(float(_luma(fg)), rng) * b_alpha
    img = img * (1 - alpha) + fg * alpha
    if rng.random() < effects.lighting:
        yy, xx = np.mgrid[0:IMAGE_HEIGHT, 0:width].astype(np.float32)
        theta = rng.uniform(0, 2 * math.pi)
        ramp = (xx / max(width, 1) * math.cos(theta) + yy / IMAGE_HEIGHT * math.sin(theta))
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        img = img * (1 - rng.uniform(0.2, 0.6) * ramp[..., None]) + rng.uniform(0, 0.2) * (1 - ramp[..., None])
    if rng.random() < effects.occlusion:
        img = _occlude(img, rng)
    if rng.random() < effects.invert:  # a negative: the contrast stays, which is dark and which light swaps
        img = 1 - img
    out = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    if rng.random() < effects.blur:
        if rng.random() < 0.6:
            out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.8, 1.8))))
        else:
            k = int(rng.choice([3, 5]))
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2, :] = 1.0 / k
            if rng.random() < 0.5:
                kernel = kernel.T
            out = out.filter(ImageFilter.Kernel((k, k), kernel.ravel().tolist(), scale=1))
    elif rng.random() < 0.4:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
    if rng.random() < effects.low_resolution:
        h = int(rng.integers(10, 20))
        w = max(1, round(width * h / IMAGE_HEIGHT))
        method = Image.Resampling.NEAREST if rng.random() < 0.15 else Image.Resampling.BILINEAR
        out = out.resize((w, h), Image.Resampling.BILINEAR).resize((width, IMAGE_HEIGHT), method)
    sigma = rng.uniform(0, 6)
    noisy = np.asarray(out, np.float32) + rng.normal(0, sigma, (IMAGE_HEIGHT, width, 3))
    return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def _occlude(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bar across the word or a blob at one end covering at most about a fifth of it."""
    h, w = img.shape[:2]
    colour = _tinted(float(rng.uniform(0, 1)), rng)
    out = img.copy()
    if rng.random() < 0.5:  # a thin line or cable across the word
        y = int(rng.integers(0, h))
        t = int(rng.integers(1, 3))
        out[max(0, y - t):y + t] = colour
    else:  # something in front of one end: a pole, a leaf, the edge of another sign
        cw = max(1, int(rng.uniform(0.05, 0.18) * w))
        x0 = 0 if rng.random() < 0.5 else w - cw
        y0, y1 = sorted(rng.integers(0, h + 1, 2).tolist())
        if y1 - y0 < h // 3:
            y0, y1 = 0, h
        out[y0:y1, x0:x0 + cw] = colour
    return out
