"""Digits written in a form's printed box, or in a comb of boxes: the lines are taken out of the ink
map, the digit is read as it would be without them, and nothing else is ever taken for a box."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_numbers as numbers_bench  # noqa: E402
import degraded as degraded_bench  # noqa: E402

from digitlab.data.frames import frame_mask, without_frames  # noqa: E402
from digitlab.data.pictures import ink_image, load_digit  # noqa: E402


def png(grey: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def box_ink(h: int = 120, w: int = 120, t: int = 3, inset: int = 10) -> np.ndarray:
    """A clean ink map with a box of lines ``t`` px thick, ``inset`` px inside the edge."""
    a = np.zeros((h, w), np.float32)
    a[inset : inset + t, inset : w - inset] = 1.0
    a[h - inset - t : h - inset, inset : w - inset] = 1.0
    a[inset : h - inset, inset : inset + t] = 1.0
    a[inset : h - inset, w - inset - t : w - inset] = 1.0
    return a


def test_the_lines_of_a_clean_box_are_found_and_nothing_else():
    ink = box_ink()
    ink[35:85, 58:64] = 1.0  # a 1 standing inside the box, clear of its lines
    lines = frame_mask(ink)
    assert lines is not None
    box = box_ink() > 0
    assert lines[box].all(), "every pixel of the box's lines is taken out"
    assert not lines[35:85, 58:64].any(), "the digit inside is left alone"
    out = without_frames(ink)
    assert out[box].max() == 0.0 and np.array_equal(out[35:85, 58:64], ink[35:85, 58:64])


def test_an_empty_box_and_shapes_like_boxes_are_not_frames():
    assert frame_mask(box_ink()) is None, "a box with nothing in it holds no digit to free"
    # a seven-segment 8: its segments do not meet at the corners
    seg = np.zeros((120, 80), np.float32)
    seg[10:16, 18:62] = seg[57:63, 18:62] = seg[104:110, 18:62] = 1.0
    seg[18:55, 10:16] = seg[18:55, 64:70] = seg[65:102, 10:16] = seg[65:102, 64:70] = 1.0
    assert frame_mask(seg) is None
    # a round 0 drawn with a thick pen
    yy, xx = np.mgrid[:120, :100]
    r = np.hypot((yy - 60) / 48.0, (xx - 50) / 36.0)
    ring = ((r > 0.8) & (r < 1.0)).astype(np.float32)
    assert frame_mask(ring) is None
    plain = np.zeros((50, 50), np.float32)
    assert without_frames(plain) is plain, "without a frame the ink map comes back as it is"


@pytest.mark.realdata
def test_no_ordinary_picture_is_taken_for_a_box(mnist):
    """The real-world set and a sample of every degradation: no frame is ever found in them."""
    bench = degraded_bench
    _, (x, y) = mnist
    found = []
    for kind, data, _ in [*bench.realworld(), *bench.pictures(10, x=x, y=y)]:
        ink, _ = ink_image(data)
        if frame_mask(ink) is not None:
            found.append(kind)
    assert found == []


@pytest.mark.realdata
def test_a_boxed_digit_reaches_the_model_as_the_digit_alone(mnist):
    """The same MNIST test digit, on paper and in a printed box: the model's inputs match."""
    bench = degraded_bench
    _, (x, _) = mnist
    digit = x[0]
    up = bench._up(digit)
    plain = bench._paint(np.pad(up, 30), dark=True)
    boxed = np.pad(up, 30)
    boxed[12:16, 12:-12] = boxed[-16:-12, 12:-12] = 0.9  # a grey box, 4 px lines
    boxed[12:-12, 12:16] = boxed[12:-12, -16:-12] = 0.9
    a, b = load_digit(png(plain)), load_digit(png(bench._paint(boxed, dark=True)))
    assert a.shape == b.shape == (28, 28)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0, "the box left no mark on the model's input"
    def box(m):
        rows, cols = np.flatnonzero((m > 40).any(axis=1)), np.flatnonzero((m > 40).any(axis=0))
        return np.array([rows[0], rows[-1], cols[0], cols[-1]])

    assert np.abs(box(a) - box(b)).max() <= 1, (box(a), box(b))


@pytest.mark.realdata
def test_boxed_digits_are_read(mnist, best):
    """Boxed MNIST test digits (grey and black lines, touching the digit or not, turned a little,
    blurred, cropped at the box or with paper round it) are read by the shipped model."""
    from digitlab.inference.numbers import read_number
    from digitlab.inference.predictor import predict_proba

    bench = degraded_bench
    _, (x, y) = mnist
    items = list(bench.pictures(40, ("boxed",), x=x, y=y))
    assert len(items) == 40 and {k for k, _, _ in items} == {"boxed"}
    inputs = np.stack([load_digit(data) for _, data, _ in items])
    labels = np.array([label for _, _, label in items])
    one_digit = int((predict_proba(best, inputs).argmax(axis=1) == labels).sum())
    as_numbers = sum(read_number(data, best).text == str(label) for _, data, label in items)
    # the whole benchmark (python benchmarks/degraded.py --kinds boxed) reads ~99%
    assert one_digit >= 37, one_digit
    assert as_numbers >= 36, as_numbers


@pytest.mark.realdata
def test_a_box_along_the_edge_of_the_picture(mnist, best):
    """A picture cropped at the box: its lines lie on the edge, white paper inside. The ink map
    keeps the picture's size and the digit is read."""
    from digitlab.inference.predictor import predict_proba

    bench = degraded_bench
    _, (x, y) = mnist
    hits = 0
    for j in range(10):
        up = bench._up(x[j])
        a = np.pad(up, 12)
        a[:3], a[-3:], a[:, :3], a[:, -3:] = 1.0, 1.0, 1.0, 1.0
        for dark in (True, False):
            data = png(bench._paint(a, dark=dark))
            ink, scale = ink_image(data)
            assert ink.shape == a.shape and scale == 1.0
            assert ink[a.shape[0] // 2, 1] == 0.0, "the box's line is gone from the ink map"
            hits += int(predict_proba(best, load_digit(data)[None]).argmax() == y[j])
    assert hits >= 19, hits


@pytest.mark.realdata
def test_numbers_in_a_comb_of_boxes_are_read(mnist, best):
    """One digit to a cell of a comb (full dividers or only their feet): the number is read exactly."""
    from digitlab.inference.numbers import read_number

    _, (x, y) = mnist
    cases = numbers_bench.make_set("boxes", 30, 0, x, y)
    exact = [read_number(data, best).text == text for data, text, _ in cases]
    # the whole benchmark (python benchmarks/bench_numbers.py models/mnist-best --kinds boxes) reads ~98%
    assert sum(exact) >= 27, [(text, how) for (data, text, how), ok in zip(cases, exact, strict=True) if not ok]


@pytest.mark.realdata
def test_a_comb_with_only_the_dividers_feet(mnist, best, monkeypatch):
    from digitlab.inference.numbers import read_number

    _, (x, y) = mnist
    rng = np.random.default_rng(5)
    digits = [2, 0, 2, 6]
    parts = [numbers_bench.crop_digit(x[int(np.flatnonzero(y == d)[3])]) for d in digits]
    ink = np.zeros((40, 4 * 30 + 2), np.float32)
    ink[:2], ink[-2:] = 1.0, 1.0
    for i in range(5):
        ink[0 if i in (0, 4) else 28 :, i * 30 : i * 30 + 2] = 1.0  # the sides, and the dividers' feet
    for i, p in enumerate(parts):
        p = np.clip(p, 0, 1)[:30, :24]
        ink[6 : 6 + p.shape[0], i * 30 + 4 : i * 30 + 4 + p.shape[1]] = np.maximum(
            ink[6 : 6 + p.shape[0], i * 30 + 4 : i * 30 + 4 + p.shape[1]], p)
    data, _ = numbers_bench.render(ink, rng)
    assert read_number(data, best).text == "2026"
    import digitlab.data.pictures as pictures

    monkeypatch.setattr(pictures, "without_frames", lambda ink: ink)
    raw, _ = ink_image(data)
    lines = frame_mask(raw)
    assert lines is not None
    # just above the bottom line: the two sides and the three feet, five upright runs
    rows = np.flatnonzero(lines.any(axis=1))
    row = lines[rows[-1] - round(0.12 * (rows[-1] - rows[0]))]
    assert int((np.diff(row.astype(np.int8)) == 1).sum() + row[0]) == 5

