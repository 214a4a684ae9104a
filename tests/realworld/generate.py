"""Generate the real-world digit set: tests/realworld/images/*.png|jpg and tests/realworld/labels.csv.

Run by hand from the repository root (it rewrites the committed files)::

    python tests/realworld/generate.py

The set is what a person might feed the model: printed digits in many typefaces and synthetic
handwriting (stroke paths per digit with several styles each, e.g. a 1 with or without a flag, a 7
with or without a bar, an open or closed 4, a 9 with a straight or curved tail), drawn with random
jitter, pen width, slant, size, rotation and position on small canvases of several sizes and aspect
ratios, over several backgrounds:

``paper``   black ink on white paper (PNG, greyscale)
``photo``   dark ink on off-white or yellowish paper with texture, gradient lighting, vignetting,
            sensor noise, blur, a little perspective, saved as JPEG
``pencil``  grainy, low-contrast grey strokes on textured paper (JPEG)
``pen``     coloured ink (mostly blue ballpoint, some red or green) on light paper
``screen``  light ink on a dark screen, sometimes with a slight glow (PNG or JPEG)
``canvas``  a browser-canvas export: an RGBA PNG, transparent background, black or white strokes

``labels.csv`` has one row per file: ``file,label,kind,style`` where kind is
``<source>-<background>``, source is ``font`` or ``hand``, and style names the typeface or the
handwriting style. Every digit is easy for a person to read.

Fonts come from matplotlib's bundled TTFs (DejaVu, STIX, Computer Modern), so the script needs
nothing beyond numpy, Pillow and matplotlib. It is deterministic (fixed seed); Pillow/FreeType/JPEG
library versions may change a few pixel values, which is harmless.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SEED = 20240917
PER_LABEL = 40  # 10 labels x 40 = 400 files
FONT_SHARE = 15  # of each label's 40: 15 printed, 25 handwritten
SS = 4  # supersampling factor for anti-aliased drawing
HERE = Path(__file__).resolve().parent
OUT = HERE / "images"
LABELS = HERE / "labels.csv"

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf",
    "cmti10.ttf",
]
BACKGROUNDS = ["paper", "photo", "pencil", "pen", "screen", "canvas"]
CANVASES = [(64, 64), (80, 80), (96, 96), (128, 128), (160, 160), (200, 200), (120, 90), (90, 120),
            (160, 100), (100, 160), (200, 120), (72, 128), (180, 140)]
SMALL_CANVASES = [(32, 32), (40, 40), (48, 36), (36, 48)]  # thumbnails, screenshot crops: few pixels

# --- synthetic handwriting -------------------------------------------------------------------
# A style is a list of strokes (pen down .. pen up); a stroke is a list of pieces joined at sharp
# corners; a piece is a list of (x, y) control points in a box x in [0, 1], y in [0, 1] (y down),
# smoothed with a Catmull-Rom spline.


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 10) -> list:
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in np.linspace(a0, a1, n)]


TOP = -math.pi / 2
STYLES: dict[int, dict[str, list]] = {
    0: {
        "oval": [[_arc(0.5, 0.5, 0.42, 0.5, TOP, TOP - 2.1 * math.pi, 14)]],
        "egg": [[_arc(0.5, 0.52, 0.45, 0.48, TOP + 0.3, TOP + 0.3 + 2.05 * math.pi, 14)]],
        "open_top": [[_arc(0.5, 0.5, 0.44, 0.5, TOP + 0.35, TOP + 0.35 - 1.85 * math.pi, 14)]],
    },
    1: {
        "stick": [[[(0.55, 0.0), (0.52, 0.5), (0.48, 1.0)]]],
        "flag": [[[(0.15, 0.25), (0.6, 0.0)], [(0.6, 0.0), (0.58, 1.0)]]],
        "flag_base": [[[(0.15, 0.22), (0.55, 0.0)], [(0.55, 0.0), (0.55, 1.0)]], [[(0.2, 1.0), (0.9, 1.0)]]],
    },
    2: {
        "classic": [[[(0.08, 0.28), (0.25, 0.05), (0.55, 0.0), (0.85, 0.15), (0.85, 0.38), (0.5, 0.7),
                      (0.05, 1.0)], [(0.05, 1.0), (0.5, 0.97), (0.98, 0.98)]]],
        "loop": [[[(0.1, 0.25), (0.3, 0.03), (0.65, 0.02), (0.88, 0.22), (0.75, 0.5), (0.3, 0.85),
                   (0.12, 0.98), (0.05, 0.88), (0.22, 0.84), (0.5, 0.95), (0.95, 0.97)]]],
        "angular": [[[(0.08, 0.22), (0.35, 0.02), (0.75, 0.02), (0.88, 0.22), (0.8, 0.4)], [(0.8, 0.4), (0.05, 1.0)],
                     [(0.05, 1.0), (0.95, 1.0)]]],
    },
    3: {
        "round": [[[(0.1, 0.15), (0.4, 0.0), (0.78, 0.08), (0.82, 0.3), (0.42, 0.47)],
                   [(0.42, 0.47), (0.82, 0.58), (0.9, 0.82), (0.55, 1.0), (0.08, 0.88)]]],
        "flat_top": [[[(0.1, 0.02), (0.88, 0.0)], [(0.88, 0.0), (0.4, 0.42)],
                      [(0.4, 0.42), (0.8, 0.52), (0.92, 0.78), (0.55, 1.0), (0.08, 0.86)]]],
        "big_bottom": [[[(0.2, 0.1), (0.45, 0.0), (0.68, 0.1), (0.65, 0.28), (0.4, 0.38)],
                        [(0.4, 0.38), (0.85, 0.55), (0.92, 0.8), (0.55, 1.0), (0.1, 0.9)]]],
    },
    4: {
        "open": [[[(0.35, 0.0), (0.05, 0.62)], [(0.05, 0.62), (0.98, 0.62)]], [[(0.75, 0.12), (0.72, 1.0)]]],
        "closed": [[[(0.72, 1.0), (0.72, 0.0)], [(0.72, 0.0), (0.02, 0.68)], [(0.02, 0.68), (0.98, 0.68)]]],
        "slanted_open": [[[(0.4, 0.0), (0.0, 0.6)], [(0.0, 0.6), (1.0, 0.56)]], [[(0.82, 0.05), (0.62, 1.0)]]],
    },
    5: {
        "two_stroke": [[[(0.22, 0.02), (0.15, 0.45)],
                        [(0.15, 0.45), (0.5, 0.36), (0.85, 0.52), (0.88, 0.8), (0.5, 1.0), (0.08, 0.88)]],
                       [[(0.22, 0.02), (0.9, 0.0)]]],
        "one_stroke": [[[(0.9, 0.0), (0.22, 0.03)], [(0.22, 0.03), (0.16, 0.46)],
                        [(0.16, 0.46), (0.52, 0.38), (0.86, 0.55), (0.86, 0.82), (0.5, 1.0), (0.1, 0.9)]]],
        "angular": [[[(0.25, 0.02), (0.2, 0.42)],
                     [(0.2, 0.42), (0.6, 0.4), (0.85, 0.6), (0.75, 0.9), (0.4, 1.0), (0.05, 0.85)]],
                    [[(0.25, 0.02), (0.75, 0.04)]]],
    },
    6: {
        "curve": [[[(0.78, 0.02), (0.42, 0.18), (0.12, 0.6), (0.2, 0.93), (0.52, 1.0), (0.84, 0.82),
                    (0.8, 0.56), (0.48, 0.48), (0.14, 0.68)]]],
        "straight": [[[(0.7, 0.0), (0.16, 0.66)],
                      [(0.16, 0.66), (0.18, 0.9), (0.5, 1.0), (0.85, 0.85), (0.8, 0.58), (0.45, 0.5),
                       (0.16, 0.66)]]],
        "open_loop": [[[(0.8, 0.0), (0.35, 0.25), (0.12, 0.65), (0.25, 0.95), (0.55, 1.0), (0.82, 0.8),
                        (0.7, 0.55), (0.4, 0.55)]]],
    },
    7: {
        "plain": [[[(0.05, 0.04), (0.95, 0.02)], [(0.95, 0.02), (0.35, 1.0)]]],
        "bar": [[[(0.05, 0.04), (0.95, 0.02)], [(0.95, 0.02), (0.38, 1.0)]], [[(0.35, 0.52), (0.85, 0.5)]]],
        "curved": [[[(0.02, 0.1), (0.95, 0.02)], [(0.95, 0.02), (0.62, 0.42), (0.48, 1.0)]]],
        "hook": [[[(0.05, 0.2), (0.07, 0.02)], [(0.07, 0.02), (0.95, 0.02)], [(0.95, 0.02), (0.4, 1.0)]]],
    },
    8: {
        "s_loop": [[[(0.82, 0.12), (0.5, 0.0), (0.18, 0.12), (0.22, 0.35), (0.5, 0.48), (0.84, 0.66),
                     (0.86, 0.9), (0.5, 1.0), (0.14, 0.88), (0.16, 0.66), (0.5, 0.48), (0.78, 0.34),
                     (0.82, 0.12)]]],
        "two_loops": [[_arc(0.5, 0.25, 0.32, 0.25, math.pi / 2, math.pi / 2 + 2.05 * math.pi, 12)],
                      [_arc(0.5, 0.74, 0.42, 0.26, TOP, TOP + 2.05 * math.pi, 12)]],
        "snowman": [[_arc(0.54, 0.24, 0.3, 0.24, math.pi / 2, math.pi / 2 + 2.05 * math.pi, 12)],
                    [_arc(0.47, 0.73, 0.43, 0.27, TOP, TOP - 2.05 * math.pi, 12)]],
    },
    9: {
        "straight": [[_arc(0.48, 0.27, 0.38, 0.27, -0.2, -0.2 - 2.0 * math.pi, 12)
                      + [(0.84, 0.2)], [(0.84, 0.2), (0.8, 1.0)]]],
        "curved": [[_arc(0.48, 0.27, 0.38, 0.27, -0.2, -0.2 - 2.0 * math.pi, 12)
                    + [(0.84, 0.2)], [(0.84, 0.2), (0.8, 0.65), (0.6, 0.95), (0.25, 0.98)]]],
        "two_stroke": [[_arc(0.45, 0.27, 0.38, 0.27, 0.1, 0.1 - 2.05 * math.pi, 12)],
                       [[(0.83, 0.1), (0.8, 0.6), (0.72, 1.0)]]],
    },
}


def _catmull_rom(points: np.ndarray, per_segment: int = 16) -> np.ndarray:
    if len(points) < 3:
        t = np.linspace(0.0, 1.0, per_segment * max(1, len(points) - 1) + 1)[:, None]
        return points[0] * (1 - t) + points[-1] * t if len(points) == 2 else points
    p = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    out = []
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    out.append(points[-1:])
    return np.vstack(out)


def hand_glyph(label: int, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """A handwritten digit as an 'L' ink mask (255 = ink), tightly cropped, at high resolution."""
    name = sorted(STYLES[label])[rng.integers(len(STYLES[label]))]
    height = 400.0
    width = height * rng.uniform(0.4, 0.95)
    slant = rng.uniform(-0.25, 0.5)  # most people lean right
    pen = height * rng.choice([rng.uniform(0.015, 0.025), rng.uniform(0.035, 0.06), rng.uniform(0.06, 0.11),
                               rng.uniform(0.11, 0.2)], p=[0.1, 0.3, 0.4, 0.2])
    jitter = rng.uniform(0.01, 0.045) if rng.random() < 0.75 else rng.uniform(0.045, 0.065)  # a messy writer
    tremor = height * rng.uniform(0.0, 0.012)
    pad = int(pen + 40)
    size = (int(width + height * 0.5) + 2 * pad, int(height) + 2 * pad)
    img = Image.new("L", size, 0)
    draw = ImageDraw.Draw(img)
    for stroke in STYLES[label][name]:
        path = []
        offsets: dict[tuple[float, float], np.ndarray] = {}
        for piece in stroke:
            pts = []
            for x, y in piece:  # shared corner points move together
                key = (round(x, 4), round(y, 4))
                if key not in offsets:
                    # densely sampled curves (loops) wobble less per point, or they turn into polygons
                    offsets[key] = rng.normal(0.0, jitter if len(piece) < 9 else 0.5 * jitter, 2)
                pts.append((x + offsets[key][0], y + offsets[key][1]))
            curve = _catmull_rom(np.asarray(pts))
            path.append(curve if not path else curve[1:])
        xy = np.vstack(path)
        x = xy[:, 0] * width + slant * (1.0 - xy[:, 1]) * height * 0.5 + pad
        y = xy[:, 1] * height + pad
        # dense points along the path, pen pressure varying smoothly
        seg = np.hypot(np.diff(x), np.diff(y))
        dist = np.concatenate([[0.0], np.cumsum(seg)])
        n = max(2, int(dist[-1] / max(1.0, pen / 6)))
        s = np.linspace(0.0, dist[-1], n)
        xs, ys = np.interp(s, dist, x), np.interp(s, dist, y)
        for _ in range(2):  # an unsteady hand: smooth wobble along the path
            wave = rng.uniform(60, 200)
            xs = xs + tremor * np.sin(2 * math.pi * s / wave + rng.uniform(0, 2 * math.pi))
            ys = ys + tremor * np.sin(2 * math.pi * s / wave + rng.uniform(0, 2 * math.pi))
        phase = rng.uniform(0, 2 * math.pi)
        radius = 0.5 * pen * (1.0 + 0.15 * np.sin(phase + s / max(dist[-1], 1.0) * 2 * math.pi))
        if rng.random() < 0.3:  # a quick stroke: the pen lifts off gradually at the end
            radius *= np.clip((dist[-1] - s) / (0.15 * dist[-1] + 1e-6), 0.35, 1.0)
        for cx, cy, r in zip(xs, ys, radius, strict=True):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    return img.crop(img.getbbox()), name


def font_glyph(label: int, rng: np.random.Generator) -> tuple[Image.Image, str]:
    name = FONTS[rng.integers(len(FONTS))]
    font = ImageFont.truetype(str(FONT_DIR / name), 360)
    img = Image.new("L", (600, 600), 0)
    ImageDraw.Draw(img).text((100, 40), str(label), font=font, fill=255)
    return img.crop(img.getbbox()), name.removesuffix(".ttf")


# --- placing the glyph on a canvas -----------------------------------------------------------


def _perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list[float]:
    """Coefficients for Image.transform(PERSPECTIVE) mapping output points dst to input points src."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.asarray(rows, float), np.asarray(rhs, float)).tolist()


def place(glyph: Image.Image, canvas: tuple[int, int], rng: np.random.Generator, photo: bool) -> np.ndarray:
    """The glyph scaled, sheared, rotated and put somewhere on the canvas: float mask (H, W) in [0, 1]."""
    w, h = canvas
    gw, gh = glyph.size
    frac = rng.uniform(0.25, 0.85) if min(w, h) > 50 else rng.uniform(0.55, 0.9)  # digit / canvas height
    scale = frac * h / gh
    if gw * scale > 0.85 * w:
        scale = 0.85 * w / gw
    angle = math.radians(rng.uniform(-14, 14) if rng.random() < 0.8 else rng.uniform(-20, 20))
    shear = rng.uniform(-0.18, 0.18)
    # forward map: glyph centre -> origin -> scale/shear/rotate -> target centre
    m = np.array([[scale, shear * scale], [0.0, scale]])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    m = rot @ m
    corners = np.array([[-gw / 2, -gh / 2], [gw / 2, -gh / 2], [-gw / 2, gh / 2], [gw / 2, gh / 2]]) @ m.T
    ext = corners.max(axis=0) - corners.min(axis=0)
    margin = 3 + (0.06 * max(w, h) if photo else 0)  # the perspective below moves corners up to 6%
    fit = min(1.0, (w - 2 * margin) / ext[0], (h - 2 * margin) / ext[1])  # never cut the digit off
    m, ext = m * fit, ext * fit
    cx = rng.uniform(ext[0] / 2 + margin, max(ext[0] / 2 + margin, w - ext[0] / 2 - margin))
    cy = rng.uniform(ext[1] / 2 + margin, max(ext[1] / 2 + margin, h - ext[1] / 2 - margin))
    inv = np.linalg.inv(m * SS)
    # output pixel (X, Y) at SS resolution -> glyph pixel
    offset = np.array([gw / 2, gh / 2]) - inv @ np.array([cx * SS, cy * SS])
    data = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    big = glyph.transform((w * SS, h * SS), Image.Transform.AFFINE, data, resample=Image.Resampling.BICUBIC)
    if photo:  # a camera not quite square to the paper
        W, H = w * SS, h * SS
        d = rng.uniform(0, 0.06, 8)  # how far each corner moves, as fractions of the size
        src = [(d[0] * W, d[1] * H), (W - d[2] * W, d[3] * H), (W - d[4] * W, H - d[5] * H), (d[6] * W, H - d[7] * H)]
        dst = [(0, 0), (W, 0), (W, H), (0, H)]
        big = big.transform((W, H), Image.Transform.PERSPECTIVE, _perspective_coeffs(src, dst),
                            resample=Image.Resampling.BICUBIC)
    small = big.resize((w, h), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


# --- backgrounds -----------------------------------------------------------------------------


def _smooth_noise(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    coarse = rng.normal(0.0, 1.0, (max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img)


def _lighting(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h - 0.5, xx / w - 0.5
    a = rng.uniform(0, 2 * math.pi)
    grad = (xx * math.cos(a) + yy * math.sin(a)) * rng.uniform(0.15, 0.45)
    vignette = (xx**2 + yy**2) * rng.uniform(0.0, 0.6)
    light = 1.0 - grad - vignette - rng.uniform(0.0, 0.1)
    if rng.random() < 0.4:  # the soft shadow of a hand or a phone across part of the sheet
        b = rng.uniform(0, 2 * math.pi)
        edge = (xx * math.cos(b) + yy * math.sin(b)) - rng.uniform(-0.3, 0.3)
        light = light - rng.uniform(0.15, 0.35) / (1.0 + np.exp(-edge / rng.uniform(0.04, 0.1)))
    return light.clip(0.3, 1.05)[..., None]


def _paper(shape: tuple[int, int], rng: np.random.Generator, tint: bool) -> np.ndarray:
    base = np.array([rng.uniform(228, 250)] * 3, np.float32)
    if tint:  # cream / yellowish / greyish paper
        base = base - np.array([0.0, rng.uniform(2, 12), rng.uniform(12, 40)], np.float32)
    tex = _smooth_noise(shape, 6, rng)[..., None] * rng.uniform(2, 6)
    grain = rng.normal(0.0, rng.uniform(1.0, 3.0), (*shape, 1)).astype(np.float32)
    return base + tex + grain


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    img = Image.fromarray(np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def render(mask: np.ndarray, background: str, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Ink mask + background style -> (picture, file suffix)."""
    shape = mask.shape
    if background in ("paper", "photo", "pencil") and rng.random() < 0.35:  # dust and pen dots
        mask = mask.copy()
        for _ in range(rng.integers(1, 5)):
            y, x = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
            size = rng.integers(1, 3)
            mask[y : y + size, x : x + size] = np.maximum(mask[y : y + size, x : x + size], rng.uniform(0.5, 1.0))
    m = mask[..., None]
    if background == "paper":
        paper = rng.uniform(238, 255)
        ink = rng.uniform(0, 50) if rng.random() < 0.8 else rng.uniform(110, 160)  # a faded print, a grey pen
        if rng.random() < 0.3:
            m = _blur(mask, 0.6)[..., None]
        grey = paper * (1 - m[..., 0]) + ink * m[..., 0]
        return Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), mode="L"), "png"
    if background == "canvas":
        colour = (0, 0, 0) if rng.random() < 0.6 else (255, 255, 255)
        rgba = np.zeros((*shape, 4), np.uint8)
        rgba[..., :3] = colour
        rgba[..., 3] = np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(rgba, mode="RGBA"), "png"
    if background == "screen":
        bg = np.array([rng.uniform(5, 45), rng.uniform(5, 45), rng.uniform(10, 60)], np.float32)
        ink = np.array(
            [[255, 255, 255], [250, 245, 200], [170, 230, 255], [180, 255, 180], [255, 210, 120]][rng.integers(5)],
            np.float32) * rng.uniform(0.8, 1.0)
        if rng.random() < 0.5:  # glow
            glow = _blur(mask, 2.0)[..., None]
            m = np.clip(m + 0.4 * glow, 0, 1)
        rgb = bg * (1 - m) + ink * m + rng.normal(0, 1.5, (*shape, 1))
        if rng.random() < 0.3:  # a photo of a monitor: faint moire bands
            yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
            a, period = rng.uniform(0, math.pi), rng.uniform(3, 9)
            bands = np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)
            rgb = rgb + rng.uniform(4, 12) * bands[..., None]
        img = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), mode="RGB")
        return img, ("jpg" if rng.random() < 0.4 else "png")
    # paper-like backgrounds with a real-world look
    paper = _paper(shape, rng, tint=background in ("photo", "pencil") and rng.random() < 0.7)
    if background == "pen":
        ink = np.array([[25, 45, 150], [20, 30, 110], [40, 70, 180], [170, 25, 35], [20, 110, 50]][
            rng.choice(5, p=[0.35, 0.25, 0.2, 0.1, 0.1])], np.float32)
        m = m * rng.uniform(0.8, 1.0)
    elif background == "pencil":
        ink = np.array([rng.uniform(70, 115)] * 3, np.float32)
        grain = np.clip(rng.normal(0.85, 0.18, shape), 0.3, 1.0).astype(np.float32)[..., None]
        m = m * grain * rng.uniform(0.75, 1.0)
    else:  # photo
        ink = np.array([rng.uniform(15, 60)] * 3, np.float32) + np.array([0, 0, rng.uniform(0, 25)], np.float32)
    rgb = paper * (1 - m) + ink * m
    if background in ("photo", "pencil"):
        rgb = rgb * _lighting(shape, rng) + rng.normal(0, rng.uniform(1.5, 4.0), (*shape, 1))
    img = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    if background in ("photo", "pencil") and rng.random() < 0.7:
        # out of focus: a blur up to a few percent of the picture's size
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, max(1.4, 0.015 * min(shape)))))
    if background == "photo" and rng.random() < 0.3:  # camera shake: a short straight smear
        length = int(rng.choice([3, 5]))  # the kernel sizes Pillow supports
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1.0 / length
        kernel = np.asarray(Image.fromarray(kernel, mode="F").rotate(rng.uniform(0, 180), Image.Resampling.BILINEAR))
        kernel = kernel / kernel.sum()
        img = img.filter(ImageFilter.Kernel((length, length), kernel.ravel().tolist(), scale=1.0))
    return img, ("png" if background == "pen" and rng.random() < 0.3 else "jpg")


def main() -> None:
    rng = np.random.default_rng(SEED)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    jobs = []
    for label in range(10):
        sources = ["font"] * FONT_SHARE + ["hand"] * (PER_LABEL - FONT_SHARE)
        for source in ("font", "hand"):
            count = sources.count(source)
            bgs = [BACKGROUNDS[(i + label) % len(BACKGROUNDS)] for i in range(count)]
            jobs += [(label, source, bg) for bg in bgs]
    order = rng.permutation(len(jobs))
    rows = []
    for n, j in enumerate(order):
        label, source, background = jobs[j]
        glyph, style = (font_glyph if source == "font" else hand_glyph)(label, rng)
        if rng.random() < 0.12:
            canvas = SMALL_CANVASES[rng.integers(len(SMALL_CANVASES))]
        else:
            canvas = CANVASES[rng.integers(len(CANVASES))]
        mask = place(glyph, canvas, rng, photo=background in ("photo", "pencil"))
        img, suffix = render(mask, background, rng)
        kind = f"{source}-{background}"
        name = f"{n:03d}_{kind}.{suffix}"
        if suffix == "jpg":
            img.save(OUT / name, quality=int(rng.integers(45, 92)))
        else:
            img.save(OUT / name, optimize=True)
        rows.append((name, label, kind, style))
    with LABELS.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file", "label", "kind", "style"])
        writer.writerows(rows)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(rows)} images ({total / 1e6:.2f} MB) to {OUT} and {LABELS}")


if __name__ == "__main__":
    main()
