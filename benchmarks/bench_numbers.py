"""Reading whole numbers: exact-number and per-digit accuracy per kind of picture.

    python benchmarks/bench_numbers.py RUN_OR_ONNX [--count N] [--seed S] [--kinds a,b] [--save DIR] [--timing]
                                       [--nothing N]

Numbers of 2 to 6 digits are made from MNIST *test* digits (never seen in training) and handed in
as encoded pictures (PNG or JPEG bytes), scaled 1.5-4x, some blurred, on paper (dark ink, paper
grain, uneven light) or on a screen (light ink on a dark background). Kinds:

- ``separated``: digits a few pixels apart (3-10 px at MNIST scale);
- ``gaps``: uneven gaps, from 1 px to more than a digit's width;
- ``touching``: every neighbour touches the next, or overlaps it by up to 2 px;
- ``sizes``: digit heights from 0.7x to 1.3x, a drifting baseline and a slant;
- ``strokes``: 4s, 5s and 7s drawn in two separate strokes (with a pen, between MNIST digits);
- ``ruled``: separated digits written on a line: an underline 1-4 px below them, or the line of a
  form or a notebook that their feet touch or cross by up to 2 px (1-2 px thick, 60-100% as dark
  as the ink, a little longer than the number).
- ``boxes``: one digit in each cell of a form's comb of printed boxes (lines 0.5-2 px thick, grey or
  black; now and then only the dividers' feet are printed, or a digit touches its box), the picture
  cropped at the comb or with paper round it, sometimes turned by up to 2.5 degrees.
- ``squared``: separated digits written on squared paper, the lines crossing them and running to
  the picture's edges (cells 0.6-1.3 times as tall as the digits, lines 0.15-0.75 px thick, grey or
  nearly black), sometimes turned by up to 2.5 degrees.

``--timing`` compares reading a 4-digit number with reading one digit (``load_digit`` + the model),
medians over alternating runs. ``--nothing N`` reads N pictures that hold no digit per set
(Fashion-MNIST test, letters in held-out fonts and drawn, scribbles and shapes) and counts those
that come back as no number, as the CLI and the API would answer them.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("separated", "gaps", "touching", "sizes", "strokes", "ruled", "boxes", "squared")


def crop_digit(image: np.ndarray) -> np.ndarray:
    """An MNIST image -> its ink (float [0, 1]) cropped to the bounding box."""
    a = image.astype(np.float32) / 255.0
    rows, cols = np.flatnonzero(a.max(axis=1) > 0.05), np.flatnonzero(a.max(axis=0) > 0.05)
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def stroke_digit(label: int, rng: np.random.Generator, height: int = 20) -> np.ndarray:
    """A 4, 5 or 7 drawn with a pen in two strokes that do not touch (a 7's crossbar does)."""
    up = 4
    w, h = round(height * 0.75) * up, height * up
    im = Image.new("L", (w + 8 * up, h + 8 * up), 0)
    d = ImageDraw.Draw(im)
    width = int(rng.uniform(2.0, 2.8) * up)

    def pt(x, y):
        return (4 * up + (x + rng.normal(0, 0.02)) * w, 4 * up + (y + rng.normal(0, 0.02)) * h)

    if label == 4:  # the L, then the stem: across the bar, or lifted just short of it
        if rng.random() < 0.5:
            strokes = [[pt(0.45, 0.0), pt(0.05, 0.62), pt(0.95, 0.62)], [pt(0.72, 0.2), pt(0.68, 1.0)]]
        else:
            strokes = [[pt(0.45, 0.0), pt(0.05, 0.62), pt(0.62, 0.62)], [pt(0.74, 0.2), pt(0.70, 1.0)]]
    elif label == 5:  # the body, then the flag, not touching the stem
        belly = [pt(0.28, 0.12), pt(0.22, 0.48), pt(0.45, 0.40), pt(0.72, 0.48), pt(0.82, 0.66),
                 pt(0.72, 0.88), pt(0.45, 0.98), pt(0.15, 0.90)]
        strokes = [belly, [pt(0.40, 0.02), pt(0.92, 0.0)]]
    elif rng.random() < 0.5:  # a 7 with a crossbar
        strokes = [[pt(0.05, 0.06), pt(0.92, 0.04), pt(0.45, 1.0)], [pt(0.38, 0.55), pt(0.88, 0.53)]]
    else:  # a 7 whose stem is a second stroke, lifted off the top bar
        strokes = [[pt(0.05, 0.06), pt(0.92, 0.04)], [pt(0.86, 0.16), pt(0.45, 1.0)]]
    for s in strokes:
        d.line(s, fill=255, width=width, joint="curve")
        for x, y in (s[0], s[-1]):
            r = width / 2
            d.ellipse([x - r, y - r, x + r, y + r], fill=255)
    im = im.filter(ImageFilter.GaussianBlur(up * 0.5)).resize((im.width // up, im.height // up),
                                                               Image.Resampling.BOX)
    a = np.asarray(im, np.float32) / 255.0
    rows, cols = np.flatnonzero(a.max(axis=1) > 0.05), np.flatnonzero(a.max(axis=0) > 0.05)
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _resize(a: np.ndarray, f: float) -> np.ndarray:
    size = (max(1, round(a.shape[1] * f)), max(1, round(a.shape[0] * f)))
    return np.asarray(Image.fromarray(a, mode="F").resize(size, Image.Resampling.BILINEAR), np.float32)


def _shear(a: np.ndarray, k: float) -> np.ndarray:
    """Slant: row y moves by k * (h - y) pixels to the right."""
    h, w = a.shape
    extra = int(np.ceil(abs(k) * h)) + 1
    out = np.zeros((h, w + extra), np.float32)
    for y in range(h):
        off = k * (h - 1 - y) if k > 0 else -k * y
        i = int(off)
        frac = off - i
        out[y, i : i + w] += (1 - frac) * a[y]
        out[y, i + 1 : i + 1 + w] += frac * a[y]
    cols = np.flatnonzero(out.max(axis=0) > 0.02)
    return out[:, cols[0] : cols[-1] + 1]


def compose(parts: list[np.ndarray], gaps: list[float], offsets: list[int]) -> np.ndarray:
    """Digit inks side by side: gap i is the smallest distance (px, negative = overlap) between the
    ink of digits i and i+1 over the rows they share; offsets move each digit down."""
    top = max(p.shape[0] + o for p, o in zip(parts, offsets, strict=True)) + 8
    width = sum(p.shape[1] for p in parts) + int(sum(max(g, 0) for g in gaps)) + 16
    canvas = np.zeros((top, width), np.float32)
    x = 8
    right = np.full(top, -10_000.0)  # rightmost ink column of each row so far
    for i, (p, o) in enumerate(zip(parts, offsets, strict=True)):
        rows = slice(4 + o, 4 + o + p.shape[0])
        ink = p > 0.3
        left_edge = np.where(ink.any(axis=1), ink.argmax(axis=1), 10_000)
        if i:
            need = right[rows] - left_edge + 1 + gaps[i - 1]  # x so that every row keeps the gap
            x = int(np.ceil(np.max(need)))
            x = max(x, 0)
        canvas[rows, x : x + p.shape[1]] = np.maximum(canvas[rows, x : x + p.shape[1]], p)
        rr = np.where(ink.any(axis=1), p.shape[1] - 1 - ink[:, ::-1].argmax(axis=1), -10_000)
        right[rows] = np.maximum(right[rows], np.where(rr >= 0, x + rr, -10_000))
    cols = np.flatnonzero(canvas.max(axis=0) > 0)
    return canvas[:, max(0, cols[0] - 6) : cols[-1] + 7]


def render(ink: np.ndarray, rng: np.random.Generator, margin: bool = True) -> tuple[bytes, str]:
    """An ink map -> encoded picture bytes (scaled, maybe blurred, on paper or a screen), and how.
    Without ``margin`` the picture is cropped at the ink's edge (a comb cropped at its lines)."""
    f = rng.uniform(1.5, 4.0)
    a = np.clip(_resize(ink, f), 0, 1)
    if margin:
        a = np.pad(a, ((round(8 * f), round(8 * f)), (round(10 * f), round(10 * f))))
    blur = rng.random() < 0.5
    if blur:
        from scipy import ndimage

        a = ndimage.gaussian_filter(a, rng.uniform(0.6, 1.6) * f / 2)
    h, w = a.shape
    screen = rng.random() < 0.35
    if screen:
        bg, fg = rng.uniform(0.0, 0.2), rng.uniform(0.75, 1.0)
        grey = bg + a * (fg - bg) + rng.normal(0, 0.02, a.shape)
        colour = np.stack([grey * rng.uniform(0.8, 1.0), grey, grey * rng.uniform(0.9, 1.1)], axis=-1)
    else:
        paper = rng.uniform(0.78, 0.97) + np.linspace(-0.06, 0.06, w)[None, :] * rng.choice([-1, 1])
        pen = rng.uniform(0.05, 0.3)
        grey = paper - a * (paper - pen) + rng.normal(0, 0.025, a.shape)
        colour = np.stack([grey, grey * rng.uniform(0.97, 1.0), grey * rng.uniform(0.9, 1.0)], axis=-1)
    im = Image.fromarray(np.clip(colour * 255, 0, 255).astype(np.uint8), mode="RGB")
    buf = io.BytesIO()
    jpeg = rng.random() < 0.3
    im.save(buf, format="JPEG" if jpeg else "PNG", quality=85)
    how = f"{'screen' if screen else 'paper'} x{f:.1f}{' blur' if blur else ''}{' jpeg' if jpeg else ''}"
    return buf.getvalue(), how


def make_number(kind: str, rng: np.random.Generator, x_test: np.ndarray, y_test: np.ndarray,
                length: int | None = None) -> tuple[np.ndarray, str]:
    """(ink map of a number of ``kind``, its digits as text)."""
    n = int(length or rng.integers(2, 7))
    if kind == "strokes":
        digits = [int(d) for d in rng.integers(0, 10, n)]
        for i in rng.choice(n, size=max(1, n // 2), replace=False):
            digits[i] = int(rng.choice([4, 5, 7]))
    else:
        digits = [int(d) for d in rng.integers(0, 10, n)]
    parts = []
    for d in digits:
        if kind == "strokes" and d in (4, 5, 7):
            parts.append(stroke_digit(d, rng))
        else:
            idx = np.flatnonzero(y_test == d)
            parts.append(crop_digit(x_test[int(rng.choice(idx))]))
    offsets = [0] * n
    if kind == "separated":
        gaps = list(rng.uniform(3, 10, n - 1))
    elif kind == "gaps":
        gaps = list(rng.choice([1.5, 2, 3, 6, 12, 24], n - 1))
    elif kind == "touching":
        gaps = list(rng.choice([0.0, -1.0, -2.0], n - 1))
    elif kind == "sizes":
        slant = rng.uniform(-0.25, 0.25)
        parts = [_shear(_resize(p, rng.uniform(0.7, 1.3)), slant) for p in parts]
        drift = rng.uniform(-0.35, 0.35) * 20
        offsets = [round(drift * i / max(1, n - 1) + rng.normal(0, 1.5)) for i in range(n)]
        low = min(offsets)
        offsets = [o - low for o in offsets]
        gaps = list(rng.uniform(2.5, 8, n - 1))
    elif kind in ("strokes", "ruled", "squared"):
        gaps = list(rng.uniform(3, 10, n - 1))
    elif kind == "boxes":
        return comb([np.clip(p, 0, 1) for p in parts], rng), "".join(map(str, digits))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    parts = [np.clip(p, 0, 1) for p in parts]
    ink = compose(parts, gaps, offsets)
    if kind == "ruled":
        ink = np.pad(ink, ((0, 8), (6, 6)))
        rows = np.flatnonzero(ink.max(axis=1) > 0.3)
        cols = np.flatnonzero(ink.max(axis=0) > 0.3)
        row = int(rows[-1]) + int(rng.choice([-2, -1, 0, 1, 2, 3, 4]))  # through the feet .. below them
        thick = int(rng.integers(1, 3))
        x0, x1 = max(0, int(cols[0]) - int(rng.integers(2, 7))), int(cols[-1]) + int(rng.integers(2, 7))
        ink[row : row + thick, x0:x1] = np.maximum(ink[row : row + thick, x0:x1], rng.uniform(0.6, 1.0))
    if kind == "squared":
        ink = squared_paper(ink, rng)
    return ink, "".join(map(str, digits))


def squared_paper(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A number's ink on a sheet of squared paper with a margin round it: cells 0.6-1.3 times as
    tall as a digit (20 px), lines 0.15-0.75 px thick, grey or nearly black, sometimes turned."""
    from degraded import ruled_paper  # beside this script
    from scipy import ndimage

    ink = np.pad(ink, ((8, 8), (10, 10)))
    lines = ruled_paper(ink.shape, 20 * rng.uniform(0.6, 1.3), rng.uniform(0.15, 0.75), rng.uniform(0.2, 0.8), rng)
    ink = np.maximum(ink, lines)
    if rng.random() < 0.4:
        ink = np.clip(ndimage.rotate(ink, rng.uniform(-2.5, 2.5), reshape=False, order=1), 0, 1)
    return ink


def comb(parts: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Digit inks written one to a cell of a comb of printed boxes (MNIST scale, float [0, 1])."""
    from scipy import ndimage

    thick = int(rng.integers(1, 3))
    level = rng.uniform(0.45, 1.0)
    cell_h = max(p.shape[0] for p in parts) + int(rng.integers(3, 12)) + 2 * thick
    cell_w = max(max(p.shape[1] for p in parts) + 2 * thick + 2, round(cell_h * rng.uniform(0.7, 1.0)))
    n = len(parts)
    a = np.zeros((cell_h, n * cell_w + thick), np.float32)
    a[:thick], a[-thick:] = level, level
    feet = rng.random() < 0.25  # only the dividers' feet printed, rising from the bottom line
    for i in range(n + 1):
        x = i * cell_w
        a[round(0.7 * cell_h) if feet and 0 < i < n else 0 :, x : x + thick] = level
    for i, p in enumerate(parts):
        ph, pw = min(p.shape[0], cell_h - 2 * thick), min(p.shape[1], cell_w - thick - 1)
        p = p[:ph, :pw]
        touch = rng.random() < 0.1
        top = thick if touch else int(rng.integers(thick + 1, max(thick + 2, cell_h - ph - thick)))
        left = i * cell_w + int(rng.integers(thick + 1, max(thick + 2, cell_w - pw)))
        top, left = min(top, cell_h - ph), min(left, (i + 1) * cell_w - pw)
        a[top : top + ph, left : left + pw] = np.maximum(a[top : top + ph, left : left + pw], p)
    if rng.random() < 0.4:
        a = np.clip(ndimage.rotate(np.pad(a, 4), rng.uniform(-2.5, 2.5), reshape=False, order=1), 0, 1)
    return a


def make_set(kind: str, count: int, seed: int, x_test, y_test) -> list[tuple[bytes, str, str]]:
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    out = []
    for _ in range(count):
        ink, text = make_number(kind, rng, x_test, y_test)
        # a comb cropped at its lines now and then; squared paper has its margin already, lined
        data, how = render(ink, rng, margin=(kind != "boxes" or rng.random() < 0.6) and kind != "squared")
        out.append((data, text, how))
    return out


def _digit_hits(read: str | None, truth: str) -> int:
    """Digits right in place (edit-distance alignment: a missed or extra digit costs one)."""
    read = read or ""
    m, n = len(read), len(truth)
    d = np.zeros((m + 1, n + 1), int)
    d[:, 0], d[0, :] = np.arange(m + 1), np.arange(n + 1)
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (read[i - 1] != truth[j - 1]))
    return max(0, n - int(d[m, n]))


def timing(predictor, x_test, y_test, seed: int, rounds: int = 40) -> dict[str, list[float]]:
    """Seconds per picture, by way of reading, over ``rounds`` pictures each, taken in turn (so that
    the machine's load affects all alike), after a few unmeasured reads."""
    from digitlab.data.pictures import load_digit
    from digitlab.inference.numbers import read_number
    from digitlab.inference.predictor import read_digit

    rng = np.random.default_rng(seed)
    pictures: dict[str, list[bytes]] = {"one": [], "separated": [], "touching": []}
    for _ in range(rounds):
        for name, kind, length in (("one", "separated", 1), ("separated", "separated", 4),
                                   ("touching", "touching", 4)):
            ink, _ = make_number(kind, rng, x_test, y_test, length=length)
            pictures[name].append(render(ink, rng)[0])
    ways = {
        "one digit: load_digit + model": lambda i: predictor.predict_proba(load_digit(pictures["one"][i])[None]),
        "one digit: read_digit (+ not-a-digit detector)": lambda i: read_digit(predictor, pictures["one"][i]),
        "one digit: read_number": lambda i: read_number(pictures["one"][i], predictor),
        "4 separated digits: read_number": lambda i: read_number(pictures["separated"][i], predictor),
        "4 touching digits: read_number": lambda i: read_number(pictures["touching"][i], predictor),
    }
    for i in range(3):
        for way in ways.values():
            way(i)
    spent: dict[str, list[float]] = {name: [] for name in ways}
    for i in range(rounds):
        for name, way in ways.items():
            t = time.perf_counter()
            way(i)
            spent[name].append(time.perf_counter() - t)
    return spent


def nothing_sets(n: int, seed: int) -> dict[str, list[bytes]]:
    """Pictures without a digit, never trained on: Fashion-MNIST *test*, letters in the held-out fonts
    and drawn as strokes (the letters written like digits left out), scribbles, shapes and noise."""
    import detector_data as D  # beside this script (imports matplotlib, so only when asked)

    from digitlab.data.datasets import load_data

    rng = np.random.default_rng([seed, 99])
    (_, _), (fashion, _) = load_data("fashion-mnist", quiet=True)
    fonts = D.find_fonts(D.HELDOUT_FONTS)
    sets: dict[str, list[bytes]] = {"fashion-test": [], "font-letter": [], "stroke-letter": [], "junk": []}
    for i in range(n):
        sets["fashion-test"].append(D.to_picture(fashion[i].astype(np.float32) / 255.0, rng,
                                                 size=int(rng.integers(28, 160))))
        ink = None
        while ink is None:
            ink = D.font_glyph(D.LETTERS[int(rng.integers(len(D.LETTERS)))], fonts[i % len(fonts)], rng)
        sets["font-letter"].append(D.to_picture(ink, rng))
        sets["stroke-letter"].append(D.to_picture(D.stroke_glyph(D.LETTER_GLYPHS[i % len(D.LETTER_GLYPHS)], rng), rng))
        junk = D.junk(D.JUNK_KINDS[i % len(D.JUNK_KINDS)], rng).astype(np.float32)
        sets["junk"].append(D.to_picture(junk / max(float(junk.max()), 1e-6), rng))
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run folder or an exported .onnx file")
    parser.add_argument("--count", type=int, default=200, help="numbers per kind (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding mnist/")
    parser.add_argument("--save", type=Path, metavar="DIR", help="write the misread pictures here")
    parser.add_argument("--errors", action="store_true", help="list every misread number")
    parser.add_argument("--timing", action="store_true", help="time a 4-digit number against one digit")
    parser.add_argument("--nothing", type=int, default=0, metavar="N",
                        help="also read N pictures without a digit per set: how many come back as no number")
    args = parser.parse_args(argv)

    from digitlab.data.datasets import load_data
    from digitlab.errors import ImageError
    from digitlab.inference.numbers import read_number
    from digitlab.inference.predictor import load_predictor

    _, (x_test, y_test) = load_data("mnist", data_dir=args.data_dir)
    predictor = load_predictor(args.model)
    print(f"model: {args.model} ({predictor.name}); {args.count} numbers per kind, seed {args.seed}")
    print(f"\n{'kind':<12}{'numbers':>8}{'exact':>9}{'digits':>9}{'ms/number':>11}")
    for kind in args.kinds.split(","):
        cases = make_set(kind, args.count, args.seed, x_test, y_test)
        exact = hits = total = 0
        spent = 0.0
        wrong = []
        for i, (data, text, how) in enumerate(cases):
            t = time.perf_counter()
            try:
                read = read_number(data, predictor).text
            except ImageError as e:
                read = None
                how += f" ({e})"
            spent += time.perf_counter() - t
            exact += read == text
            hits += _digit_hits(read, text)
            total += len(text)
            if read != text:
                wrong.append((i, text, read, how, data))
        print(f"{kind:<12}{len(cases):>8}{100 * exact / len(cases):>8.1f}%{100 * hits / total:>8.1f}%"
              f"{1000 * spent / len(cases):>11.1f}")
        if args.errors:
            for i, text, read, how, _ in wrong:
                print(f"    {kind}/{i:03d}: {text} read as {read} ({how})")
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            for i, text, read, _, data in wrong:
                (args.save / f"{kind}_{i:03d}_{text}_as_{read}.png").write_bytes(data)
    if args.nothing:
        print(f"\n{'no digit':<15}{'pictures':>9}{'no number':>11}")
        for name, pictures in nothing_sets(args.nothing, args.seed).items():
            none = 0
            for data in pictures:
                try:
                    none += read_number(data, predictor).text is None
                except ImageError:
                    none += 1
            print(f"{name:<15}{len(pictures):>9}{100 * none / len(pictures):>10.1f}%")
    if args.timing:
        spent = timing(predictor, x_test, y_test, args.seed)
        base = float(np.median(spent["one digit: read_digit (+ not-a-digit detector)"]))
        print(f"\n{'reading':<50}{'median ms':>10}{'p10-p90 ms':>14}{'x read_digit':>14}")
        for name, t in spent.items():
            spread = f"{1000 * np.percentile(t, 10):.1f}-{1000 * np.percentile(t, 90):.1f}"
            print(f"{name:<50}{1000 * np.median(t):>10.1f}{spread:>14}{np.median(t) / base:>13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
