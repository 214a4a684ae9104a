"""The sequence reader: its input, its CTC arithmetic, and the digit count it reads on MNIST *test* lines."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from digitlab.data.pictures import ink_image
from digitlab.inference.numbers import line_ink
from digitlab.inference.sequence import (
    HEIGHT,
    INK_HEIGHT,
    MARGIN,
    STRIDE,
    column_logits,
    ctc_log_likelihood,
    line_input,
    read_line,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_numbers as bench  # noqa: E402


def test_line_input_scales_the_ink_to_the_reading_height():
    ink = np.zeros((60, 150), np.float32)
    ink[:, 10:20] = 1.0
    x, scale, x0 = line_input(ink)
    assert x.shape == (HEIGHT, round(150 * INK_HEIGHT / 60) + 2 * MARGIN)
    assert scale == pytest.approx(INK_HEIGHT / 60, rel=0.01)
    assert x0 == MARGIN
    assert x[:MARGIN].max() == 0 and x[-MARGIN:].max() == 0  # the margin above and below is empty
    cols = np.flatnonzero(x.max(axis=0) > 0.5)
    assert cols[0] == pytest.approx(x0 + 10 * scale, abs=1) and cols[-1] == pytest.approx(x0 + 20 * scale, abs=1)


def test_column_logits_have_one_column_per_stride():
    x = np.zeros((HEIGHT, 90), np.float32)
    assert column_logits(x).shape == (90 // STRIDE, 11)


def test_ctc_likelihood_is_torchs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for labels in ([3], [5, 5], [1, 2, 3, 2], [7, 7, 7]):
        z = rng.normal(size=(12, 11)).astype(np.float32)
        logp = torch.from_numpy(z).log_softmax(1)
        want = -float(torch.nn.functional.ctc_loss(logp[:, None], torch.tensor([labels]), torch.tensor([12]),
                                                   torch.tensor([len(labels)]), blank=0, reduction="sum"))
        assert ctc_log_likelihood(logp.numpy().astype(np.float64), labels) == pytest.approx(want, abs=1e-4)


@pytest.fixture(scope="module")
def lines(mnist):
    """Numbers of 1-6 MNIST test digits (separated and touching), as pictures: [(line ink, text)]."""
    (_, _), (x, y) = mnist
    rng = np.random.default_rng(11)
    out = []
    for kind in ("separated", "touching"):
        for length in (1, 2, 3, 4, 5, 6) * 5:
            ink, text = bench.make_number(kind, rng, x, y, length=length)
            data, _ = bench.render(ink, rng)
            out.append((line_ink(ink_image(data)[0]), text))
    return out


def test_the_count_of_digits_is_read_on_test_lines(lines):
    """The reader never saw these digits; it counts at least 95% of the lines right and reads
    most of them exactly (the served model, not this reader, gives the digits)."""
    read = [read_line(ink) for ink, _ in lines]
    counted = np.mean([len(r.text) == len(t) for r, (_, t) in zip(read, lines, strict=True)])
    exact = np.mean([r.text == t for r, (_, t) in zip(read, lines, strict=True)])
    assert len(lines) == 60
    assert counted >= 0.95, counted
    assert exact >= 0.8, exact


def test_digits_are_emitted_left_to_right_inside_the_line(lines):
    for ink, _ in lines:
        r = read_line(ink)
        assert len(r.at) == len(r.text) == len(r.probabilities)
        assert list(r.at) == sorted(r.at)
        assert all(-0.2 * ink.shape[0] <= a <= ink.shape[1] for a in r.at)
        assert 0.0 <= r.confidence <= 1.0
        if r.text:
            np.testing.assert_allclose(r.probabilities.sum(axis=1), 1.0, rtol=1e-5)
            assert [int(np.argmax(p)) for p in r.probabilities] == [int(c) for c in r.text]
