"""How many digits a line holds, and where: a small sequence reader that runs beside every model.

Touching digits share ink, so cutting a line into digits by its ink alone is guesswork: a "00"
drawn as one loop looks like an 8, two 1s leaning on each other like a 4. :func:`read_line` looks
at the whole line at once. The line's ink, scaled to :data:`HEIGHT` pixels high, goes through a
small convolutional network that reads it column by column (CTC: at every other pixel column,
"no digit here" or one of the 10 digits). The best path gives the digits, their count and where
each one lies; the number reader of :mod:`digitlab.inference.numbers` uses the count and the
positions to choose its cuts, and still reads every digit with the served model.

The network (4 convolutions 3x3, two 1-D convolutions along the line, 11 outputs per column; 158k
weights) is stored as float16 in ``sequence.safetensors`` beside this module. It was trained by
``benchmarks/train_sequence.py`` on numbers of 1 to 8 digits made from MNIST *train* digits, printed
and drawn digits, handed in as pictures, and on pictures without a digit (Fashion-MNIST *train*,
letters, scribbles), which it learns to read as nothing; never on MNIST test digits, which the
number benchmark uses. Only NumPy is needed; a line of four digits takes about 2 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import load_file

from digitlab.data.arrays import zero_pad
from digitlab.inference.blas import one_thread

WEIGHTS = Path(__file__).with_name("sequence.safetensors")

HEIGHT = 32       #: the line is read this many pixels high
INK_HEIGHT = 24   #: ... its ink this high, with a margin above and below
MARGIN = 4        #: pixels of margin on each side
STRIDE = 2        #: one output column per this many input columns
MAX_WIDTH = 640   #: a longer line (more than ~20 digits) is squeezed to this width
BLANK = 0         #: output 0 is "no digit here"; output k + 1 is digit k
CONV = ("c1", "c2", "c3", "c4")
LINE = ("t1", "t2")
KERNEL_1D = 9


@dataclass(frozen=True)
class LineReading:
    """What the sequence reader sees in a line: the digits, how sure it is, where each digit lies."""

    text: str
    confidence: float          # P(text) under the network (CTC forward sum)
    at: tuple[float, ...]      # x of the columns that emitted each digit, in the given ink's pixels
    probabilities: np.ndarray  # (len(text), 10): each emitted digit's distribution over the digits
    log_probs: np.ndarray      # (columns, 11): the network's log probabilities, "no digit" first

    # The network emits a digit once it has seen its left part: ``at`` lies near the digit's left
    # edge (about a tenth of the line's height left of its ink on MNIST digits), not at its centre.


def line_input(ink: np.ndarray) -> tuple[np.ndarray, float, float]:
    """A line's ink (float [0, 1], ink bright, cropped to its ink) -> (the network's (HEIGHT, W)
    input, the scale from ink pixels to input pixels, the input x of ink x 0)."""
    ink = np.asarray(ink, dtype=np.float32)
    h, w = ink.shape
    f = INK_HEIGHT / max(1, h)
    fx = min(f, (MAX_WIDTH - 2 * MARGIN) / max(1, w))
    size = (max(4, round(w * fx)), INK_HEIGHT)
    resample = Image.Resampling.BOX if f < 1 else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(ink, mode="F").resize(size, resample), dtype=np.float32)
    out = np.zeros((HEIGHT, size[0] + 2 * MARGIN), np.float32)
    out[MARGIN : MARGIN + INK_HEIGHT, MARGIN : MARGIN + size[0]] = np.clip(small, 0.0, 1.0)
    return out, size[0] / max(1, w), float(MARGIN)


@lru_cache(maxsize=1)
def _weights() -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in load_file(str(WEIGHTS)).items()}


def _conv3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W, K): 3x3 convolution, zero padding 1, ReLU; ``w`` is (9 * C, K) in (ky, kx, c) order."""
    h, wd, c = x.shape
    p = zero_pad(x, (1, 1))
    if c < 4:  # few channels: one product of the 9 shifted copies side by side
        cols = np.concatenate([p[ky : ky + h, kx : kx + wd] for ky in range(3) for kx in range(3)], axis=2)
        y = cols.reshape(h * wd, 9 * c) @ w
        y += b
        np.maximum(y, 0.0, out=y)
        return y.reshape(h, wd, -1)
    # more channels: 9 products summed (no copy of the input 9 times over; about twice as fast)
    wk = w.reshape(9, c, -1)
    y = np.empty((h, wd, wk.shape[2]), np.float32)
    y[:] = b
    for i in range(9):
        ky, kx = divmod(i, 3)
        y += p[ky : ky + h, kx : kx + wd] @ wk[i]
    np.maximum(y, 0.0, out=y)
    return y


def _pool(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """(H, W, C) -> (H // ph, W // pw, C): the maximum of each ph x pw block."""
    h, w, c = x.shape
    h2, w2 = h // ph, w // pw
    out = x[0 : h2 * ph : ph, 0 : w2 * pw : pw].copy()
    for dy in range(ph):
        for dx in range(pw):
            if dy or dx:
                np.maximum(out, x[dy : h2 * ph : ph, dx : w2 * pw : pw], out=out)
    return out


def _conv1(x: np.ndarray, w: np.ndarray, b: np.ndarray, relu: bool = True) -> np.ndarray:
    """(T, C) -> (T, K): 1-D convolution along the line, zero padding; ``w`` is (k * C, K) in (k, c) order."""
    t, c = x.shape
    k = w.shape[0] // c
    p = zero_pad(x, (k // 2,))
    wk = w.reshape(k, c, -1)
    y = np.empty((t, wk.shape[2]), np.float32)
    y[:] = b
    for i in range(k):
        y += p[i : i + t] @ wk[i]
    if relu:
        np.maximum(y, 0.0, out=y)
    return y


def column_logits(x: np.ndarray, weights: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The network on one ``(HEIGHT, W)`` input -> ``(W // STRIDE, 11)`` logits per output column."""
    t = _weights() if weights is None else weights
    h = np.asarray(x, dtype=np.float32)[:, :, None]
    pools = ((2, STRIDE), (2, 1), (2, 1), (2, 1))
    for name, (ph, pw) in zip(CONV, pools, strict=True):
        h = _pool(_conv3(h, t[name], t[name + "b"]), ph, pw)
    h = h.transpose(1, 0, 2).reshape(h.shape[1], -1)  # (T, rows * channels), row-major per column
    for name in LINE:
        h = _conv1(h, t[name], t[name + "b"])
    return h @ t["out"] + t["outb"]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def ctc_log_likelihood(logp: np.ndarray, labels: list[int]) -> float:
    """log P(labels) given ``(T, 11)`` log probabilities (labels are output indices, no blanks)."""
    ext = [BLANK]
    for c in labels:
        ext += [c, BLANK]
    s = len(ext)
    ext_a = np.array(ext)
    skip = np.zeros(s, bool)  # a label may follow the previous label directly when they differ
    skip[3::2] = ext_a[3::2] != ext_a[1:-2:2]
    alpha = np.full(s, -np.inf)
    alpha[0] = logp[0, BLANK]
    if s > 1:
        alpha[1] = logp[0, ext[1]]
    for t in range(1, len(logp)):
        prev = alpha
        a = prev.copy()
        a[1:] = np.logaddexp(a[1:], prev[:-1])
        a[2:] = np.where(skip[2:], np.logaddexp(a[2:], prev[:-2]), a[2:])
        alpha = a + logp[t, ext_a]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if s > 1 else alpha[-1])


def best_path(scores: np.ndarray) -> tuple[list[int], list[list[int]]]:
    """``(T, 11)`` scores per column -> (the outputs read, no blanks; the columns that emitted each):
    the most likely output of every column, repeats merged, "no digit" dropped."""
    labels: list[int] = []
    runs: list[list[int]] = []
    prev = BLANK
    for t, c in enumerate(np.asarray(scores).argmax(axis=1)):
        if c != BLANK and c != prev:
            labels.append(int(c))
            runs.append([t])
        elif c != BLANK:
            runs[-1].append(t)
        prev = c
    return labels, runs


def read_line(ink: np.ndarray) -> LineReading:
    """A line's ink (float [0, 1], ink bright, cropped to its ink) -> what the sequence reader reads."""
    x, scale, x0 = line_input(ink)
    with one_thread():
        logp = _log_softmax(column_logits(x))
    labels, runs = best_path(logp)
    confidence = math.exp(ctc_log_likelihood(logp, labels)) if labels else float(np.exp(logp[:, BLANK].sum()))

    def ink_x(col: float) -> float:  # an output column's centre -> ink x
        return ((col + 0.5) * STRIDE - x0) / scale

    at = tuple(ink_x(float(np.mean(r))) for r in runs)
    p = np.exp(logp[:, 1:])
    probs = np.stack([p[r].sum(axis=0) for r in runs]) if runs else np.zeros((0, 10))
    probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    return LineReading(text="".join(str(c - 1) for c in labels), confidence=min(1.0, confidence),
                       at=at, probabilities=probs.astype(np.float32), log_probs=logp)
