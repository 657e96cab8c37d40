"""The embedded demo data: two visually distinct synthetic distributions, generated deterministically.

* ``synthetic_glyphs``: one class per character (Latin, Greek, Cyrillic, digits, symbols), drawn in
  dark ink on paper with a random DejaVu font (shipped by matplotlib), size, rotation and offset.
* ``synthetic_shapes``: one class per (shape, colour, texture) triple, drawn on a noisy coloured
  background with random size, rotation and position.

Image ``j`` of class ``c`` depends only on (source, c, j), so asking for more classes or images keeps
the earlier ones. Images are drawn at 84x84 and resized by the caller.
"""

from __future__ import annotations

import colorsys
import math
import zlib
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .images import ClassImages, from_items

CANVAS = 84
GLYPHS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    "ΓΔΘΛΞΠΣΦΨΩαβγδεζηθικλμνξπρστυφχψω"
    "БГДЖЗИЙЛПФЦЧШЩЪЫЬЭЮЯ"
    "∑∏∫√∞≈≠≤≥±÷×∂∇∈∩∪⊂⊃∀∃¬∧∨⊕⊗★♠♣♥♦♪☺☼⌂←→↑↓↔#$%&@?!§¶©®€£¥"
)
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "ring")
HUES = (0.0, 0.08, 0.16, 0.33, 0.55, 0.75)
TEXTURES = ("solid", "stripes", "checker", "dots")
MAX_CLASSES = {"synthetic_glyphs": len(GLYPHS), "synthetic_shapes": len(SHAPES) * len(HUES) * len(TEXTURES)}


def _rng(source: str, cls: int, index: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(source.encode()), cls, index])


@cache
def _font_paths() -> tuple[str, ...]:
    import matplotlib  # only for its fonts: kept out of the imports of every process that reads data

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return tuple(sorted(str(p) for p in ttf.glob("DejaVu*.ttf") if "Display" not in p.name))


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def draw_glyph(cls: int, index: int) -> Image.Image:
    """Character ``GLYPHS[cls]`` in a random font, size, rotation and position."""
    rng = _rng("synthetic_glyphs", cls, index)
    fonts = _font_paths()
    font = _font(fonts[rng.integers(len(fonts))], int(rng.integers(40, 62)))
    paper = int(rng.integers(215, 256))
    layer = Image.new("L", (CANVAS * 2, CANVAS * 2), 0)
    ImageDraw.Draw(layer).text((CANVAS, CANVAS), GLYPHS[cls], fill=255, font=font, anchor="mm")
    layer = layer.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR)
    dx, dy = rng.integers(-8, 9, size=2)
    box = (CANVAS // 2 - dx, CANVAS // 2 - dy, CANVAS // 2 - dx + CANVAS, CANVAS // 2 - dy + CANVAS)
    ink = layer.crop(box)
    image = Image.new("RGB", (CANVAS, CANVAS), (paper, paper, paper - int(rng.integers(0, 20))))
    image.paste(tuple(int(v) for v in rng.integers(0, 70, size=3)), mask=ink)
    noise = rng.normal(0, 6, size=(CANVAS, CANVAS, 1))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    corners = {"square": 4, "triangle": 3, "diamond": 4, "hexagon": 6}
    if shape == "star":
        radii = [r if k % 2 == 0 else r * 0.45 for k in range(10)]
        return [
            (cx + radii[k] * math.cos(angle + k * math.pi / 5), cy + radii[k] * math.sin(angle + k * math.pi / 5))
            for k in range(10)
        ]
    if shape == "cross":
        w = r * 0.35
        pts = [
            (-w, -r),
            (w, -r),
            (w, -w),
            (r, -w),
            (r, w),
            (w, w),
            (w, r),
            (-w, r),
            (-w, w),
            (-r, w),
            (-r, -w),
            (-w, -w),
        ]
    else:
        n = corners[shape]
        offset = math.pi / 4 if shape == "square" else 0.0
        squash = 0.6 if shape == "diamond" else 1.0
        pts = [
            (squash * r * math.cos(offset + 2 * math.pi * k / n), r * math.sin(offset + 2 * math.pi * k / n))
            for k in range(n)
        ]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _texture(kind: str, rgb: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    dark = tuple(int(v * 0.35) for v in rgb)
    tex = Image.new("RGB", (CANVAS, CANVAS), rgb)
    draw = ImageDraw.Draw(tex)
    period = int(rng.integers(6, 11))
    if kind == "stripes":
        for y in range(0, CANVAS, period):
            draw.rectangle((0, y, CANVAS, y + period // 2 - 1), fill=dark)
    elif kind == "checker":
        for y in range(0, CANVAS, period):
            for x in range((y // period) % 2 * period, CANVAS, 2 * period):
                draw.rectangle((x, y, x + period - 1, y + period - 1), fill=dark)
    elif kind == "dots":
        for y in range(period // 2, CANVAS, period):
            for x in range(period // 2, CANVAS, period):
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=dark)
    return tex


def draw_shape(cls: int, index: int) -> Image.Image:
    """Shape/colour/texture triple number ``cls`` with random size, rotation, position and background."""
    rng = _rng("synthetic_shapes", cls, index)
    shape = SHAPES[cls % len(SHAPES)]
    hue = HUES[(cls // len(SHAPES)) % len(HUES)]
    texture = TEXTURES[cls // (len(SHAPES) * len(HUES))]
    red, green, blue = colorsys.hsv_to_rgb(hue + rng.uniform(-0.02, 0.02), 0.85, rng.uniform(0.75, 1.0))
    rgb = (int(255 * red), int(255 * green), int(255 * blue))
    bg = tuple(int(v) for v in rng.integers(60, 200, size=3))
    image = Image.fromarray(np.clip(np.array(bg) + rng.normal(0, 18, (CANVAS, CANVAS, 3)), 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    r = rng.uniform(20, 32)
    cx, cy = rng.uniform(r * 0.8, CANVAS - r * 0.8, size=2)
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(mask)
    if shape in ("circle", "ring"):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        if shape == "ring":
            draw.ellipse((cx - r * 0.55, cy - r * 0.55, cx + r * 0.55, cy + r * 0.55), fill=0)
    else:
        draw.polygon(_shape_polygon(shape, cx, cy, r, rng.uniform(-0.4, 0.4)), fill=255)
    texture_image = _texture(texture, rgb, rng).rotate(
        float(rng.uniform(0, 180)), resample=Image.Resampling.NEAREST, fillcolor=rgb
    )
    image.paste(texture_image, mask=mask)
    return image


def _glyph_name(cls: int) -> str:
    return f"U+{ord(GLYPHS[cls]):04X} {GLYPHS[cls]}"


def _shape_name(cls: int) -> str:
    per_texture = len(SHAPES) * len(HUES)
    return f"{SHAPES[cls % len(SHAPES)]}-hue{cls // len(SHAPES) % len(HUES)}-{TEXTURES[cls // per_texture]}"


DRAW = {"synthetic_glyphs": (draw_glyph, _glyph_name), "synthetic_shapes": (draw_shape, _shape_name)}


def generate(source: str, classes: int, images_per_class: int, size: int) -> ClassImages:
    """Draw ``classes`` x ``images_per_class`` images of a synthetic source, resized to ``size``."""
    if classes > MAX_CLASSES[source]:
        raise ValueError(f"{source} has at most {MAX_CLASSES[source]} classes, asked for {classes}")
    draw, name = DRAW[source]
    items = [
        ((lambda c=c, j=j: draw(c, j)), f"{c:03d} {name(c)}", f"{j:05d}")
        for c in range(classes)
        for j in range(images_per_class)
    ]
    return from_items(items, size, total=len(items), desc=source)
