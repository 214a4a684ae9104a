"""Reading a number: the digits written on one line of a picture, left to right.

:func:`read_number` turns a picture into a :class:`~digitlab.inference.reading.NumberReading`:

1. **Ink.** :func:`digitlab.data.pictures.ink_image` gives the picture's ink map (polarity,
   lighting, alpha and EXIF handled), the same first step as a single digit. Ruled lines (an
   underline, the line of a form, notebook lines: :func:`without_rules`) are taken out of it, so
   that they do not join the digits into one.
2. **Strokes into groups.** Connected blobs of ink (at the map's low threshold, so a stroke broken
   by a faint gap stays one blob) that overlap horizontally by at least half of the narrower one
   belong to one group: a 4 or 5 written in two strokes, a 7 with a crossbar, a speck above a 1.
   Specks too small to be a digit join the group they lie over or next to, or are dropped.
3. **How many digits, and where.** The sequence reader (:mod:`digitlab.inference.sequence`) reads
   the line's ink as a whole and says how many digits it holds and where each one lies. A line it
   surely (at least :data:`SEQ_SURE`) reads as one digit, or as none (clothing, letters,
   scribbles: it was trained to read them as nothing), is read as :func:`load_digit` reads it.
   For a line of several digits its count comes first, however unsure it is of the digits
   themselves: one digit in every group makes the groups the digits; otherwise a cut is tried
   where the reader sees one digit end and the next begin inside a group, a group where it sees
   no digit may join its neighbours, and the split below is made for its count first.
4. **Candidate cuts.** A group wide enough to hold two digits gets candidate cuts: minima of its
   ink profile along slightly slanted lines (where few strokes are crossed), valleys of its upper
   and lower contours (where two round digits touch), and even positions at the expected digit
   width. Each cut then follows the path of least ink from top to bottom within a few pixels of
   its straight line, so it slips between strokes that lean on each other instead of chopping
   them. Between groups the cut is free.
5. **The model chooses.** Every run of up to :data:`MAX_SPAN` consecutive slices is a possible
   digit: its ink goes through :func:`digitlab.data.pictures.digit_from_ink` (the single-digit
   preprocessing) and the model, all in one batch. A dynamic programme over the slices finds, for
   every count of digits, the split maximising the sum of ``log p(best class)`` plus priors: a
   digit is rarely much wider than tall or much smaller than its neighbours; a piece the
   not-a-digit detector refuses (two halves of digits, a fragment) costs more the lower it scores;
   each cut through ink and each join across a gap costs a little. For the reader's count, a piece
   that is the c-th digit is also scored by how well the model's reading of it agrees with the
   reader's c-th digit. The candidates (the reader's count, one more, one fewer, and the model's
   own best count) are then compared by their split's score plus ``log P(their digits)`` under the
   reader (CTC). When the reader's count wins, each digit's probabilities are the model's times the
   reader's for that place (renormalised; a cut piece, which may lack a stroke or hold a bit of
   its neighbour, leans on the reader more than a group as it stands, which the model reads
   better), and a piece the detector refuses is still a digit where the reader reads it surely
   (:data:`SEQ_VOUCH`).
6. **Confidence.** How sure the split is: the chosen candidate's share among the candidates times
   the probability of the chosen split among all splits into as many digits (forward algorithm);
   the number's confidence is that times the product of its digits' probabilities. An uncertain
   split gives a low confidence even when every digit is clear.

A picture holding one digit is read exactly as :func:`~digitlab.data.pictures.load_digit` reads it
(the whole ink map goes through ``digit_from_ink``). Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from digitlab.data.arrays import of_labels, zero_pad
from digitlab.data.pictures import MAX_PIXELS, digit_from_ink, ink_image, model_input, named_error
from digitlab.errors import ImageError
from digitlab.inference.detector import THRESHOLD, digit_scores
from digitlab.inference.reading import DigitReading, NumberReading
from digitlab.inference.sequence import ctc_log_likelihood, read_line

MAX_DIGITS = 12        # what one line may hold
MAX_SPAN = 4           # a digit is made of at most this many consecutive slices
SPECK = 0.04           # blobs under this fraction of the biggest blob's ink are specks
OVERLAP = 0.5          # blobs overlapping by this fraction of the narrower one are one digit
CUT_OVERLAP = 0.3      # the two sides of a cut may overlap by at most this fraction of the narrower
DARK = 0.5             # a digit has ink at least this dark (on the ink map's scale); haze and shadows do not
MAX_JOIN_GAP = 0.35    # groups further apart than this (x line height) are never one digit
NEAR = 0.08            # groups closer than this (x line height) are always tried as one digit too
WORK_HEIGHT = 48       # the ink profile is measured with the line this many pixels high
SLOPES = (-0.3, -0.15, 0.0, 0.15, 0.3)  # cut lines: x shift per pixel down
CURVE_BAND = 2.0       # a cut may bend this many pixels (at WORK_HEIGHT) off its straight line
HINT_REACH = 0.15      # a hinted cut moves at most this much (x group height) to the least ink
SEQ_SURE = 0.5         # a line the sequence reader reads as one digit or none this surely is read whole
SEQ_VOUCH = 0.8        # a piece of a split that follows its count is a digit where it reads it this surely
SEQ_ONSET = 0.1        # a digit's ink begins this far (x line height) right of where the reader emits it
SEQ_INSIDE = 0.25      # ... and this far right of it lies inside the digit, however narrow
SEQ_WEIGHT = 2.0       # a cut piece's class: the model's probabilities times the reader's to this power
SEQ_WEIGHT_WHOLE = 0.5 # ... to this power for a group as it stands (no cut through it, no join)
SEQ_FLOOR = 0.05       # the reader's probabilities are mixed with this much of a uniform guess
SEQ_CTC = 1.0          # a candidate split's score adds this times log P(its digits) under the reader
MAX_LINE = 24          # splits into more pieces than this are not scored by the reader

RULE_LEVEL = 0.3       # ink at least this strong may belong to a ruled line
RULE_ASPECT = 8.0      # a ruled line is at least this many times longer than thick,
RULE_SOLID = 0.95      # ... has ink in this share of its columns at least,
RULE_BEND = 0.12       # ... keeps its middle within this share of its thickness (std) of a straight line,
RULE_LENGTH = 1.5      # ... is longer than this many times the height of the digits (no digit's stroke is),
RULE_SPAN = 0.95       # ... and than this share of the digits' width,
RULE_THICK = 0.2       # ... is at most this thick (x the digits' height)
RULE_FEET = 0.25       # ... and begins in the lowest this share of the digits' height (or below or above them)
RULE_LEAN = 2          # a stroke crossing a ruled line may move this many pixels sideways across it

# the split's priors (log scale)
WIDE_FROM, WIDE_COST = 0.95, 20.0     # width / height above this costs WIDE_COST * excess^2
SMALL_FROM, SMALL_COST = 0.7, 8.0    # height / line height below this costs SMALL_COST * shortfall / SMALL_FROM
CUT_COST, STROKE_COST = 0.1, 0.1     # a cut through ink: a constant plus this per stroke crossed
GAP_COST = 8.0                       # joining two groups: this times their gap / line height
DIGIT_COST = 0.0                     # per digit (positive favours fewer digits)
NOT_DIGIT_COST = 3.0                 # a piece the not-a-digit detector refuses: up to this
SURE = 0.9    # a group read at least this surely (and not wide) is one digit as it stands
WIDE = 0.85   # a group wider than this times its height is tried as several digits


# -- the not-a-digit verdict ---------------------------------------------------------------------


def _digit_scores(images: np.ndarray) -> tuple[np.ndarray, float]:
    """(scores (N,), threshold) of the not-a-digit detector."""
    return np.asarray(digit_scores(images), dtype=np.float32).reshape(len(images)), float(THRESHOLD)


# -- geometry of the ink ----------------------------------------------------------------------


@dataclass
class _Group:
    """Blobs read as one unit of the line (before any cut): their labels and bounding box."""

    labels: list[int]
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int
    mass: float

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def absorb(self, other: _Group) -> None:
        self.labels += other.labels
        self.x0, self.y0 = min(self.x0, other.x0), min(self.y0, other.y0)
        self.x1, self.y1 = max(self.x1, other.x1), max(self.y1, other.y1)
        self.mass += other.mass


@dataclass
class _Cut:
    """A cut in ink-map pixels, and what it costs: the straight line x = x + slope * (y - yc), or,
    with ``path``, the x of the cut on each row from ``y0`` (a curve through the least ink)."""

    x: float
    slope: float
    yc: float
    cost: float  # 0 between groups
    path: np.ndarray | None = None
    y0: int = 0

    def left_of(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        if self.path is None:
            return xs < self.x + self.slope * (ys - self.yc)
        return xs < self.path[np.clip(ys - self.y0, 0, len(self.path) - 1)]


def _least_ink_paths(small: np.ndarray, lines: list[tuple[float, float]], yc: float, band: float,
                     stroke: float) -> list[np.ndarray]:
    """For each straight line x = c + slope * (y - yc) of ``lines`` ((c, slope) pairs), the x (per
    row) of the top-to-bottom path through the least ink of ``small`` that moves at most one pixel
    sideways a row and stays within ``band`` pixels of it (the line itself where there is none).

    All the lines' paths are found in one dynamic programme over the rows, each in the band around
    its line (the columns beyond a band's edge cost infinitely much)."""
    h, w = small.shape
    rows = np.arange(h)
    out: list[np.ndarray] = []
    todo = []  # (index, the line's x per row, first column of its band, one past the last)
    for i, (c, slope) in enumerate(lines):
        centre = c + slope * (rows - yc)
        out.append(centre)
        lo = max(0, int(math.floor(centre.min() - band)) - 1)
        hi = min(w, int(math.ceil(centre.max() + band)) + 2)
        if hi - lo >= 2:
            todo.append((i, centre, lo, hi))
    if not todo:
        return out
    k, width = len(todo), max(hi - lo for _, _, lo, hi in todo)
    xs = np.arange(width)
    # ink crossed, a little for leaving the straight line, nothing allowed outside the band
    cost = np.full((k, h, width), np.inf)
    for j, (_, centre, lo, hi) in enumerate(todo):
        off = np.abs(xs[None, : hi - lo] - (centre - lo)[:, None])
        cost[j, :, : hi - lo] = np.where(off > band, np.inf, small[:, lo:hi] / stroke + 0.02 * off / max(1.0, band))
    acc = cost[:, 0].copy()
    step = np.zeros((h, k, width), np.int8)
    side = 0.03  # a sideways step costs a little, so the path stays straight where it can
    edge = np.full((k, 1), np.inf)
    for y in range(1, h):
        choice = np.stack([np.concatenate([edge, acc[:, :-1]], axis=1) + side, acc,
                           np.concatenate([acc[:, 1:], edge], axis=1) + side])
        best = np.argmin(choice, axis=0)
        step[y] = best - 1
        acc = np.take_along_axis(choice, best[None], 0)[0] + cost[:, y]
    x = np.argmin(acc, axis=1)
    found = np.isfinite(acc[np.arange(k), x])
    path = np.empty((k, h), np.float64)
    for y in range(h - 1, -1, -1):
        path[:, y] = x
        x = np.clip(x + step[y, np.arange(k), x], 0, width - 1)  # (a path not found is dropped)
    for j, (i, _, lo, _) in enumerate(todo):
        if found[j]:
            out[i] = path[j] + lo
    return out


def _overlap(a: _Group, b: _Group) -> float:
    inter = min(a.x1, b.x1) - max(a.x0, b.x0)
    return inter / max(1, min(a.width, b.width))


def _groups(labels: np.ndarray, ink: np.ndarray) -> list[_Group]:
    """Blobs -> groups of blobs that are one digit (horizontal overlap), specks attached or dropped."""
    n = int(labels.max())
    if n == 0:
        return []
    masses = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)[1:]
    strong = np.bincount(labels[ink >= DARK].ravel(), minlength=n + 1)[1:] > 0
    boxes = ndimage.find_objects(labels)
    blobs = [_Group([i + 1], b[1].start, b[0].start, b[1].stop, b[0].stop, float(masses[i]))
             for i, b in enumerate(boxes) if b is not None and strong[i]]
    if not blobs:
        return []
    top = max(b.mass for b in blobs)
    big = sorted((b for b in blobs if b.mass >= SPECK * top), key=lambda g: g.x0)
    specks = [b for b in blobs if b.mass < SPECK * top]
    groups: list[_Group] = []
    for b in big:  # merge by horizontal overlap until nothing changes
        groups.append(b)
        merged = True
        while merged and len(groups) > 1:
            merged = False
            last = groups[-1]
            for g in groups[:-1]:
                if _overlap(g, last) >= OVERLAP:
                    g.absorb(last)
                    groups.pop()
                    groups.remove(g)
                    groups.append(g)
                    merged = True
                    break
    groups.sort(key=lambda g: g.x0)
    line = _line_height(groups)
    for s in specks:  # a speck over a group, or right next to one, is part of it; others go
        near = [g for g in groups if _overlap(g, s) > 0 or
                max(g.x0 - s.x1, s.x0 - g.x1) < 0.1 * line]
        if near:
            min(near, key=lambda g: abs((g.x0 + g.x1) - (s.x0 + s.x1))).absorb(s)
    # small groups (a broken-off piece of stroke, dirt): join the nearest group when close, else dropped
    kept = [g for g in groups if g.height >= 0.3 * line or g.mass >= 0.1 * max(x.mass for x in groups)]
    # a pale blob in a corner of the picture is a shadow or the edge of something else, not a digit
    h, w = ink.shape

    def pale_corner(g: _Group) -> bool:
        sides = (g.x0 == 0, g.y0 == 0, g.x1 == w, g.y1 == h)  # left, top, right, bottom
        corner = any(sides[i] and sides[(i + 1) % 4] for i in range(4))
        return corner and float(np.percentile(ink[labels == g.labels[0]], 95)) < 0.9

    if len(kept) > 1:
        kept = [g for g in kept if not pale_corner(g)] or kept
    # one line: a group beside the line's band (a shadow in a corner, a mark under the number) goes
    top = max(kept, key=lambda g: g.mass)
    band = [g for g in kept if _v_overlap(g, top) >= 0.5]
    if len(band) < len(kept):
        lo, hi = min(g.y0 for g in band), max(g.y1 for g in band)
        kept = [g for g in kept if min(g.y1, hi) - max(g.y0, lo) >= 0.5 * g.height]
    for g in groups:
        if g in kept:
            continue
        gaps = [(max(k.x0 - g.x1, g.x0 - k.x1, 0), k) for k in kept]
        gap, k = min(gaps, key=lambda t: t[0])
        if gap < 0.2 * line:
            k.absorb(g)
    return sorted(kept, key=lambda g: g.x0)


def _v_overlap(a: _Group, b: _Group) -> float:
    return (min(a.y1, b.y1) - max(a.y0, b.y0)) / max(1, min(a.height, b.height))


def _line_height(groups: list[_Group]) -> float:
    top = max(g.mass for g in groups)
    heights = [g.height for g in groups if g.mass >= 0.15 * top]
    return float(np.median(heights)) if heights else float(max(g.height for g in groups))


def _group_ink(ink: np.ndarray, labels: np.ndarray, g: _Group) -> np.ndarray:
    crop = ink[g.y0 : g.y1, g.x0 : g.x1]
    return np.where(of_labels(labels[g.y0 : g.y1, g.x0 : g.x1], g.labels), crop, np.float32(0.0))


def _valleys(values: np.ndarray) -> list[int]:
    """Indices of the local minima of a 1-D profile (the middle of a flat bottom)."""
    out = []
    n = len(values)
    i = 1
    while i < n - 1:
        j = i
        while j + 1 < n and values[j + 1] == values[i]:
            j += 1
        if j + 1 < n and values[i - 1] > values[i] < values[j + 1]:
            out.append((i + j) // 2)
        i = j + 1
    return out


def _cuts(ink: np.ndarray, labels: np.ndarray, g: _Group, line: float,
          hints: tuple[float, ...] = ()) -> list[_Cut]:
    """Candidate cuts inside one group (none when it is too narrow to hold two digits).

    ``hints`` are ink-map x positions where the sequence reader sees one digit end and the next
    begin; each gives a cut at the least-ink column near it, tried before any other."""
    if (g.width < 0.4 * min(g.height, line) or g.width < 4) and not hints:
        return []
    crop = _group_ink(ink, labels, g)
    f = min(1.0, WORK_HEIGHT / max(1, g.height))
    w, h = max(2, round(g.width * f)), max(2, round(g.height * f))
    small = np.asarray(Image.fromarray(crop, mode="F").resize((w, h), Image.Resampling.BOX)
                       if f < 1 else Image.fromarray(crop, mode="F"))
    small = np.asarray(small, dtype=np.float32)
    h, w = small.shape
    m = small > 0.3
    perimeter = int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum()) or 1
    stroke = max(1.0, 2.0 * float(m.sum()) / perimeter)
    yc = (h - 1) / 2.0
    rows = np.arange(h)
    pad = math.ceil(max(abs(s) for s in SLOPES) * h) + 1
    padded = zero_pad(small, ((0, 0), (pad, pad)))
    best = np.full(w, np.inf, np.float32)
    best_slope = np.zeros(w, np.float32)
    for s in SLOPES:
        offs = np.round(s * (rows - yc)).astype(int)
        idx = pad + offs[:, None] + np.arange(w)[None, :]
        prof = padded[rows[:, None], idx].sum(axis=0)
        better = prof < best
        best[better], best_slope[better] = prof[better], s
    lo, hi = max(1, round(0.12 * h)), w - max(1, round(0.12 * h))
    if hi - lo < 1:
        return []
    found: dict[int, float] = {}
    strokes = best / stroke
    smooth = np.convolve(strokes, np.ones(3) / 3, mode="same")
    for c in _valleys(smooth):
        if lo <= c < hi:
            found[c] = float(strokes[c])
    ink_rows = m.any(axis=1)
    if ink_rows.any():
        top = np.where(m.any(axis=0), m.argmax(axis=0), h).astype(np.float32)
        bottom = np.where(m.any(axis=0), h - 1 - m[::-1].argmax(axis=0), -1).astype(np.float32)
        for c in _valleys(-np.convolve(top, np.ones(3) / 3, mode="same")) + _valleys(
                np.convolve(bottom, np.ones(3) / 3, mode="same")):
            if lo <= c < hi:
                found.setdefault(c, float(strokes[c]))
    n = round(w / (0.6 * h))
    for k in range(1, n):
        c = round(k * w / n)
        if lo <= c < hi:
            found.setdefault(c, float(strokes[c]))
    hinted = []
    reach = max(1, round(HINT_REACH * h))
    for x in hints:  # the least ink near each hint
        c0 = round((x - g.x0) * f - 0.5)
        a, b = max(lo, c0 - reach), min(hi, c0 + reach + 1)
        if a < b:
            c = a + int(np.argmin(strokes[a:b] + 0.02 * np.abs(np.arange(a, b) - c0)))
            found[c] = float(strokes[c])
            hinted.append(c)
    # the hinted first, then the cheapest; no two closer than an eighth of the height
    chosen: list[int] = []
    ys, xs = np.mgrid[0:h, 0:w]
    total = float(small.sum()) or 1.0
    for c in hinted + sorted(found, key=lambda c: found[c]):
        if c in chosen or not all(abs(c - o) >= max(2, 0.12 * h) for o in chosen):
            continue
        # the two sides must be side by side (like two groups) and each hold a real share of the ink
        left = xs < c + best_slope[c] * (ys - yc)
        sides = [m & left, m & ~left]
        share = 0.02 if c in hinted else 0.08
        if any(float(small[side].sum()) < share * total or not side.any() for side in sides):
            continue
        (a0, a1), (b0, b1) = [(int(xs[side].min()), int(xs[side].max()) + 1) for side in sides]
        if c not in hinted and min(a1, b1) - max(a0, b0) >= CUT_OVERLAP * min(a1 - a0, b1 - b0):
            continue
        chosen.append(c)
        if len(chosen) >= 2 * max(n, 1) + 2 + len(hinted):
            break
    cuts = []
    rows_here = np.minimum(h - 1, ((np.arange(g.height) + 0.5) * f).astype(int))
    chosen.sort()
    paths = _least_ink_paths(small, [(c, float(best_slope[c])) for c in chosen], yc, CURVE_BAND, stroke)
    for c, path in zip(chosen, paths, strict=True):
        s = float(best_slope[c])
        crossed = float(small[rows, path.astype(int)].sum()) / stroke
        cuts.append(_Cut(x=g.x0 + (c + 0.5) / f, slope=s, yc=g.y0 + (yc + 0.5) / f,
                         cost=CUT_COST + STROKE_COST * max(0.0, found[c], crossed),
                         path=g.x0 + (path[rows_here] + 0.5) / f, y0=g.y0))
    return cuts


# -- reading -----------------------------------------------------------------------------------


@dataclass
class _Piece:
    start: int  # first slice
    stop: int   # one past the last slice
    image: np.ndarray
    box: tuple[int, int, int, int]  # in ink-map pixels, x1/y1 exclusive
    prior: float
    row: int  # its row in the batch given to the model
    whole: bool = False  # one group as it stands: no cut through its ink, no join


def _piece_ink(ink: np.ndarray, labels: np.ndarray, groups: list[_Group], left: _Cut | None,
               right: _Cut | None) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    x0, y0 = min(g.x0 for g in groups), min(g.y0 for g in groups)
    x1, y1 = max(g.x1 for g in groups), max(g.y1 for g in groups)
    crop = ink[y0:y1, x0:x1]
    keep = of_labels(labels[y0:y1, x0:x1], [lab for g in groups for lab in g.labels])
    if left is not None or right is not None:
        ys, xs = np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]  # (broadcast to the crop)
        if left is not None and left.cost > 0:
            keep &= ~left.left_of(ys, xs)
        if right is not None and right.cost > 0:
            keep &= right.left_of(ys, xs)
    piece = np.where(keep, crop, np.float32(0.0))
    rows, cols = np.flatnonzero(piece.any(axis=1)), np.flatnonzero(piece.any(axis=0))
    if not len(rows):
        return None
    piece = piece[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return zero_pad(piece, (2, 2)), (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1,
                              y0 + int(rows[-1]) + 1)


def _prior(box: tuple[int, int, int, int], line: float) -> float:
    w, h = box[2] - box[0], box[3] - box[1]
    ratio = w / max(1.0, h, 0.9 * line)  # a short digit may be as wide as the line is high
    cost = WIDE_COST * max(0.0, ratio - WIDE_FROM) ** 2
    tall = h / max(1.0, line)
    cost += SMALL_COST * max(0.0, SMALL_FROM - tall) / SMALL_FROM
    return -cost - DIGIT_COST


def _reading(index: int, probs: np.ndarray, names: list[str], image: np.ndarray, box, scale: float,
             score: float, threshold: float, reject: bool, vouched: bool = False) -> DigitReading:
    order = np.argsort(-probs, kind="stable")[:3]
    k = int(order[0])
    is_digit = bool(score >= threshold) or vouched
    src_box = None
    if box is not None:
        src_box = (int(math.floor(box[0] / scale)), int(math.floor(box[1] / scale)),
                   int(math.ceil(box[2] / scale)), int(math.ceil(box[3] / scale)))
    known = is_digit or not reject
    return DigitReading(index=k if known else None, label=names[k] if known else None,
                        confidence=float(probs[k]), probabilities=probs.astype(np.float32),
                        top=[(int(c), names[int(c)], float(probs[c])) for c in order],
                        is_digit=is_digit, digit_score=float(score), box=src_box, image=image)


def _number(digits: list[DigitReading], split_certainty: float) -> NumberReading:
    known = [d for d in digits if d.label is not None]
    text = "".join(d.label for d in known) if known else None
    confidence = split_certainty * float(np.prod([d.confidence for d in known])) if known else 0.0
    return NumberReading(text=text, confidence=confidence, digits=digits)


def _line_crop(ink: np.ndarray, labels: np.ndarray, groups: list[_Group]) -> np.ndarray:
    """The ink of the line's groups (specks and marks beside the line left out), cropped to them."""
    x0, y0 = min(g.x0 for g in groups), min(g.y0 for g in groups)
    x1, y1 = max(g.x1 for g in groups), max(g.y1 for g in groups)
    keep = of_labels(labels[y0:y1, x0:x1], [lab for g in groups for lab in g.labels])
    return np.where(keep, ink[y0:y1, x0:x1], np.float32(0.0))


def _blobs(ink: np.ndarray) -> tuple[np.ndarray, list[_Group]]:
    labels, _ = ndimage.label(ink > 0, structure=np.ones((3, 3), bool))
    return labels, _groups(labels, ink)


def line_ink(ink: np.ndarray) -> np.ndarray | None:
    """An ink map -> the ink of its line of digits, cropped (what the sequence reader reads), or None."""
    ink = np.asarray(ink, dtype=np.float32)
    labels, groups = _blobs(ink)
    return _line_crop(ink, labels, groups) if groups else None


def without_rules(ink: np.ndarray) -> np.ndarray | None:
    """An ink map -> the same without its ruled lines (an underline, the line of a form or a
    notebook that the digits stand on or cross), or None when it has none.

    A ruled line is a horizontal run of ink much longer than thick (:data:`RULE_ASPECT`), solid
    (:data:`RULE_SOLID`) and straight (:data:`RULE_BEND`: the joined feet of touching digits
    curve), longer than the digits are high (:data:`RULE_LENGTH`: no stroke of a digit is) and
    about as long as they are wide (:data:`RULE_SPAN`), thin beside them (:data:`RULE_THICK`), and
    at their feet (:data:`RULE_FEET`), below them or wholly above them (the joined tops of touching
    7s, or the bars of touching 4s, lie higher). Where a digit's stroke crosses it, the stroke is
    kept whole."""
    ink = np.asarray(ink, dtype=np.float32)
    m = (ink >= RULE_LEVEL).astype(np.uint8)
    h, w = m.shape
    if w < 16 or not m.any():
        return None
    run = np.ones((1, max(5, w // 16)), np.uint8)
    # long horizontal runs of ink, a break of less than a run's length bridged
    runs = cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, run), cv2.MORPH_CLOSE, run)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=8)
    bands = []  # (x0, x1, y0, y1) of each long run's core: the rows it fills over half its length
    for k in range(1, n):
        x, y, bw, bh = (int(v) for v in stats[k, :4])
        filled = np.flatnonzero((lab[y : y + bh, x : x + bw] == k).sum(axis=1) >= 0.5 * bw)
        if not len(filled) or bw < RULE_ASPECT * (filled[-1] - filled[0] + 1):
            continue
        y0, y1 = y + int(filled[0]), y + int(filled[-1]) + 1
        near = m[max(0, y0 - 1) : y1 + 1, x : x + bw].astype(np.float32)
        if near.any(axis=0).mean() < RULE_SOLID:  # strokes side by side, not a line
            continue
        # a line is straight: the middle of its ink, column by column, keeps to a straight line
        weight = near.sum(axis=0)
        at = np.flatnonzero(weight)
        mid = (near[:, at] * np.arange(len(near))[:, None]).sum(axis=0) / weight[at]
        bend = float(np.std(mid - np.polyval(np.polyfit(at, mid, 1), at)))
        if bend <= RULE_BEND * (y1 - y0):
            bands.append((x, x + bw, y0, y1))
    if not bands:
        return None
    # how high and wide the digits are: the ink outside those cores
    rest = m.astype(bool)
    for x0, x1, y0, y1 in bands:
        rest[y0:y1, x0:x1] = False
    if not rest.any():
        return None  # nothing but lines
    rows, cols = np.nonzero(rest)
    height = float(np.percentile(rows, 99.5) - np.percentile(rows, 0.5) + 1)
    width = float(np.percentile(cols, 99.5) - np.percentile(cols, 0.5) + 1)
    feet = float(np.percentile(rows, 0.5)) + (1.0 - RULE_FEET) * height
    # the digits' tops, or the bars of touching 4s, may join into a long run; a line they are
    # written on lies at their feet or below them (or wholly above them: the line before)
    rules = [b for b in bands if b[1] - b[0] >= max(RULE_LENGTH * height, RULE_SPAN * width)
             and b[3] - b[2] <= RULE_THICK * height and (b[2] >= feet or b[3] <= rows.min())]
    if not rules:
        return None
    out = ink.copy()
    reach = np.ones((1, 2 * RULE_LEAN + 1), np.uint8)
    for x0, x1, top, bottom in rules:
        y0, y1 = max(0, top - 1), min(h, bottom + 1)  # the line and its soft edges
        above = ink[y0 - 1] if y0 > 0 else np.zeros(w, np.float32)
        below = ink[y1] if y1 < h else np.zeros(w, np.float32)
        cols = slice(max(0, x0 - 2), min(w, x1 + 2))  # and its soft ends
        band = out[y0:y1, cols]
        # a stroke that goes on above and below the line (a pixel or two aside: it may lean)
        # crosses it: bridge it with the fainter side
        crossing = np.minimum(cv2.dilate(above[None], reach)[0], cv2.dilate(below[None], reach)[0])[cols]
        keep = crossing >= RULE_LEVEL
        band[:, ~keep] = 0.0
        band[:, keep] = np.minimum(band[:, keep], crossing[keep][None, :])
    return out


def read_ink(ink: np.ndarray, scale: float, predictor, *, single: bool = False,
             reject: bool = True, whole: bool = True) -> tuple[NumberReading, DigitReading | None]:
    """An ink map (from :func:`~digitlab.data.pictures.ink_image`) -> (the number, the whole picture as one digit).

    The second reading is what :func:`~digitlab.data.pictures.load_digit` plus the model give; it is
    the number's only digit when the picture holds one digit (or with ``single``). With
    ``whole=False`` a picture of several digits is not also read as one digit, and the second
    reading is None. Ruled lines (:func:`without_rules`) are taken out before the number is read.
    """
    if [str(n) for n in predictor.labels] != [str(i) for i in range(10)]:
        single = True  # not a digit model (Fashion-MNIST...): there is no number to read
    if not single:
        clean = without_rules(ink)
        if clean is not None:
            try:
                number, _ = _read_ink(clean, scale, predictor, reject=reject, whole=False)
            except ImageError:  # nothing but lines: read as it is
                number = None
            # a line joins the digits of a number into one; one digit with its line (an underlined
            # 7, or a 2 with a long flat foot taken for one) is read as it is
            if number is not None and len(number.digits) > 1:
                return number, (_read_ink(ink, scale, predictor, single=True, reject=reject)[1]
                                if whole else None)
    return _read_ink(ink, scale, predictor, single=single, reject=reject, whole=whole)


def _read_ink(ink: np.ndarray, scale: float, predictor, *, single: bool = False,
              reject: bool = True, whole: bool = True) -> tuple[NumberReading, DigitReading | None]:
    names = [str(n) for n in predictor.labels]
    ink = np.asarray(ink, dtype=np.float32)
    whole_image = model_input(ink)  # the picture as one digit: made when it is read or asked for
    if whole_image is not None:
        single = True  # already a 28x28 model input (an MNIST digit, a saved input): one digit, unchanged
    elif whole or single:
        whole_image = digit_from_ink(ink)  # raises ImageError when blank, as load_digit does
    full_box = _ink_box(ink)
    groups: list[_Group] = []
    if not single:
        labels, groups = _blobs(ink)
    if not groups or len(groups) == 1:
        whole_image = digit_from_ink(ink) if whole_image is None else whole_image
    if not groups:
        probs = _predict(predictor, [whole_image])
        chosen = [(whole_image, full_box, probs[0])]
        return _finish(chosen, 1.0, whole_image, probs[0], full_box, scale, names, reject)

    line = _line_height(groups)
    full_box = (min(g.x0 for g in groups), min(g.y0 for g in groups), max(g.x1 for g in groups),
                max(g.y1 for g in groups))
    seen = read_line(_line_crop(ink, labels, groups))
    if len(seen.text) <= 1 and seen.confidence >= SEQ_SURE:
        # one digit, or no digit at all: the picture is read as load_digit reads it (and the
        # detector judges it whole, so a trouser leg or a letter N is not read as a row of 1s)
        whole_image = digit_from_ink(ink) if whole_image is None else whole_image
        probs = _predict(predictor, [whole_image])
        return _finish([(whole_image, full_box, probs[0])], seen.confidence, whole_image, probs[0],
                       full_box, scale, names, reject)
    # a line of several digits: the reader's count comes first, however unsure the reader is of
    # the digits themselves (a long number's confidence is a product of many)
    count = len(seen.text) if 1 < len(seen.text) <= MAX_DIGITS else None
    # where each digit begins and where it lies (the reader emits a digit near its left edge)
    starts = [full_box[0] + a + SEQ_ONSET * line for a in seen.at]
    centres = [full_box[0] + a + SEQ_INSIDE * line for a in seen.at]
    # where the reader sees one digit end and the next begin, inside a group: a cut is tried there
    hints: dict[int, list[float]] = {}
    for x, ca, cb in zip(starts[1:], centres[:-1], centres[1:], strict=True):
        for gi, g in enumerate(groups):
            if g.x0 <= ca < g.x1 and g.x0 <= cb < g.x1:
                hints.setdefault(gi, []).append(x)
    # a group where the reader sees no digit (a piece of a broken stroke) may join its neighbours
    empty = {gi for gi, g in enumerate(groups) if not any(g.x0 <= c < g.x1 for c in centres)}
    # round 1: every group as it stands (and the whole picture, the single-digit reading)
    pieces: list[_Piece] = []
    images = [] if whole_image is None else [whole_image]  # the whole picture first, when made
    whole_row = 0 if images else None
    slices: list[tuple[int, _Cut | None]] = []
    first_slice = []
    for gi, g in enumerate(groups):
        first_slice.append(len(slices))
        slices.append((gi, None))
        made = _piece_ink(ink, labels, [g], None, None)
        if len(groups) == 1:  # the group is the picture: read it as load_digit does
            pieces.append(_Piece(gi, gi + 1, whole_image, full_box, _prior(full_box, line), whole_row, True))
            continue
        image = _digit(made[0]) if made else None
        if image is not None:
            pieces.append(_Piece(gi, gi + 1, image, made[1], _prior(made[1], line), len(images), True))
            images.append(image)
    probs = _predict(predictor, images)
    sure = {pc.start: float(probs[pc.row].max()) for pc in pieces}
    # groups the model reads surely, each as tall as the line and not wide, are a digit each:
    # the reader's count is not followed when it is lower (it missed a digit)
    whole_digits = sum(sure.get(gi, 0.0) >= SURE and g.width <= WIDE * g.height and g.height >= 0.6 * line
                       for gi, g in enumerate(groups))
    if count is not None and count < whole_digits:
        count = None
    one_each = [sum(g.x0 <= c < g.x1 for c in centres) == 1 for g in groups]
    if count == len(groups) == len(pieces) and all(one_each):
        # the sequence reader sees one digit in each group: the groups as they stand are the digits
        chosen = [(pc.image, pc.box, _with_reader(probs[pc.row], seen.probabilities[i], True))
                  for i, pc in enumerate(pieces)]
        return _finish(chosen, seen.confidence, whole_image, _row(probs, whole_row, whole), full_box, scale,
                       names, reject, seen)

    # round 2: cuts inside the groups that may hold several digits, joins of the unsure neighbours
    def small(g: _Group) -> bool:
        return g.height < 0.6 * line

    cut_groups = [gi for gi, g in enumerate(groups)
                  if g.width > WIDE * g.height or gi in hints
                  or (sure.get(gi, 0.0) < SURE and g.width >= 0.4 * min(g.height, line))]
    joinable = set()
    for gi in range(len(groups) - 1):
        a, b = groups[gi], groups[gi + 1]
        if max(0, b.x0 - a.x1) > MAX_JOIN_GAP * line:
            continue
        close = max(0, b.x0 - a.x1) < NEAR * line  # closer than digits are written: maybe one
        if (close or sure.get(gi, 0.0) < SURE or sure.get(gi + 1, 0.0) < SURE or small(a) or small(b)
                or gi in empty or gi + 1 in empty):
            joinable.add(gi)
    slices = []
    for gi, g in enumerate(groups):
        slices.append((gi, None))
        if gi in cut_groups:
            slices += [(gi, c) for c in _cuts(ink, labels, g, line, tuple(hints.get(gi, ())))]
    n = len(slices)
    start_of = {}
    for k, (gi, cut) in enumerate(slices):
        if cut is None:
            start_of[gi] = k
    for pc in pieces:  # round 1's pieces, in slice numbers
        pc.start, pc.stop = start_of[pc.start], (start_of[pc.stop] if pc.stop < len(groups) else n)
    done = {(pc.start, pc.stop) for pc in pieces}
    for i in range(n):
        for j in range(i + 1, min(n, i + MAX_SPAN) + 1):
            if (i, j) in done or (i == 0 and j == n):
                continue
            g0, g1 = slices[i][0], slices[j - 1][0]
            if any(gi not in joinable for gi in range(g0, g1)):
                continue
            made = _span(ink, labels, groups, slices, i, j, line)
            if made is None:
                continue
            part, box, join_cost = made
            image = _digit(part)
            if image is None:
                continue
            as_is = slices[i][1] is None and slices[i][0] == slices[j - 1][0] and (j == n or slices[j][1] is None)
            pieces.append(_Piece(i, j, image, box, _prior(box, line) - join_cost, len(images), as_is))
            images.append(image)
    if len(groups) - 1 == len(joinable) and n <= MAX_SPAN + 1:
        joined = _join_cost(groups, 0, len(groups) - 1, line)
        if joined is not None:
            if whole_row is None:  # the whole picture as one digit is a piece too
                whole_image = digit_from_ink(ink)
                whole_row = len(images)
                images.append(whole_image)
            pieces.append(_Piece(0, n, whole_image, full_box, _prior(full_box, line) - joined, whole_row))
    if len(images) > len(probs):
        probs = np.concatenate([probs, _predict(predictor, images[len(probs):])])

    looks, threshold = _digit_scores(np.stack(images))
    scores = []
    for pc in pieces:
        score = float(np.log(max(float(probs[pc.row].max()), 1e-12))) + pc.prior
        if threshold > 0 and looks[pc.row] < threshold:  # not a digit: two halves, a fragment
            score -= NOT_DIGIT_COST * (threshold - float(looks[pc.row])) / threshold
        cut = slices[pc.start][1]
        if cut is not None:  # the cut at a piece's left end is paid by the piece
            score -= cut.cost
        scores.append(score)
    # with the reader's count followed, a piece that is digit number c is also scored by how well
    # the model's reading of it agrees with the reader's c-th digit
    model = np.asarray([probs[pc.row] for pc in pieces], dtype=np.float64)  # (pieces, 10)
    plain = _split(pieces, np.repeat(np.asarray(scores)[:, None], n + 1, axis=1), n)
    aligned = None
    if count is not None and count <= n:
        as_is = np.array([pc.whole for pc in pieces])[:, None, None]
        joint = model[:, None, :] * np.where(as_is, _reader_weights(seen.probabilities, True)[None],
                                             _reader_weights(seen.probabilities)[None])  # (pieces, count, 10)
        agree = np.zeros((len(pieces), n + 1))
        agree[:, :count] = np.log(np.maximum(joint.max(axis=2), 1e-30)) - np.log(np.maximum(
            model.max(axis=1), 1e-30))[:, None]
        aligned = _split(pieces, np.asarray(scores)[:, None] + agree, n)
    # the candidate counts: the reader's (its digits aligned), one more and one fewer, the model's
    # own best; each scored by its split plus how likely the reader finds the digits it reads
    own = int(np.argmax(plain[0][n]))
    centre = own if count is None else count
    options = []
    for c in sorted({centre - 1, centre, centre + 1, own}):
        table = aligned if aligned is not None and c == count else plain
        if c < 1 or c > n or not np.isfinite(table[0][n, c]):
            continue
        path = _path(table[2], pieces, n, c)
        read = [int(np.argmax(model[k] * (_reader_weights(seen.probabilities[i], pieces[k].whole)
                                          if table is aligned else 1.0)))
                for i, k in enumerate(path)]
        split = float(sum(scores[k] for k in path))
        ctc = ctc_log_likelihood(seen.log_probs, [d + 1 for d in read]) if len(path) <= MAX_LINE else -np.inf
        within = float(np.exp(table[0][n, c] - table[1][n, c]))
        options.append((split + SEQ_CTC * ctc, c, path, table is aligned, within))
    if not options:  # no way through (a piece without ink): the picture as one digit
        if whole_row is None:
            whole_image = digit_from_ink(ink)
            whole_row = len(probs)
            probs = np.concatenate([probs, _predict(predictor, [whole_image])])
        return _finish([(whole_image, full_box, probs[whole_row])], 1.0, whole_image, probs[whole_row],
                       full_box, scale, names, reject)
    values = np.array([o[0] for o in options])
    choice = int(np.argmax(values))
    _, c, path, followed, within = options[choice]
    # how sure: of the count (among the candidates) and of the split into that many digits
    certainty = float(np.exp(values[choice] - np.logaddexp.reduce(values))) * within if np.isfinite(
        values[choice]) else within
    if len(path) > MAX_DIGITS:
        certainty = 0.0  # more than a line of digits: read, but not trusted
    chosen = []
    for i, k in enumerate(path):
        p = probs[pieces[k].row]
        if followed:  # the model's and the reader's view of the digit
            p = _with_reader(p, seen.probabilities[i], pieces[k].whole)
        chosen.append((pieces[k].image, pieces[k].box, p))
    return _finish(chosen, certainty, whole_image, _row(probs, whole_row, whole), full_box, scale, names,
                   reject, seen if followed else None)


def _split(pieces: list[_Piece], scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dynamic programme over the slices: (best, total, back), each (n + 1, n + 2).

    ``scores[k, c - 1]`` is piece k's score as digit number c. ``best[j, c]`` is the best split of
    slices 0..j-1 into c digits, ``total[j, c]`` all of them summed (log scale), ``back[j, c]`` the
    last piece of the best."""
    best = np.full((n + 1, n + 2), -np.inf)
    total = np.full((n + 1, n + 2), -np.inf)
    best[0, 0] = total[0, 0] = 0.0
    back = np.full((n + 1, n + 2), -1)
    ending: dict[int, list[int]] = {}
    for k, pc in enumerate(pieces):
        ending.setdefault(pc.stop, []).append(k)
    for j in range(1, n + 1):
        for k in ending.get(j, []):
            here = scores[k]
            v = best[pieces[k].start, :-1] + here
            better = v > best[j, 1:]
            best[j, 1:][better] = v[better]
            back[j, 1:][better] = k
            total[j, 1:] = np.logaddexp(total[j, 1:], total[pieces[k].start, :-1] + here)
    return best, total, back


def _path(back: np.ndarray, pieces: list[_Piece], n: int, c: int) -> list[int]:
    """The pieces of the best split of all n slices into c digits, left to right."""
    path = []
    j = n
    while j > 0:
        k = int(back[j, c])
        path.append(k)
        j, c = pieces[k].start, c - 1
    path.reverse()
    return path


def _reader_weights(q: np.ndarray, whole: bool = False) -> np.ndarray:
    """The sequence reader's probabilities as the factor each digit's class is weighed by."""
    power = SEQ_WEIGHT_WHOLE if whole else SEQ_WEIGHT
    return ((1.0 - SEQ_FLOOR) * np.asarray(q, dtype=np.float64) + SEQ_FLOOR / 10.0) ** power


def _with_reader(p: np.ndarray, q: np.ndarray, whole: bool = False) -> np.ndarray:
    """A digit's probabilities from the model (``p``) and the sequence reader (``q``) together."""
    joint = np.asarray(p, dtype=np.float64) * _reader_weights(q, whole)
    return (joint / joint.sum()).astype(np.float32)


def _row(probs: np.ndarray, row: int | None, wanted: bool = True) -> np.ndarray | None:
    """The whole picture's probabilities (row ``row`` of the batch), when it was read and is wanted."""
    return None if row is None or not wanted else probs[row]


def _predict(predictor, images: list[np.ndarray]) -> np.ndarray:
    return np.asarray(predictor.predict_proba(np.stack(images)), dtype=np.float32)


def _digit(part: np.ndarray) -> np.ndarray | None:
    try:
        return digit_from_ink(part)
    except ImageError:
        return None


def _finish(chosen, certainty, whole_image, whole_probs, full_box, scale, names, reject, seen=None):
    """The readings of the chosen pieces (and of the whole picture as one digit).

    With ``seen`` (the sequence reader, its count followed), a piece of a number of several digits
    that the detector refuses is still a digit where the sequence reader surely reads that digit
    there: the detector judges each piece alone, and a piece cut from touching digits lacks a
    stroke or holds a bit of its neighbour."""
    shown = [image for image, _, _ in chosen]
    if whole_probs is None:  # the whole picture is not read as one digit
        scores, threshold = _digit_scores(np.stack(shown))
        whole = None
    else:
        scores, threshold = _digit_scores(np.stack([whole_image, *shown]))
        whole = _reading(0, whole_probs, names, whole_image, full_box, scale, scores[0], threshold, reject)
        scores = scores[1:]
    digits = []
    for i, (image, box, p) in enumerate(chosen):
        vouched = (seen is not None and len(chosen) > 1
                   and float(seen.probabilities[i][int(np.argmax(p))]) >= SEQ_VOUCH)
        digits.append(_reading(i, p, names, image, box, scale, scores[i], threshold, reject, vouched))
    return _number(digits, certainty), whole


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not len(rows):
        return (0, 0, ink.shape[1], ink.shape[0])
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _join_cost(groups: list[_Group], first: int, last: int, line: float) -> float | None:
    """What joining groups first..last into one digit costs (None: too far apart)."""
    cost = 0.0
    for a, b in zip(groups[first:last], groups[first + 1 : last + 1], strict=True):
        gap = max(0, b.x0 - a.x1) / max(1.0, line)
        if gap > MAX_JOIN_GAP:
            return None
        cost += GAP_COST * gap + CUT_COST
    return cost


def _span(ink, labels, groups, slices, i, j, line):
    """The ink of slices i..j-1 as one piece: (ink crop, box, join cost) or None when not allowed."""
    g0, left = slices[i]
    g1 = slices[j - 1][0]
    right = slices[j][1] if j < len(slices) and slices[j][0] == g1 else None
    join = _join_cost(groups, g0, g1, line)
    if join is None:
        return None
    made = _piece_ink(ink, labels, groups[g0 : g1 + 1], left, right)
    if made is None:
        return None
    part, box = made
    return part, box, join


def read_number(source: str | os.PathLike | bytes | np.ndarray, predictor, *, single: bool = False,
                reject: bool = True, max_pixels: int | None = None) -> NumberReading:
    """Read the number written in a picture (path, bytes, numpy array or PIL image) with ``predictor``.

    Up to :data:`MAX_DIGITS` digits on one line, left to right; ``text`` keeps leading zeros
    ("007"). ``single=True`` reads the picture as one digit (what :func:`load_digit` and the model
    give). ``reject=False`` keeps the class of pieces the not-a-digit detector refuses. Raises
    :class:`~digitlab.errors.ImageError` for what is not a picture, too large, or blank.
    """
    ink, scale = ink_image(source, MAX_PIXELS if max_pixels is None else max_pixels)
    try:
        number, _ = read_ink(ink, scale, predictor, single=single, reject=reject, whole=False)
    except ImageError as e:  # ink, but no digit-sized piece of it: named as ink_image names its errors
        raise named_error(e, source) from None
    return number
