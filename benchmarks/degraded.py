"""Accuracy on degraded digits: MNIST *test* digits handed in as the pictures users really have.

    python benchmarks/degraded.py [MODEL ...] [--n 500] [--readme] [--no-reject] [--numbers] [--save-inputs DIR]

Each MODEL is a run folder or an exported ``.onnx`` file (default: ``models/mnist-best``); a
``NAME=PATH`` argument names its column. Every picture is encoded (PNG, or JPEG where said) and goes
through ``digitlab.data.pictures.load_digit``, the preprocessing of the CLI and the server, then
``predict_proba``. The degradations, ``--n`` digits each (a fixed, seeded choice of MNIST test
digits, a different one per degradation):

- ``mnist``: the 28x28 test digit itself, white on black; ``mnist-paper``: the same, dark on light.
- ``8px`` ... ``20px``: the digit's box (plus a 10% margin) downsampled to 8-20 px tall, saved as it
  is; ``8px-up`` ... ``20px-up``: the same thumbnail upscaled (bilinear or bicubic) to 32-256 px.
- ``blur-1``, ``blur-2``: gaussian blur of sigma 1 or 2 px at MNIST scale (pictures 112 px tall).
- ``contrast-25``: ink only 25% away from the paper, light or dark paper; ``gamma``: grey levels
  to the power 0.5 or 2.
- ``jpeg-30``: JPEG at quality 30 (56 px tall).
- ``dark-on-light``, ``light-on-dark``: plain polarity, 112 px.
- ``thick``, ``thin``: strokes dilated or eroded by about 0.9 px at MNIST scale.
- ``realworld``: the committed tests/realworld set (printed and drawn digits, photos, canvases).
- ``boxed`` (only with ``--kinds``, not in the default total): the digit written in a form's
  printed box, grey or black lines 0.5-2 px thick (MNIST scale), sometimes touching the digit,
  sometimes turned up to 2.5 degrees or blurred, with or without paper round the box.
- ``squared``, ``lined`` (the same): the digit written on squared paper (cells 0.35-1.3 times as
  tall as the digit) or on ruled paper (lines 0.5-1.6 times its height apart), anywhere on the sheet,
  grey or nearly black lines 0.15-0.75 px thick (MNIST scale) crossing it or passing by, sometimes
  turned, blurred or saved as JPEG.
- ``tight`` (the same): the digit cropped at its ink, no paper round it, so that its strokes run
  into the picture's edges: 8-64 px tall, downsampled bilinear, bicubic or by area; every fifth of
  those up to 20 px enlarged 4x by repeating its pixels (nearest neighbour), every seventh saved
  as JPEG.
- ``optdigits`` (the same): not MNIST, but the UCI handwritten digits that ship with scikit-learn
  (``sklearn.datasets.load_digits``: 1,797 digits by 43 writers, 8x8 grey levels 0-16, each digit
  filling its field): as they are, 8 px, or enlarged to 32-64 px (bilinear, bicubic or nearest
  neighbour); light on dark, as they come, or dark on light.

Where the not-a-digit detector exists (``digitlab.inference.detector``), accuracy is also given
with rejection on: a rejected digit counts as a miss. ``--numbers`` adds a column per model where
each picture is read as a number (``read_number``, the default of the CLI and the API, rejection on):
a hit is the digit read alone, never split and never refused. ``--readme`` rewrites the table between the
``<!-- degraded:start -->`` and ``<!-- degraded:end -->`` marks of README.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from digitlab.data.pictures import load_digit
from digitlab.errors import ImageError

ROOT = Path(__file__).resolve().parent.parent
REALWORLD = ROOT / "tests" / "realworld"
DEFAULT_MODEL = ROOT / "models" / "mnist-best"
README = ROOT / "README.md"
START, END = "<!-- degraded:start -->", "<!-- degraded:end -->"
SEED = 2024


# --- turning an MNIST digit (28x28, white on black, uint8) into a picture ------------------------


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(a: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _resize(a: np.ndarray, size: tuple[int, int], method: Image.Resampling) -> np.ndarray:
    """Float image (any range) resized with Pillow; ``size`` is (width, height)."""
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize(size, method))


def _up(digit: np.ndarray, factor: int = 4) -> np.ndarray:
    """The 28x28 digit enlarged smoothly (bicubic), float in [0, 1]: a clean high-resolution picture."""
    return np.clip(_resize(digit / 255.0, (28 * factor, 28 * factor), Image.Resampling.BICUBIC), 0, 1)


def _paint(ink: np.ndarray, dark: bool, paper: float | None = None, ink_level: float | None = None) -> np.ndarray:
    """Ink map [0, 1] -> grey picture 0-255: dark ink on light paper or light ink on a dark screen."""
    if paper is None:
        paper = 0.94 if dark else 0.06
    if ink_level is None:
        ink_level = 0.08 if dark else 0.96
    return 255.0 * (paper + (ink_level - paper) * ink)


def _crop_box(digit: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """The digit's bounding square (its longer side, plus ``margin`` each side), float [0, 1]."""
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    cy, cx = (rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) * (1 + 2 * margin)
    big = np.pad(digit / 255.0, 28)
    up = 8  # crop on a finer grid, so the square is centred to a fraction of a pixel
    fine = _resize(big, (big.shape[1] * up, big.shape[0] * up), Image.Resampling.BILINEAR)
    top, left = round((cy + 28 - side / 2) * up), round((cx + 28 - side / 2) * up)
    n = round(side * up)
    return np.clip(fine[top : top + n, left : left + n], 0, 1)


def _small(digit: np.ndarray, height: int) -> np.ndarray:
    box = _crop_box(digit)
    return np.clip(_resize(box, (height, height), Image.Resampling.BOX), 0, 1)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(a, sigma, mode="constant")


def _disk(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= radius * radius


UPSCALES = ((32, Image.Resampling.BILINEAR), (64, Image.Resampling.BICUBIC), (128, Image.Resampling.BILINEAR),
            (256, Image.Resampling.BICUBIC), (48, Image.Resampling.BICUBIC), (96, Image.Resampling.BILINEAR))


def _make(kind: str) -> Callable[[np.ndarray, int], bytes]:
    """The function that turns (digit, index) into the picture's bytes for one degradation."""
    from scipy import ndimage

    if kind == "mnist":
        return lambda d, i: _png(d)
    if kind == "mnist-paper":
        return lambda d, i: _png(255 - d.astype(np.float32))
    if kind.endswith("px") or kind.endswith("px-up"):
        height = int(kind.split("px")[0])
        upscale = kind.endswith("-up")

        def small(d: np.ndarray, i: int) -> bytes:
            a = _small(d, height)
            if upscale:
                side, method = UPSCALES[i % len(UPSCALES)]
                a = np.clip(_resize(a, (side, side), method), 0, 1)
            return _png(_paint(a, dark=i % 2 == 0))

        return small
    if kind.startswith("blur-"):
        sigma = float(kind.split("-")[1])
        return lambda d, i: _png(_paint(np.clip(_blur(_up(d), 4 * sigma), 0, 1), dark=i % 2 == 0))
    if kind == "contrast-25":
        def low(d: np.ndarray, i: int) -> bytes:
            if i % 2 == 0:  # grey ink on light paper
                return _png(_paint(_up(d), True, paper=0.85, ink_level=0.60))
            return _png(_paint(_up(d), False, paper=0.15, ink_level=0.40))  # dim ink on a dark screen

        return low
    if kind == "gamma":
        return lambda d, i: _png(_paint(_up(d) ** (0.5 if i % 2 == 0 else 2.0), dark=i % 4 < 2))
    if kind == "jpeg-30":
        return lambda d, i: _jpeg(_paint(_up(d, 2), dark=i % 2 == 0), 30)
    if kind in ("dark-on-light", "light-on-dark"):
        return lambda d, i: _png(_paint(_up(d), dark=kind == "dark-on-light"))
    if kind == "thick":
        return lambda d, i: _png(_paint(ndimage.grey_dilation(_up(d), footprint=_disk(3.5)), dark=i % 2 == 0))
    if kind == "thin":
        return lambda d, i: _png(_paint(ndimage.grey_erosion(_up(d), footprint=_disk(3.5)), dark=i % 2 == 0))
    if kind == "boxed":
        return _boxed
    if kind in ("squared", "lined"):
        return lambda d, i: _on_ruled_paper(d, i, squared=kind == "squared")
    if kind == "tight":
        return _tight
    if kind == "optdigits":
        return _optdigit
    raise ValueError(f"unknown degradation {kind!r}")


def _boxed(digit: np.ndarray, i: int) -> bytes:
    """The digit written in a form's printed box: a rectangle of thin lines (grey or black), the digit
    inside it (now and then touching it), a margin of paper round the box or none, turned a little
    now and then; dark on light paper, or light on a dark screen for every fourth."""
    from scipy import ndimage

    rng = np.random.default_rng([SEED, i])
    up = _up(digit)  # 112 px, the digit about 80 px tall
    rows, cols = np.flatnonzero(up.max(axis=1) > 0.05), np.flatnonzero(up.max(axis=0) > 0.05)
    ink = up[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    dh, dw = ink.shape
    thick = int(rng.integers(2, 9))  # 0.5-2 px at MNIST scale
    height = round(dh * rng.uniform(1.15, 1.7)) + 2 * thick
    width = max(round(height * rng.uniform(0.75, 1.2)), dw + 2 * thick + 2)
    a = np.zeros((height, width), np.float32)
    level = rng.uniform(0.45, 1.0)
    a[:thick], a[-thick:], a[:, :thick], a[:, -thick:] = level, level, level, level
    touch = rng.random() < 0.2  # the digit reaches the box's line
    top = thick if touch else int(rng.integers(thick + 2, max(thick + 3, height - dh - thick - 1)))
    left = int(rng.integers(thick + 2, max(thick + 3, width - dw - thick - 1)))
    top, left = min(top, height - dh), min(left, width - dw)
    a[top : top + dh, left : left + dw] = np.maximum(a[top : top + dh, left : left + dw], ink)
    a = np.pad(a, int(rng.choice([0, 0, 4, 12, 30])))
    if rng.random() < 0.5:
        a = np.clip(ndimage.rotate(np.pad(a, 8), rng.uniform(-2.5, 2.5), reshape=False, order=1), 0, 1)
    if rng.random() < 0.5:
        a = ndimage.gaussian_filter(a, rng.uniform(0.5, 2.0))
    return _png(_paint(a, dark=i % 4 != 3))


def _tight(digit: np.ndarray, i: int) -> bytes:
    """The digit cropped at its ink (its strokes run into the picture's edges), 8-64 px tall."""
    rng = np.random.default_rng([SEED, i, 3])
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    a = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] / 255.0
    height = int(rng.choice([8, 10, 12, 16, 20, 28, 40, 64]))
    width = max(3, round(a.shape[1] * height / a.shape[0]))
    method = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.BOX)[i % 3]
    a = np.clip(_resize(a, (width, height), method), 0, 1)
    if i % 5 == 4 and height <= 20:  # a thumbnail zoomed by repeating its pixels
        a = np.kron(a, np.ones((4, 4), np.float32))
    grey = _paint(a, dark=rng.random() < 0.5)
    return _jpeg(grey, 85) if i % 7 == 6 else _png(grey)


def optdigits() -> tuple[np.ndarray, np.ndarray]:
    """The UCI handwritten digits shipped with scikit-learn, as (1797, 8, 8) uint8 0-255 and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.round(digits.images * (255 / 16)).astype(np.uint8), digits.target.astype(np.int64)


def _optdigit(digit: np.ndarray, i: int) -> bytes:
    """An 8x8 UCI digit as it is, or enlarged to 32-64 px; light on dark or dark on light."""
    rng = np.random.default_rng([SEED, i, 4])
    a = digit / 255.0
    side, method = ((8, None), (32, Image.Resampling.BILINEAR), (64, Image.Resampling.BICUBIC),
                    (32, Image.Resampling.NEAREST), (48, Image.Resampling.BICUBIC),
                    (64, Image.Resampling.NEAREST))[i % 6]
    if method is not None:
        a = np.clip(_resize(a, (side, side), method), 0, 1)
    dark = rng.random() < 0.5
    return _png(255.0 * (1.0 - a) if dark else 255.0 * a)


def ruled_paper(shape: tuple[int, int], cell: float, thick: float, level: float, rng: np.random.Generator,
                squared: bool = True) -> np.ndarray:
    """The lines of ruled paper (``squared``: squared paper) as an ink map of ``shape``: lines every
    ``cell`` pixels, ``thick`` pixels thick (a fraction of a pixel anti-aliased), ink ``level``,
    starting at a random offset."""
    h, w = shape

    def cover(n: int) -> np.ndarray:  # how much of each pixel row the lines cover
        starts = np.arange(rng.uniform(0, cell), n, cell)[:, None]
        edges = np.arange(n, dtype=np.float64)[None, :]
        return np.clip(np.minimum(edges + 1, starts + thick) - np.maximum(edges, starts), 0, 1).sum(axis=0)

    lines = np.repeat(np.clip(cover(h), 0, 1)[:, None], w, axis=1)
    if squared:
        lines = np.maximum(lines, np.clip(cover(w), 0, 1)[None, :])
    return (level * lines).astype(np.float32)


def _on_ruled_paper(digit: np.ndarray, i: int, squared: bool) -> bytes:
    """The digit written on squared paper (cells 0.35-1.3 times its height) or on ruled paper (lines
    0.5-1.6 times its height apart), anywhere on the sheet, the lines crossing it or passing by:
    lines 0.15-0.75 px thick at MNIST scale, grey or nearly black; sometimes turned up to 2.5
    degrees, blurred or saved as JPEG; dark on light paper, or light on a dark screen for every
    fourth."""
    from scipy import ndimage

    rng = np.random.default_rng([SEED, i, 1 if squared else 2])
    up = _up(digit)  # 112 px, the digit about 80 px tall
    rows, cols = np.flatnonzero(up.max(axis=1) > 0.05), np.flatnonzero(up.max(axis=0) > 0.05)
    ink = up[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    dh, dw = ink.shape
    height = round(dh * rng.uniform(1.3, 2.6))
    width = max(round(height * rng.uniform(0.8, 1.4)), dw + 8)
    cell = dh * (rng.uniform(0.35, 1.3) if squared else rng.uniform(0.5, 1.6))
    a = ruled_paper((height, width), cell, rng.uniform(0.6, 3.0), rng.uniform(0.2, 0.8), rng, squared)
    top, left = int(rng.integers(0, height - dh + 1)), int(rng.integers(0, width - dw + 1))
    a[top : top + dh, left : left + dw] = np.maximum(a[top : top + dh, left : left + dw], ink)
    if rng.random() < 0.5:
        a = np.clip(ndimage.rotate(a, rng.uniform(-2.5, 2.5), reshape=False, order=1), 0, 1)
    if rng.random() < 0.5:
        a = ndimage.gaussian_filter(a, rng.uniform(0.5, 1.5))
    grey = _paint(a, dark=i % 4 != 3)
    return _jpeg(grey, 70) if rng.random() < 0.25 else _png(grey)


SIZES = (8, 10, 12, 16, 20)
KINDS = ("mnist", "mnist-paper", *(f"{h}px" for h in SIZES), *(f"{h}px-up" for h in SIZES), "blur-1", "blur-2",
         "contrast-25", "gamma", "jpeg-30", "dark-on-light", "light-on-dark", "thick", "thin")


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    from digitlab.data.datasets import load_data

    _, (x, y) = load_data("mnist")
    return x, y


# not in the table's total: printed forms, ruled paper, tight crops and the UCI digits, asked for
# with --kinds boxed,squared,lined,tight,optdigits
EXTRA_KINDS = ("boxed", "squared", "lined", "tight", "optdigits")


def pictures(n: int, kinds: tuple[str, ...] = KINDS, x: np.ndarray | None = None,
             y: np.ndarray | None = None) -> Iterator[tuple[str, bytes, int]]:
    """(degradation, picture bytes, label) for ``n`` MNIST test digits per degradation, deterministically."""
    if x is None or y is None:
        x, y = mnist_test()
    for k, kind in enumerate(KINDS + EXTRA_KINDS):
        if kind not in kinds:
            continue
        make = _make(kind)
        source, labels = optdigits() if kind == "optdigits" else (x, y)
        chosen = np.random.default_rng(SEED + k).choice(len(source), size=min(n, len(source)), replace=False)
        for i, j in enumerate(chosen):
            yield kind, make(source[j], i), int(labels[j])


def realworld() -> Iterator[tuple[str, bytes, int]]:
    with (REALWORLD / "labels.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            yield "realworld", (REALWORLD / "images" / r["file"]).read_bytes(), int(r["label"])


def preprocess(items) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, float]:
    """(kinds, inputs (N, 28, 28), labels, refused (N,) bool, seconds) of the pictures through load_digit."""
    kinds, inputs, labels, refused = [], [], [], []
    start = time.perf_counter()
    for kind, data, label in items:
        try:
            x, bad = load_digit(data), False
        except ImageError:
            x, bad = np.zeros((28, 28), np.uint8), True
        kinds.append(kind)
        inputs.append(x)
        labels.append(label)
        refused.append(bad)
    seconds = time.perf_counter() - start
    return kinds, np.stack(inputs), np.array(labels), np.array(refused), seconds


def detector_scores(inputs: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(digit scores, threshold) from the not-a-digit detector, or None where it does not exist."""
    try:
        from digitlab.inference import detector
    except ImportError:
        return None
    return np.asarray(detector.digit_scores(inputs), np.float32), float(detector.THRESHOLD)


def evaluate(model: str | Path, inputs: np.ndarray, labels: np.ndarray, refused: np.ndarray) -> np.ndarray:
    """Per picture: read correctly (bool)."""
    from digitlab.inference.predictor import load_predictor, predict_proba

    pred = predict_proba(load_predictor(model), inputs).argmax(1)
    return (pred == labels) & ~refused


def read_as_numbers(model: str | Path, items: list[tuple[str, bytes, int]]) -> np.ndarray:
    """Per picture: read as a number (the default of the CLI and the API), the text is its digit."""
    from digitlab.inference.numbers import read_number
    from digitlab.inference.predictor import load_predictor

    predictor = load_predictor(model)
    hits = []
    for _, data, label in items:
        try:
            hits.append(read_number(data, predictor).text == str(label))
        except ImageError:
            hits.append(False)
    return np.array(hits)


def table(columns: dict[str, np.ndarray], kinds: list[str]) -> list[tuple[str, int, list[float]]]:
    """Rows (degradation, n, accuracy per column) plus an 'all' row (every picture, equal weight)."""
    k = np.array(kinds)
    order = [kind for kind in (*KINDS, "realworld", *EXTRA_KINDS) if (k == kind).any()]
    rows = [(kind, int((k == kind).sum()), [float(hits[k == kind].mean()) for hits in columns.values()])
            for kind in order]
    rows.append(("all", len(k), [float(hits.mean()) for hits in columns.values()]))
    return rows


def markdown(columns: list[str], rows: list[tuple[str, int, list[float]]]) -> str:
    lines = ["| degradation | n | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for kind, n, accs in rows:
        name = f"**{kind}**" if kind == "all" else kind
        lines.append(f"| {name} | {n} | " + " | ".join(f"{100 * a:.1f}%" for a in accs) + " |")
    return "\n".join(lines)


def write_readme(text: str, path: Path = README) -> None:
    readme = path.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"{path} has no {START} ... {END} marks")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="run folders or .onnx files, optionally NAME=PATH")
    parser.add_argument("--n", type=int, default=500, help="digits per degradation (default 500)")
    parser.add_argument("--kinds", help="comma-separated degradations (default: all)")
    parser.add_argument("--no-realworld", action="store_true", help="leave out tests/realworld")
    parser.add_argument("--no-reject", action="store_true", help="no column with not-a-digit rejection")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    parser.add_argument("--save-inputs", type=Path, metavar="DIR", help="a contact sheet of the inputs per degradation")
    parser.add_argument("--numbers", action="store_true",
                        help="add a column per model: each picture read as a number (rejection on)")
    parser.add_argument("--cache", type=Path, metavar="NPZ",
                        help="keep the preprocessed inputs here (reused when it exists: only the models run)")
    args = parser.parse_args(argv)

    models = args.models or [f"mnist-best={DEFAULT_MODEL}"]
    named = [(m.split("=", 1) if "=" in m else (Path(m).name, m)) for m in models]
    kinds = tuple(args.kinds.split(",")) if args.kinds else KINDS
    unknown = sorted(set(kinds) - set(KINDS + EXTRA_KINDS))
    if unknown:
        parser.error(f"unknown degradation {', '.join(unknown)} (choose from {', '.join(KINDS + EXTRA_KINDS)})")
    items = None
    if args.cache and args.cache.exists():
        saved = np.load(args.cache)
        kind_list, inputs, labels, refused = (list(saved["kinds"]), saved["inputs"], saved["labels"],
                                              saved["refused"])
    else:
        items = list(pictures(args.n, kinds))
        if not args.no_realworld:
            items += list(realworld())
        kind_list, inputs, labels, refused, seconds = preprocess(items)
        print(f"{len(items)} pictures, preprocessed in {seconds:.1f} s ({1000 * seconds / len(items):.2f} ms each), "
              f"{int(refused.sum())} refused as blank", file=sys.stderr)
        if args.cache:
            np.savez_compressed(args.cache, kinds=np.array(kind_list), inputs=inputs, labels=labels, refused=refused)
    scores = None if args.no_reject else detector_scores(inputs)
    columns: dict[str, np.ndarray] = {}
    for name, path in named:
        hits = evaluate(path, inputs, labels, refused)
        columns[name] = hits
        if scores is not None:
            columns[f"{name} (rejecting)"] = hits & (scores[0] >= scores[1])
        if args.numbers:
            if items is None:
                raise SystemExit("--numbers needs the pictures: leave out --cache")
            columns[f"{name} (as numbers)"] = read_as_numbers(path, items)
    rows = table(columns, kind_list)
    text = markdown(list(columns), rows)
    print(text)
    if scores is not None:
        print(f"\nnot-a-digit rejection: {100 * (scores[0] < scores[1]).mean():.2f}% of these digits rejected "
              f"(threshold {scores[1]:.3f})")
    if args.save_inputs:
        args.save_inputs.mkdir(parents=True, exist_ok=True)
        k = np.array(kind_list)
        for kind in dict.fromkeys(kind_list):
            sel = inputs[k == kind][:64]
            sheet = np.zeros((8 * 28, 8 * 28), np.uint8)
            for j, img in enumerate(sel):
                sheet[(j // 8) * 28 : (j // 8 + 1) * 28, (j % 8) * 28 : (j % 8 + 1) * 28] = img
            big = Image.fromarray(sheet).resize((8 * 56, 8 * 56), Image.Resampling.NEAREST)
            big.save(args.save_inputs / f"{kind}.png")
    if args.readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
