"""Pictures for the "not a digit" detector: digits and what is not a digit, handed in as users would.

Used by ``benchmarks/train_detector.py`` (training, one set of seeds and fonts), by
``benchmarks/bench_detector.py`` (held-out evaluation: other seeds, other fonts) and by
``tests/test_detector.py`` (a small sample).

Every generator works on an *ink map*: a float32 ``(H, W)`` array in [0, 1], 1 = ink. An ink map
becomes a picture (PNG or JPEG bytes, dark ink on paper or light on dark, any size) with
:func:`to_picture`, and the picture goes through :func:`digitlab.data.pictures.load_digit`, the
pipeline of the CLI and the server. :func:`grey_mnist` is a plain grey-level crop, resize and
centring of an ink map (no ink mask), the other way a digit reaches a model.

What is not a digit: printed letters (:func:`font_glyph`), letters drawn as strokes
(:func:`stroke_glyph` with a letter), scribbles, shapes, noise, dots and flat lines
(:func:`junk`). Letters that people write like digits are left out: see :data:`DIGIT_LIKE`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

#: Letters written like a digit, never used as "not a digit": O o Q D (0), I l i j J (1), Z z (2, 7),
#: S s (5), G b (6), B (8), g q a (9: a single-storey a is a 9 with a tail), y (an open-topped 4).
DIGIT_LIKE = "OoQDIlijJZzSsGbBgqay"
#: The letters used as "not a digit".
LETTERS = "".join(c for c in "ABCEFHKLMNPRTUVWXYcdefhkmnprtuvwx" if c not in DIGIT_LIKE)

FONT_ROOT = Path("/usr/share/fonts")
MPL_FONTS = Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"

#: Fonts the detector is trained on (Debian packages; see the README).
TRAIN_FONTS = [
    "truetype/liberation/Liberation*.ttf", "truetype/freefont/Free*.ttf", "opentype/urw-base35/*.otf",
    "truetype/crosextra/Carlito-*.ttf", "opentype/comic-neue/ComicNeue-*.otf", "opentype/bwht/*.otf",
    "truetype/breip/Breip.ttf", "opentype/dancingscript/*.otf", "truetype/kristi/Kristi.ttf",
    "truetype/ecolier-court/Ecolier-court.ttf", "truetype/noto/NotoSans-*.ttf",
]
#: Fonts held out for the evaluation: never seen in training. The matplotlib ones are also the
#: typefaces of tests/realworld and of the tests (matplotlib ships them, nothing to install).
HELDOUT_FONTS = [
    "truetype/dejavu/DejaVu*.ttf", "truetype/crosextra/Caladea-*.ttf", "truetype/humor-sans/Humor-Sans.ttf",
    "truetype/fifthhorseman/dkg*.ttf", "truetype/femkeklaver/femkeklaver.ttf", "truetype/noto/NotoSerif-*.ttf",
    "mpl:STIXGeneral*.ttf", "mpl:cmr10.ttf", "mpl:cmss10.ttf", "mpl:cmtt10.ttf", "mpl:cmb10.ttf",
]
_SKIP = ("StandardSymbols", "D050000L", "Symbol")  # symbol fonts: no letters


def find_fonts(patterns: list[str]) -> list[Path]:
    out: list[Path] = []
    for pattern in patterns:
        root, pat = (MPL_FONTS, pattern[4:]) if pattern.startswith("mpl:") else (FONT_ROOT, pattern)
        out += [p for p in sorted(root.glob(pat)) if not any(s in p.name for s in _SKIP)]
    return out


# -- strokes -------------------------------------------------------------------------------------


def _arc(cx, cy, rx, ry, a0, a1, n=24):
    t = np.radians(np.linspace(a0, a1, n))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t), strict=True))


def _p(*pts):
    return list(pts)


# unit box, x right, y down; each glyph is a list of strokes, each stroke a list of points
GLYPHS: dict[str, list[list[tuple[float, float]]]] = {
    "0": [_arc(0.5, 0.5, 0.34, 0.46, -90, 275)],
    "1": [_p((0.52, 0.04), (0.48, 0.96))],
    "1f": [_p((0.3, 0.25), (0.55, 0.04), (0.5, 0.96))],
    "2": [_arc(0.5, 0.3, 0.3, 0.26, 200, 390) + _p((0.12, 0.95), (0.9, 0.95))],
    "3": [_arc(0.5, 0.28, 0.28, 0.23, 200, 450) + _arc(0.5, 0.72, 0.32, 0.23, 270, 520)],
    "4": [_p((0.66, 0.96), (0.66, 0.04), (0.08, 0.66), (0.92, 0.66))],
    "4o": [_p((0.25, 0.04), (0.15, 0.6), (0.9, 0.6)), _p((0.7, 0.3), (0.68, 0.96))],
    "5": [_p((0.85, 0.05), (0.28, 0.05), (0.24, 0.48)) + _arc(0.5, 0.68, 0.33, 0.27, 225, 520)],
    "6": [_p((0.75, 0.04), (0.3, 0.5)) + _arc(0.5, 0.7, 0.28, 0.26, 200, 560)],
    "7": [_p((0.1, 0.05), (0.9, 0.05), (0.4, 0.96))],
    "7b": [_p((0.1, 0.05), (0.9, 0.05), (0.4, 0.96)), _p((0.35, 0.5), (0.8, 0.5))],
    "8": [_arc(0.5, 0.27, 0.25, 0.22, 90, 450) + _arc(0.5, 0.72, 0.3, 0.25, 270, -90)],
    "9": [_arc(0.5, 0.3, 0.3, 0.26, 0, 360) + _p((0.8, 0.3), (0.72, 0.96))],
    "A": [_p((0.1, 0.95), (0.5, 0.05), (0.9, 0.95)), _p((0.27, 0.6), (0.73, 0.6))],
    "B": [],
    "C": [_arc(0.55, 0.5, 0.42, 0.46, -40, -320)],
    "E": [_p((0.85, 0.05), (0.15, 0.05), (0.15, 0.95), (0.85, 0.95)), _p((0.15, 0.5), (0.7, 0.5))],
    "F": [_p((0.85, 0.05), (0.15, 0.05), (0.15, 0.95)), _p((0.15, 0.48), (0.7, 0.48))],
    "H": [_p((0.15, 0.05), (0.15, 0.95)), _p((0.85, 0.05), (0.85, 0.95)), _p((0.15, 0.5), (0.85, 0.5))],
    "K": [_p((0.2, 0.05), (0.2, 0.95)), _p((0.85, 0.05), (0.2, 0.58)), _p((0.4, 0.42), (0.88, 0.95))],
    "L": [_p((0.2, 0.05), (0.2, 0.95), (0.85, 0.95))],
    "M": [_p((0.08, 0.95), (0.15, 0.05), (0.5, 0.65), (0.85, 0.05), (0.92, 0.95))],
    "N": [_p((0.15, 0.95), (0.15, 0.05), (0.85, 0.95), (0.85, 0.05))],
    "P": [_p((0.2, 0.95), (0.2, 0.05), (0.55, 0.05)) + _arc(0.55, 0.28, 0.27, 0.23, -90, 90) + _p((0.2, 0.51))],
    "R": [_p((0.2, 0.95), (0.2, 0.05), (0.55, 0.05)) + _arc(0.55, 0.28, 0.27, 0.23, -90, 90) + _p((0.2, 0.51)),
          _p((0.45, 0.51), (0.88, 0.95))],
    "T": [_p((0.08, 0.05), (0.92, 0.05)), _p((0.5, 0.05), (0.5, 0.95))],
    "U": [_p((0.15, 0.05)) + _arc(0.5, 0.6, 0.35, 0.35, 180, 0) + _p((0.85, 0.05))],
    "V": [_p((0.1, 0.05), (0.5, 0.95), (0.9, 0.05))],
    "W": [_p((0.04, 0.05), (0.27, 0.95), (0.5, 0.3), (0.73, 0.95), (0.96, 0.05))],
    "X": [_p((0.1, 0.05), (0.9, 0.95)), _p((0.9, 0.05), (0.1, 0.95))],
    "Y": [_p((0.1, 0.05), (0.5, 0.5), (0.9, 0.05)), _p((0.5, 0.5), (0.5, 0.95))],
    "c": [_arc(0.55, 0.7, 0.32, 0.26, -40, -320)],
    "d": [_arc(0.45, 0.7, 0.28, 0.25, 0, 360), _p((0.74, 0.05), (0.74, 0.96))],
    "e": [_p((0.24, 0.7), (0.8, 0.7)) + _arc(0.52, 0.7, 0.28, 0.26, 0, -320)],
    "f": [_arc(0.62, 0.2, 0.2, 0.15, -10, -180) + _p((0.42, 0.95)), _p((0.2, 0.45), (0.7, 0.45))],
    "h": [_p((0.2, 0.04), (0.2, 0.96)), _p((0.2, 0.65)) + _arc(0.5, 0.65, 0.3, 0.2, 180, 360) + _p((0.8, 0.96))],
    "k": [_p((0.2, 0.04), (0.2, 0.96)), _p((0.75, 0.4), (0.22, 0.72), (0.8, 0.96))],
    "m": [_p((0.1, 0.96), (0.1, 0.45)), _p((0.1, 0.6)) + _arc(0.3, 0.62, 0.2, 0.16, 180, 360) + _p((0.5, 0.96)),
          _p((0.5, 0.62)) + _arc(0.7, 0.62, 0.2, 0.16, 180, 360) + _p((0.9, 0.96))],
    "n": [_p((0.2, 0.96), (0.2, 0.4)), _p((0.2, 0.6)) + _arc(0.5, 0.62, 0.3, 0.2, 180, 360) + _p((0.8, 0.96))],
    "p": [_p((0.25, 0.38), (0.25, 1.0)), _arc(0.52, 0.6, 0.27, 0.2, 0, 360)],
    "r": [_p((0.3, 0.4), (0.3, 0.96)), _p((0.3, 0.65)) + _arc(0.58, 0.62, 0.28, 0.18, 180, 300)],
    "t": [_p((0.45, 0.08), (0.45, 0.85), (0.6, 0.95), (0.78, 0.9)), _p((0.18, 0.38), (0.75, 0.38))],
    "u": [_p((0.2, 0.4)) + _arc(0.5, 0.7, 0.3, 0.25, 180, 0) + _p((0.8, 0.4)), _p((0.8, 0.4), (0.84, 0.96))],
    "v": [_p((0.15, 0.4), (0.5, 0.96), (0.85, 0.4))],
    "w": [_p((0.05, 0.4), (0.27, 0.96), (0.5, 0.55), (0.73, 0.96), (0.95, 0.4))],
    "x": [_p((0.15, 0.4), (0.85, 0.96)), _p((0.85, 0.4), (0.15, 0.96))],
}
DIGIT_GLYPHS = ["0", "1", "1f", "2", "3", "4", "4o", "5", "6", "7", "7b", "8", "9"]
LETTER_GLYPHS = [c for c in LETTERS if GLYPHS.get(c)]

_S = 4  # supersampling of stroke rendering


def _draw_strokes(strokes, size: int, width: float, rng: np.random.Generator, jitter: float = 0.03,
                  slant: float = 0.0, rot: float = 0.0, aspect: float = 1.0) -> np.ndarray:
    """Strokes in the unit box -> an ink map of side ``size`` (antialiased)."""
    big = size * _S
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    c, s = math.cos(rot), math.sin(rot)
    margin = 0.18
    w = max(1, int(round(width * _S)))
    for stroke in strokes:
        pts = np.asarray(stroke, np.float64)
        if len(pts) >= 2:  # wobble: a smooth random offset along the stroke
            k = np.linspace(0, 1, len(pts))[:, None]
            a, b = rng.normal(0, jitter, (2, 2))
            pts = pts + a * np.sin(np.pi * k) + b * k * (1 - k) * 4 * rng.normal(0, 1)
            pts = pts + rng.normal(0, jitter / 3, pts.shape)
        x, y = pts[:, 0] - 0.5, pts[:, 1] - 0.5
        x = (x - slant * y) * aspect
        x, y = c * x - s * y, s * x + c * y
        px = (0.5 + x * (1 - 2 * margin)) * big
        py = (0.5 + y * (1 - 2 * margin)) * big
        pts_xy = list(zip(px.tolist(), py.tolist(), strict=True))
        if len(pts_xy) == 1:
            x0, y0 = pts_xy[0]
            draw.ellipse([x0 - w / 2, y0 - w / 2, x0 + w / 2, y0 + w / 2], fill=255)
        else:
            draw.line(pts_xy, fill=255, width=w, joint="curve")
            for x0, y0 in (pts_xy[0], pts_xy[-1]):
                draw.ellipse([x0 - w / 2, y0 - w / 2, x0 + w / 2, y0 + w / 2], fill=255)
    img = img.resize((size, size), Image.BOX)
    return np.asarray(img, np.float32) / 255.0


def stroke_glyph(name: str, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """A digit or letter drawn with a pen: random slant, rotation, width, aspect and wobble."""
    size = size or int(rng.integers(48, 112))
    width = size * rng.uniform(0.04, 0.12)
    return _draw_strokes(GLYPHS[name], size, width, rng, jitter=rng.uniform(0.01, 0.05),
                         slant=rng.uniform(-0.35, 0.35), rot=rng.normal(0, 0.12), aspect=rng.uniform(0.7, 1.15))


def font_glyph(char: str, font: Path, rng: np.random.Generator) -> np.ndarray | None:
    """One character in a typeface, as an ink map (None when the font has no such glyph)."""
    px = int(rng.integers(40, 120))
    try:
        f = ImageFont.truetype(str(font), px)
    except OSError:
        return None
    side = px * 3
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).text((px, px // 2), char, font=f, fill=255)
    if abs(r := rng.normal(0, 6)) > 1:
        img = img.rotate(r, resample=Image.BILINEAR)
    box = img.getbbox()
    if box is None or box[2] - box[0] < 3 and box[3] - box[1] < 3:
        return None
    pad = px // 3
    img = img.crop((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad))
    return np.asarray(img, np.float32) / 255.0


# -- not digits: scribbles, shapes, noise, dots, lines --------------------------------------------

JUNK_KINDS = ("scribble", "zigzag", "spiral", "hatch", "circle", "box", "triangle", "star", "smiley", "heart",
              "arrow", "cross", "noise", "cloud", "dot", "dots", "line", "blob", "grid")


def _smooth_path(pts: np.ndarray, n: int = 80) -> list[tuple[float, float]]:
    """Catmull-Rom through the points."""
    pts = np.vstack([pts[:1], pts, pts[-1:]])
    out = []
    for i in range(1, len(pts) - 2):
        p0, p1, p2, p3 = pts[i - 1], pts[i], pts[i + 1], pts[i + 2]
        for t in np.linspace(0, 1, max(2, n // (len(pts) - 3)), endpoint=False):
            t2, t3 = t * t, t * t * t
            out.append(tuple(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                                    + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)))
    out.append(tuple(pts[-2]))
    return out


def _star(n, r0, r1, phase):
    a = np.radians(phase) + np.arange(2 * n + 1) * np.pi / n
    r = np.where(np.arange(2 * n + 1) % 2 == 0, r0, r1)
    return list(zip(0.5 + r * np.cos(a), 0.5 + r * np.sin(a), strict=True))


def junk(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A picture's ink that holds no digit."""
    size = int(rng.integers(48, 112))
    width = size * rng.uniform(0.03, 0.1)
    u = rng.uniform
    if kind == "scribble":
        strokes = [_smooth_path(rng.uniform(0, 1, (int(rng.integers(7, 16)), 2)), 160)
                   for _ in range(int(rng.integers(1, 3)))]
    elif kind == "zigzag":
        n = int(rng.integers(4, 9))
        x = np.linspace(0, 1, n)
        y = np.where(np.arange(n) % 2 == 0, u(0, 0.3), u(0.7, 1)) + rng.normal(0, 0.05, n)
        pts = np.stack([x, y], 1) if rng.random() < 0.5 else np.stack([y, x], 1)
        strokes = [list(map(tuple, pts))]
    elif kind == "spiral":
        t = np.linspace(0, u(2.5, 4.5) * 2 * np.pi, 200)
        r = 0.45 * t / t[-1]
        strokes = [list(zip(0.5 + r * np.cos(t), 0.5 + r * np.sin(t), strict=True))]
    elif kind == "hatch":
        n = int(rng.integers(3, 7))
        a = u(0, np.pi)
        strokes = []
        for o in np.linspace(-0.35, 0.35, n):
            d = np.array([math.cos(a), math.sin(a)]) * 0.45
            c = np.array([0.5, 0.5]) + o * np.array([-math.sin(a), math.cos(a)])
            strokes.append([tuple(c - d), tuple(c + d)])
        if rng.random() < 0.5:  # cross-hatching
            a += np.pi / 2
            for o in np.linspace(-0.35, 0.35, n):
                d = np.array([math.cos(a), math.sin(a)]) * 0.45
                c = np.array([0.5, 0.5]) + o * np.array([-math.sin(a), math.cos(a)])
                strokes.append([tuple(c - d), tuple(c + d)])
    elif kind == "circle":
        strokes = [_arc(0.5, 0.5, 0.45, 0.45 * u(0.85, 1.15), 0, 365)]
        if rng.random() < 0.4:
            strokes.append(_arc(0.5, 0.5, 0.22, 0.22, 0, 365))
    elif kind == "box":
        w, h = u(0.6, 1.0) / 2, u(0.6, 1.0) / 2
        strokes = [[(0.5 - w, 0.5 - h), (0.5 + w, 0.5 - h), (0.5 + w, 0.5 + h), (0.5 - w, 0.5 + h), (0.5 - w, 0.5 - h)]]
        if rng.random() < 0.3:
            strokes.append([(0.5 - w, 0.5 - h), (0.5 + w, 0.5 + h)])
    elif kind == "triangle":
        a = np.radians(u(0, 360)) + np.arange(4) * 2 * np.pi / 3
        strokes = [list(zip(0.5 + 0.45 * np.cos(a), 0.5 + 0.45 * np.sin(a), strict=True))]
    elif kind == "star":
        n = int(rng.integers(5, 7))
        strokes = [_star(n, 0.48, u(0.18, 0.3), u(0, 360))]
        if rng.random() < 0.4:  # pentagram drawn in one go
            a = np.radians(u(0, 360)) + np.arange(6) * 4 * np.pi / 5
            strokes = [list(zip(0.5 + 0.47 * np.cos(a), 0.5 + 0.47 * np.sin(a), strict=True))]
    elif kind == "smiley":
        mouth = (30, 150) if rng.random() < 0.7 else (210, 330)
        my = 0.55 if mouth[0] == 30 else 0.78
        strokes = [_arc(0.5, 0.5, 0.46, 0.46, 0, 365), [(0.35, 0.37)], [(0.65, 0.37)],
                   _arc(0.5, my, 0.22, 0.14, *mouth)]
    elif kind == "heart":
        t = np.linspace(0, 2 * np.pi, 120)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        strokes = [list(zip(0.5 + x / 36, 0.45 + y / 36, strict=True))]
    elif kind == "arrow":
        strokes = [[(0.05, 0.5), (0.95, 0.5)], [(0.7, 0.25), (0.95, 0.5), (0.7, 0.75)]]
    elif kind == "cross":
        strokes = [[(0.5, 0.05), (0.5, 0.95)], [(0.05, 0.5), (0.95, 0.5)]]
    elif kind == "grid":
        strokes = [[(x, 0.05), (x, 0.95)] for x in (0.33, 0.66)] + [[(0.05, y), (0.95, y)] for y in (0.33, 0.66)]
    elif kind in ("noise", "cloud", "blob", "dot", "dots", "line"):
        return _field(kind, size, rng)
    else:
        raise ValueError(kind)
    rot = u(-np.pi, np.pi) if kind in ("scribble", "hatch", "star", "box", "arrow", "zigzag") else rng.normal(0, 0.2)
    return _draw_strokes(strokes, size, width, rng, jitter=u(0.0, 0.03), slant=u(-0.2, 0.2), rot=rot,
                         aspect=u(0.8, 1.2))


def _field(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    u = rng.uniform
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "noise":  # uniform, gaussian or salt-and-pepper noise over the whole picture
        r = rng.random()
        if r < 0.33:
            return rng.random((size, size)).astype(np.float32)
        if r < 0.66:
            return np.clip(rng.normal(0.5, 0.25, (size, size)), 0, 1).astype(np.float32)
        return (rng.random((size, size)) < u(0.02, 0.3)).astype(np.float32)
    if kind == "cloud":  # smooth random field
        small = rng.random((int(rng.integers(3, 8)),) * 2).astype(np.float32)
        img = Image.fromarray((small * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        a = np.asarray(img, np.float32) / 255.0
        return np.clip((a - a.min()) / max(1e-3, np.ptp(a)), 0, 1) ** u(1, 3)
    if kind == "blob":  # a filled irregular blob
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        r = 0.3 + 0.12 * np.sin(int(rng.integers(2, 5)) * t + u(0, 6)) + rng.normal(0, 0.02, t.shape)
        img = Image.new("L", (size * _S, size * _S), 0)
        pts = [((0.5 + ri * math.cos(ti)) * size * _S, (0.5 + ri * math.sin(ti)) * size * _S) for ri, ti in zip(r, t,
                                                                                                              strict=True)]
        ImageDraw.Draw(img).polygon(pts, fill=255)
        return np.asarray(img.resize((size, size), Image.BOX), np.float32) / 255.0
    if kind == "dot":  # a single tap
        r = u(0.03, 0.12)
        cx, cy = u(0.3, 0.7), u(0.3, 0.7)
        return np.clip((r - np.hypot(xx - cx, yy - cy)) * size + 0.5, 0, 1).astype(np.float32)
    if kind == "dots":
        out = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(2, 7))):
            r = u(0.02, 0.06)
            cx, cy = u(0.15, 0.85), u(0.15, 0.85)
            out = np.maximum(out, np.clip((r - np.hypot(xx - cx, yy - cy)) * size + 0.5, 0, 1))
        return out
    if kind == "line":  # a flat line (a steep one is a 1)
        a = u(-0.6, 0.6)
        d = np.abs((yy - 0.5) * math.cos(a) - (xx - 0.5) * math.sin(a))
        along = np.abs((xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a))
        w = u(0.015, 0.05)
        return (np.clip((w - d) * size + 0.5, 0, 1) * (along < u(0.3, 0.45))).astype(np.float32)
    raise ValueError(kind)


# -- degradations of a digit ------------------------------------------------------------------------

DEGRADATIONS = ("thumb8", "thumb10", "thumb12", "thumb16", "thumb20", "blur1", "blur2", "lowcontrast", "gamma",
                "jpeg30", "thick", "thin")


def degrade(a28: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """An MNIST digit (28x28 uint8) -> a degraded picture's ink map and how to hand it in."""
    from scipy import ndimage

    ink = a28.astype(np.float32) / 255.0
    opts: dict = {}
    if kind.startswith("thumb"):
        h = int(kind[5:])
        small = Image.fromarray(a28).resize((h, h), Image.BOX)
        if rng.random() < 0.5:
            return np.asarray(small, np.float32) / 255.0, {"size": h}
        side = int(rng.integers(32, 257))
        big = small.resize((side, side), Image.BICUBIC if rng.random() < 0.5 else Image.BILINEAR)
        return np.asarray(big, np.float32) / 255.0, {"size": side}
    if kind.startswith("blur"):
        sigma = float(kind[4:]) * rng.uniform(0.6, 1.0)
        return np.clip(ndimage.gaussian_filter(ink, sigma) * rng.uniform(1.0, 1.4), 0, 1), {}
    if kind == "lowcontrast":
        opts["contrast"] = 0.25
    elif kind == "gamma":
        opts["gamma"] = float(rng.choice([0.4, 0.6, 1.8, 2.5]))
    elif kind == "jpeg30":
        opts["jpeg"] = 30
    elif kind == "thick":
        ink = ndimage.grey_dilation(ink, size=(int(rng.integers(2, 4)),) * 2)
    elif kind == "thin":
        ink = ndimage.grey_erosion(ink, size=(2, 2))
        if ink.max() < 0.3:
            ink = a28.astype(np.float32) / 255.0 * 0.6
    return ink, opts


def grey_degrade(a28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft version of an MNIST digit at 28 px: blurred, fattened, thinned, faded or pixelated."""
    from scipy import ndimage

    ink = a28.astype(np.float32) / 255.0
    r = rng.random()
    if r < 0.3:
        ink = ndimage.gaussian_filter(ink, rng.uniform(0.4, 1.5))
    elif r < 0.45:
        ink = ndimage.grey_dilation(ink, size=(2, 2))
    elif r < 0.6:
        ink = ndimage.grey_erosion(ink, size=(2, 2)) if rng.random() < 0.5 else ink ** 2
    elif r < 0.8:
        h = int(rng.integers(8, 16))
        small = Image.fromarray(a28).resize((h, h), Image.BOX)
        ink = np.asarray(small.resize((28, 28), Image.BILINEAR), np.float32) / 255.0
    else:
        ink = ink ** rng.uniform(0.4, 0.8)
    top = ink.max()
    if top < 0.05:
        return a28
    return grey_mnist(ink / top * rng.uniform(0.6, 1.0))


# -- ink map -> what the model sees ------------------------------------------------------------------


def grey_mnist(ink: np.ndarray) -> np.ndarray:
    """A grey-level crop, resize to 20 px and centre of mass at (14, 14): no mask, grey levels kept."""
    from scipy import ndimage

    ink = np.asarray(ink, np.float32)
    mask = ink > 0.05 * max(float(ink.max()), 1e-6)
    if not mask.any():
        return np.zeros((28, 28), np.uint8)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    s = 20.0 / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    small = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.BOX if s < 1 else Image.BILINEAR), np.float32)
    out = np.zeros((28, 28), np.float32)
    oy, ox = (28 - nh) // 2, (28 - nw) // 2
    out[oy : oy + nh, ox : ox + nw] = small
    if out.sum() > 0:
        cy, cx = ndimage.center_of_mass(out)
        out = ndimage.shift(out, (round(14 - cy), round(14 - cx)), order=0)
    return np.round(np.clip(out / max(float(out.max()), 1e-6), 0, 1) * 255).astype(np.uint8)


def to_picture(ink: np.ndarray, rng: np.random.Generator, size: int | None = None, contrast: float | None = None,
               gamma: float | None = None, jpeg: int | None = None, dark_on_light: bool | None = None) -> bytes:
    """An ink map -> picture bytes as a user hands it in: paper, ink colour, size, sometimes JPEG."""
    ink = np.clip(np.asarray(ink, np.float32), 0, 1)
    if size is None and max(ink.shape) < 40:
        size = int(rng.integers(40, 160))
    if size is not None and size != max(ink.shape):
        h, w = ink.shape
        s = size / max(h, w)
        img = Image.fromarray((ink * 255).astype(np.uint8)).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                                    Image.BILINEAR)
        ink = np.asarray(img, np.float32) / 255.0
    if gamma is not None:
        ink = ink ** gamma
    dark = rng.random() < 0.7 if dark_on_light is None else dark_on_light
    c = contrast if contrast is not None else rng.uniform(0.5, 1.0)
    paper = rng.uniform(0.75, 1.0) if dark else rng.uniform(0.0, 0.25)
    c = min(c, paper) if dark else min(c, 1 - paper)
    grey = paper - c * ink if dark else paper + c * ink
    if contrast is None and rng.random() < 0.3:
        grey = grey + rng.normal(0, 0.02, grey.shape)
    img = Image.fromarray(np.clip(grey * 255 + 0.5, 0, 255).astype(np.uint8))
    if contrast is None and rng.random() < 0.1:
        img = img.filter(ImageFilter.GaussianBlur(max(ink.shape) / 120))
    buf = io.BytesIO()
    if jpeg is not None or (contrast is None and rng.random() < 0.2):
        img.save(buf, format="JPEG", quality=jpeg or int(rng.integers(40, 95)))
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


def hand_in(ink: np.ndarray, rng: np.random.Generator, **opts) -> np.ndarray | None:
    """``load_digit(to_picture(ink))``: the (28, 28) input, or None when the picture is refused (blank)."""
    from digitlab.data.pictures import load_digit
    from digitlab.errors import ImageError

    try:
        return load_digit(to_picture(ink, rng, **opts))
    except ImageError:
        return None
