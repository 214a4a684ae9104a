"""Printed lines round handwritten digits taken out of an ink map: the box of a form, a comb of
boxes, and the lines of ruled or squared paper.

A digit written in a form's box reaches the reader with the box round it, and the box, the biggest
and darkest thing in the picture, would be read as the digit. A frame is a rectangle of straight,
thin, solid lines of one thickness: a top and a bottom line of about the same span, joined at both
ends by upright lines reaching from one to the other, parallel and at right angles (a turned
picture's too), meeting in ink at all four corners; a comb has dividers between, where cells of one
width put them, reaching the full height or only rising from the bottom line (their feet). A frame
holds ink of its own (a piece at least :data:`CONTENT` as tall as its inside), so an empty box, a
seven-segment 0 or 8 (whose segments do not meet) or a written 0 (whose corners are round) is never
one. Only the lines' own band is taken out: a stroke that touches or crosses a line loses the few
pixels under it.

The lines of ruled or squared paper run across the picture and past the digits (see
:func:`ruling`). Their band is taken out too, but where a stroke crosses a line it is bridged over
it, at the level of its fainter side, so the digit stays in one piece. Three or more lines across
the picture are paper, whose cells are not taken for boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from digitlab.data.arrays import quantile

LEVEL = 0.15     # ink at least this strong may belong to a frame's line (a box printed in grey)
RUN = 0.06       # a line is found as a run at least this long (x the picture's longer side), 8 px or more,
LONG = 0.12      # ... and is this long at least (x the same; 16 px or more), or half as long when broken
SOLID = 0.9      # ... that has ink in this share of the columns it spans,
THIN = 0.25      # ... is at most this thick (x the frame's side across it),
BEND = 0.5, 0.1  # ... and keeps its middle within this many pixels plus this share of its thickness
                 #     (std) of a straight line (tilt allowed)
ALONE = 0.25, 1.25  # ... and is alone (not thickened past this many times its thickness by a stroke
                    #     touching it) in this share of them at least
PARTNER = 0.7    # ... and shares this share of its columns with another line (the opposite one)
TILT = 0.025     # a line may drift across by this share of its length each way (a turned picture)
GAP = 0.15       # pieces of one line may be this far apart (x their joint length)
MEET = 0.08      # the lines of one frame meet to within this share of its side, plus 3 px
DIVIDER = 0.12   # a comb's divider stands within this share of a cell of where equal cells put it
SKEW = 0.02, 1.5  # a frame's lines are parallel or at right angles to within this slope, plus
                  #     this many pixels over the shorter line's length
NARROW, MAX_CELLS = 0.55, 16  # a comb's cells are at least this wide (x its height), at most this many
FOOT = 0.15, 0.6  # a divider's foot rises this far from the bottom line (x the comb's height), no further
MAX_LINES = 24   # more lines than this one way: squared paper or a table, not boxes round digits
CORNER = 0.75    # the lines meet in ink: this share of the square where they cross is ink
CONTENT = 0.4    # a cell holds a piece of ink at least this tall (x the cell's inner height)
EVEN = 2.5, 2.0  # a frame's boldest line is at most this many times its thinnest, plus this many px
MARGIN = 1.0     # the band taken out reaches this many pixels past the line's measured half-thickness
SPAN = 0.8       # a ruled line (ruled or squared paper) runs across this share of the picture at least,
BEYOND = 0.25    # ... and past the rest of the ink at both ends by this share of the rest's height,
LONGER = 1.5     # ... a flat one this many times longer than the rest is high,
RULE_THIN = 0.2  # ... and at most this thick (x the same height)
REST = 20        # the rest of the ink: this many pixels at least, or there is no digit to free
THINNER = 0.6    # squared paper's lines are at most this thick (x the rest's strokes)
LEVELLED = 0.06  # ... and its flat lines this far off level at most (a slope: about 3.4 degrees)
EDGE = 2         # a line ending this close to the picture's edge runs off it
LEAN = 2         # a stroke crossing a ruled line may move this many pixels sideways across it


@dataclass(frozen=True)
class _Line:
    """A straight line: it spans ``a0 .. a1 - 1`` along its length, its middle at ``mid0`` (at ``a0``)
    and ``mid1`` (at ``a1 - 1``) across it, ``thick`` pixels thick."""

    a0: int
    a1: int
    mid0: float
    mid1: float
    thick: float

    @property
    def length(self) -> int:
        return self.a1 - self.a0

    def mid(self, a: np.ndarray | float) -> np.ndarray | float:
        """Where the line's middle is across it, at ``a`` along it (a number or an array)."""
        return self.mid0 + (a - self.a0) * self.slope

    @property
    def slope(self) -> float:
        return (self.mid1 - self.mid0) / max(1, self.a1 - 1 - self.a0)

    @property
    def at(self) -> float:
        return 0.5 * (self.mid0 + self.mid1)


def _lines(mask: np.ndarray, run: int, least: int) -> list[_Line]:
    """The straight horizontal lines of a uint8 mask (transpose it for the upright ones).

    Runs of ink at least ``run`` long are kept (an opening); in each piece of them, a line is a band
    of rows that fill :data:`SOLID` of the piece's span once widened by :data:`TILT` of its span each way (a
    slightly tilted line fills no single row). A stroke of a digit touching the line joins its
    piece but fills too few columns to join its band.
    """
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((1, run), np.uint8))
    x0, y0, ww, hh = cv2.boundingRect(opened)  # the pieces are labelled in their box only
    if ww < least // 2:
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened[y0 : y0 + hh, x0 : x0 + ww], connectivity=8)
    stats[:, 0] += x0
    stats[:, 1] += y0
    found = []
    # pieces long enough (or half as long: a line broken in two), longest first; none long enough
    # for a whole line: no line
    widths = stats[:, cv2.CC_STAT_WIDTH]
    order = [k for k in np.argsort(-widths).tolist() if k and widths[k] >= least // 2]
    if not order or widths[order[0]] < least:
        return []
    # a frame's line has a partner: the opposite line, over the same columns (in its own piece,
    # or in this one when the piece is tall enough to hold both)
    x0s, x1s = stats[order, 0], stats[order, 0] + widths[order]
    for i, k in enumerate(order):
        x, y, bw, bh = (int(v) for v in stats[k, :4])
        if bh < 8 and bw < SPAN * mask.shape[1]:  # (a line across the picture may be a ruled one)
            shared = np.minimum(x1s, x + bw) - np.maximum(x0s, x)
            shared[i] = 0
            if not (shared >= PARTNER * np.minimum(widths[order], bw)).any():
                continue
        mine = (labels[y - y0 : y - y0 + bh, x - x0 : x - x0 + bw] == k).astype(np.uint8)
        t = max(2, math.ceil(TILT * bw))
        wide = cv2.dilate(cv2.copyMakeBorder(mine, t, t, 0, 0, cv2.BORDER_CONSTANT, value=0),
                          np.ones((2 * t + 1, 1), np.uint8))
        full = np.flatnonzero(wide.sum(axis=1) >= SOLID * bw)  # rows of the widened piece
        if not full.size:
            continue
        breaks = np.flatnonzero(full[1:] - full[:-1] > 1).tolist()
        starts = [int(full[0])] + [int(full[b + 1]) for b in breaks]
        ends = [int(full[b]) for b in breaks] + [int(full[-1])]
        for r0, r1 in zip(starts, ends, strict=True):
            top, bottom = max(0, r0 - 2 * t), min(bh, r1 + 1)  # the band's rows in the piece
            band = mine[top:bottom]
            count = band.sum(axis=0)
            cols = np.flatnonzero(count)
            if cols.size < SOLID * bw:
                continue
            # the line's own thickness and middle: in the columns where it is alone (a stroke
            # touching it thickens a few), trimmed of the few thickest
            thick = quantile(count[cols], 0.3)
            alone = cols[count[cols] <= max(thick + 1, ALONE[1] * thick)]
            if alone.size < ALONE[0] * bw or bw < 5 * thick:
                continue
            pure = alone[np.abs(count[alone] - quantile(count[alone], 0.5)) <= 1]
            if pure.size >= ALONE[0] * bw:  # the course from the columns of the line's own thickness
                alone = pure
            rows = np.arange(top, bottom, dtype=np.float64)
            mid = (rows @ band[:, alone]) / count[alone]
            at = alone.astype(np.float64)
            slope, base = _fit(at, mid)
            off = np.abs(mid - (base + slope * at))
            close = off <= 1.0 + 0.15 * thick  # refit without the columns a touching stroke pulls aside
            if close.sum() >= 0.8 * off.size and not close.all():
                at, mid = at[close], mid[close]
                slope, base = _fit(at, mid)
            if float(np.std(mid - (base + slope * at))) > BEND[0] + BEND[1] * thick:
                continue
            thick = quantile(count[alone], 0.5)
            found.append(_Line(x, x + bw, y + base, y + base + slope * (bw - 1), thick))
        if len(found) > 2 * MAX_LINES:
            break  # squared paper or a table (see frame_mask): enough to tell
    return [ln for ln in _joined(found) if ln.length >= least]


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line y = base + slope * x: (slope, base)."""
    mx, my = float(x.mean()), float(y.mean())
    dx = x - mx
    var = float(dx @ dx)
    slope = float(dx @ (y - my)) / var if var > 0 else 0.0
    return slope, my - slope * mx


def _joined(lines: list[_Line]) -> list[_Line]:
    """Pieces of one line (broken where a stroke crosses it, or where the print is faint) joined:
    pieces in line with each other whose gap is at most :data:`GAP` of their joint length."""
    lines = sorted(lines, key=lambda ln: ln.a0)
    out: list[_Line] = []
    for ln in lines:
        for j, prev in enumerate(out):
            gap = ln.a0 - prev.a1
            longer = prev if prev.length >= ln.length else ln
            if (-2 <= gap <= GAP * (ln.a1 - prev.a0)
                    and abs(float(longer.mid(ln.a0 if longer is prev else prev.a1 - 1))
                            - (ln.mid0 if longer is prev else prev.mid1)) <= 0.5 * longer.thick + 1):
                # the longer piece's course, over both
                a0, a1 = prev.a0, max(prev.a1, ln.a1)
                out[j] = _Line(a0, a1, float(longer.mid(a0)), float(longer.mid(a1 - 1)), longer.thick)
                break
        else:
            out.append(ln)
    return out


def _near(a: float, b: float, side: float, slack: float = 0.0) -> bool:
    """Whether two ends of a frame's lines meet (within :data:`MEET` of the side, 3 px, and ``slack``)."""
    return abs(a - b) <= MEET * side + 3 + slack


class _Printed:
    """An ink map's mask of possible print and its straight lines, each way found once (the
    upright ones when first asked for)."""

    def __init__(self, ink: np.ndarray):
        h, w = ink.shape
        self.mask = cv2.threshold(ink, LEVEL - 1e-6, 1, cv2.THRESH_BINARY)[1].astype(np.uint8)
        self.run = max(8, round(RUN * max(h, w)))
        self.least = max(16, round(LONG * max(h, w)))
        self.flat = _lines(self.mask, self.run, self.least)
        self._upright: list[_Line] | None = None

    @property
    def upright(self) -> list[_Line]:
        if self._upright is None:
            self._upright = _lines(np.ascontiguousarray(self.mask.T), self.run, self.least)
        return self._upright


def frame_mask(ink: np.ndarray, printed: _Printed | None = None) -> np.ndarray | None:
    """An ink map (float (H, W) in [0, 1], 1 = ink) -> a bool mask of its frames' lines, or None."""
    h, w = ink.shape
    printed = _Printed(ink) if printed is None else printed
    mask, flat = printed.mask, printed.flat
    if not 2 <= len(flat) <= MAX_LINES:
        return None  # no frame, or the lines of squared paper or a table: not a form's boxes
    upright = printed.upright
    if not 2 <= len(upright) <= MAX_LINES:
        return None
    out = np.zeros((h, w), bool)
    flat.sort(key=lambda ln: ln.at)
    upright.sort(key=lambda ln: ln.at)
    u_a0, u_a1, u_at, u_thick = (np.array([getattr(v, name) for v in upright], np.float64)
                                 for name in ("a0", "a1", "at", "thick"))
    for i, top in enumerate(flat):
        framed = False
        for bottom in flat[i + 1 :]:
            width = 0.5 * (top.length + bottom.length)
            slack = max(top.thick, bottom.thick)
            if not (_near(top.a0, bottom.a0, width, slack) and _near(top.a1, bottom.a1, width, slack)):
                continue
            height = bottom.at - top.at
            if height < max(8, 3 * max(top.thick, bottom.thick)) or max(top.thick, bottom.thick) > THIN * height:
                continue
            # the upright lines from the top line to the bottom one, within the lines' span (see _near)
            reach = MEET * height + 3
            beside = MEET * width + 3 + u_thick
            sides = [upright[k] for k in np.flatnonzero(
                (np.abs(u_a0 - top.mid(u_at)) <= reach + top.thick)
                & (np.abs(u_a1 - bottom.mid(u_at)) <= reach + bottom.thick)
                & (u_at >= top.a0 - beside) & (u_at <= top.a1 + beside))]
            if (len(sides) < 2 or not _near(sides[0].at, top.a0, width, sides[0].thick)
                    or not _near(sides[-1].at, top.a1, width, sides[-1].thick)):
                continue
            if not (_square(top, bottom, sides[0], sides[-1]) and _cornered(mask, top, bottom, sides[0], sides[-1])):
                continue
            # a comb, or (where its cells hold no ink: a 1 in the middle is no divider) a box
            comb = _comb(sides, top, bottom)
            if len(comb) == 2:  # no dividers: perhaps only their feet, rising from the bottom line
                comb = [comb[0], *_feet(mask, top, bottom, comb[0], comb[-1]), comb[-1]]
            for sides in [comb] if len(comb) == 2 else [comb, [comb[0], comb[-1]]]:
                # the print's thickness: the thinnest line's, or (to judge the frame thin) the middle
                # one's of its outer four (a stroke touching a line thickens it)
                thin = min(v.thick for v in (top, bottom, *sides))
                typical = float(np.median([v.thick for v in (top, bottom, sides[0], sides[-1])]))
                cells = [b.at - a.at for a, b in zip(sides, sides[1:], strict=False)]
                if min(cells) < 3 * typical or typical > THIN * min(cells):
                    continue
                if max(v.thick for v in (top, bottom, sides[0], sides[-1])) > EVEN[0] * thin + EVEN[1]:
                    continue  # printed lines are alike: one far bolder than another is a stroke
                inside = _inside(top, bottom, sides[0], sides[-1])
                if inside is None or not mask[inside].any():
                    continue  # nothing inside: no digit to free
                lines = np.zeros((h, w), bool)
                widest = 1.25 * thin + 1
                for ln in (top, bottom):
                    _band(lines, ln, min(ln.thick, widest), transpose=False)
                for v in sides:
                    _band(lines, v, min(v.thick, widest), transpose=True)
                if _holds_ink(mask, lines, inside):
                    out |= lines
                    framed = True
                    break
            if framed:
                break  # the nearest bottom line that makes a frame with this top line
    return out if out.any() else None


def _square(top: _Line, bottom: _Line, left: _Line, right: _Line) -> bool:
    """Whether the four lines make a rectangle, turned at most a little: top and bottom parallel,
    the sides parallel and at right angles to them (strokes of touching digits seldom are)."""
    def skew(*lines: _Line) -> float:  # a slope measured over a short line is less sure
        return SKEW[0] + SKEW[1] / min(ln.length for ln in lines)

    turn = 0.5 * (top.slope + bottom.slope)
    return (abs(top.slope - bottom.slope) <= skew(top, bottom) and abs(left.slope - right.slope) <= skew(left, right)
            and abs(0.5 * (left.slope + right.slope) + turn) <= skew(top, bottom, left, right))


def _cornered(mask: np.ndarray, top: _Line, bottom: _Line, left: _Line, right: _Line) -> bool:
    """Whether the four lines meet in ink at all four corners: a printed box's corners are sharp,
    a written 0's are round (and a seven-segment 0's segments do not meet)."""
    h, w = mask.shape
    for flat in (top, bottom):
        for side in (left, right):
            x = float(side.mid(flat.at))
            y = float(flat.mid(x))
            r = max(0, int(min(flat.thick, side.thick) - 1) // 2)  # a square inside both lines
            yi, xi = round(y), round(x)
            if not (0 <= yi < h and 0 <= xi < w):
                return False
            # the square, or one a pixel aside (the fitted courses are good to a pixel)
            near = mask[max(0, yi - r - 1) : yi + r + 2, max(0, xi - r - 1) : xi + r + 2].astype(np.float32)
            k = 2 * r + 1
            if near.shape[0] < k or near.shape[1] < k:
                return False
            if cv2.blur(near, (k, k))[r : -r or None, r : -r or None].max() < CORNER:
                return False
    return True


def _comb(sides: list[_Line], top: _Line, bottom: _Line) -> list[_Line]:
    """A frame's outer sides and its dividers: cells of one width (the most that fit), each divider
    as thin as the sides and reaching into the top line and the bottom one. An upright inside that
    is none of them is a digit's stroke."""
    left, right = sides[0], sides[-1]
    inner = [v for v in sides[1:-1] if v.thick <= 1.5 * max(left.thick, right.thick) + 1
             and v.a0 <= float(top.mid(v.at)) + 1 and v.a1 >= float(bottom.mid(v.at)) - 1]
    if not inner:
        return [left, right]
    span = right.at - left.at
    for k in range(len(inner) + 1, 1, -1):
        cell = span / k
        chosen = []
        for i in range(1, k):
            at = left.at + i * cell
            best = min(inner, key=lambda v: abs(v.at - at))
            if abs(best.at - at) > DIVIDER * cell + best.thick:
                break
            chosen.append(best)
        else:
            return [left, *chosen, right]
    return [left, right]


def _feet(mask: np.ndarray, top: _Line, bottom: _Line, left: _Line, right: _Line) -> list[_Line]:
    """The feet of a comb's dividers: short upright lines rising from the bottom line where equal
    cells put them (as many cells as fit, each at least :data:`NARROW` as wide as the comb is
    tall), or none."""
    height = bottom.at - top.at
    thick = min(left.thick, right.thick)
    x0, x1 = float(left.mid(bottom.at)), float(right.mid(bottom.at))
    most = int((x1 - x0) / (NARROW * height))
    for k in range(min(most, MAX_CELLS), 1, -1):
        cell = (x1 - x0) / k
        reach = round(DIVIDER * cell + thick)
        found = []
        for i in range(1, k):
            x = x0 + i * cell
            foot = _foot(mask, round(x), reach, bottom, height, thick)
            if foot is None:
                break
            found.append(foot)
        else:
            return found
    return []


def _foot(mask: np.ndarray, x: int, reach: int, bottom: _Line, height: float, thick: float) -> _Line | None:
    """The upright foot standing on the bottom line within ``reach`` columns of ``x``: its column
    run of ink up from the line is the longest there, :data:`FOOT` of the height, and the
    foot is thin (as thin as the frame's sides, a pixel or two aside)."""
    h, w = mask.shape
    c0, c1 = max(0, x - reach), min(w, x + reach + 1)
    base = int(np.floor(float(bottom.mid(x)) - 0.5 * bottom.thick))  # the bottom line's upper edge
    if c1 - c0 < 1 or base <= 0:
        return None
    top = max(0, round(base - height))
    column = mask[top:base, c0:c1][::-1]  # from the line upward
    # the run of ink up from the line, column by column
    runs = np.where(column.all(axis=0), column.shape[0], column.argmin(axis=0))
    best = int(runs.max())
    if not FOOT[0] * height <= best <= FOOT[1] * height:
        return None  # too short to be a foot, or as tall as a digit's stroke standing on the line
    tall = np.flatnonzero(runs >= 0.8 * best)
    if tall[-1] - tall[0] + 1 > 2 * thick + 2:
        return None  # as wide as a stroke of a digit, not a printed line
    at = c0 + 0.5 * (tall[0] + tall[-1])
    return _Line(base - best, base + 1, at, at, float(tall[-1] - tall[0] + 1))


def _band(out: np.ndarray, line: _Line, thick: float, transpose: bool) -> None:
    """Mark the line's band (``thick`` plus :data:`MARGIN` each side) in ``out``, in place."""
    target = out.T if transpose else out
    n_across, n_along = target.shape
    along = np.arange(max(0, line.a0 - 1), min(n_along, line.a1 + 1))
    if not along.size:
        return
    mid = line.mid(along)
    half = 0.5 * thick + MARGIN
    lo = np.clip(np.floor(mid - half + 0.5), 0, n_across).astype(np.int32)
    hi = np.clip(np.floor(mid + half + 0.5) + 1, 0, n_across).astype(np.int32)
    r0, r1 = int(lo.min()), int(hi.max())
    across = np.arange(r0, r1, dtype=np.int32)[:, None]
    target[r0:r1, along[0] : along[-1] + 1] |= (across >= lo) & (across < hi)


def _inside(top: _Line, bottom: _Line, left: _Line, right: _Line) -> tuple[slice, slice] | None:
    """The rows and columns inside a frame's lines (their bands left out), or None when too small."""
    y0 = math.ceil(top.at + 0.5 * top.thick + MARGIN)
    y1 = math.floor(bottom.at - 0.5 * bottom.thick - MARGIN)
    x0 = math.ceil(left.at + 0.5 * left.thick + MARGIN)
    x1 = math.floor(right.at - 0.5 * right.thick - MARGIN)
    if y1 - y0 < 4 or x1 - x0 < 4:
        return None
    return slice(max(0, y0), y1), slice(max(0, x0), x1)


def _holds_ink(mask: np.ndarray, lines: np.ndarray, inside: tuple[slice, slice]) -> bool:
    """Whether a frame holds a piece of ink of its own, at least :data:`CONTENT` of its inside's height tall."""
    inner = mask[inside] & ~lines[inside]
    n, _, stats, _ = cv2.connectedComponentsWithStats(inner.astype(np.uint8), connectivity=8)
    return n > 1 and int(stats[1:, cv2.CC_STAT_HEIGHT].max()) >= CONTENT * inner.shape[0]


def ruling(ink: np.ndarray, printed: _Printed | None = None) -> tuple[list[_Line], list[_Line]]:
    """The lines of ruled or squared paper in an ink map: (the flat ones, the upright ones).

    Candidates are the straight lines (see :func:`_lines`) that run across :data:`SPAN` of the
    picture at least; the rest of the ink is what lies outside all of them. They are the paper's:

    - a flat one that runs past the rest at both ends by :data:`BEYOND` of the rest's height and is
      :data:`LONGER` times longer than the rest is high (the lines of ruled paper, an underline):
      no stroke of a digit reaches past the digit it belongs to, so a long straight stroke of a
      tightly cropped digit, or the bars of touching digits joined into one, are none;
    - a flat one as long, thinner than the rest's strokes (:data:`THINNER`), that runs off the
      picture at both ends (within :data:`EDGE` pixels) and past the rest at one end at least: a
      line of ruled paper beside a digit near the picture's edge (a tightly cropped 7's bar is
      drawn with the pen of its stem);
    - all of them, flat and upright, when there are two or more (one flat at least), all printed
      alike (:func:`_printed_alike`) and thinner than the rest's strokes: ruled or squared paper,
      its lines crossing the digit or running beside it. A 4's bar and stem are two, but as thick
      as its other strokes; so are the bars of touching 7s.

    Any of them is at most :data:`RULE_THIN` of the rest's height thick.
    """
    h, w = ink.shape
    printed = _Printed(ink) if printed is None else printed
    flat = [ln for ln in printed.flat if ln.length >= SPAN * w]
    if not flat:
        return [], []
    upright = [v for v in printed.upright if v.length >= SPAN * h]
    bands = np.zeros((h, w), bool)
    for ln in flat:
        _band(bands, ln, ln.thick, transpose=False)
    for v in upright:
        _band(bands, v, v.thick, transpose=True)
    rest = (printed.mask.astype(bool) & ~bands).astype(np.uint8)
    rows, cols = np.nonzero(rest)
    if rows.size < REST:
        return [], []  # nothing but lines: no digit to free
    # the rest's extent, a few stray pixels (a line's soft edge, a speck) left out
    top, bottom = quantile(rows, 0.005), quantile(rows, 0.995) + 1
    left, right = quantile(cols, 0.005), quantile(cols, 0.995) + 1
    height = bottom - top
    flat = [ln for ln in flat if ln.thick <= RULE_THIN * height]
    upright = [v for v in upright if v.thick <= RULE_THIN * height]
    if not flat:
        return [], []
    padded = cv2.copyMakeBorder(rest, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    inside = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_5)[1:-1, 1:-1][rows, cols]
    stroke = 2.0 * quantile(inside, 0.9)  # about the width of the rest's strokes
    if (len(flat) + len(upright) >= 2 and _printed_alike(flat, upright)
            and all(ln.thick <= THINNER * stroke for ln in (*flat, *upright))):
        return flat, upright
    beyond = BEYOND * height
    return [ln for ln in flat if ln.length >= LONGER * height and (
        (ln.a0 <= left - beyond and ln.a1 >= right + beyond) or (
        ln.thick <= THINNER * stroke and ln.a0 <= EDGE and ln.a1 >= w - EDGE
        and (ln.a0 <= left - beyond or ln.a1 >= right + beyond)))], []


def _printed_alike(flat: list[_Line], upright: list[_Line]) -> bool:
    """Whether lines are printed ones of one sheet: of one thickness (:data:`EVEN`), the flat ones
    parallel and at most :data:`LEVELLED` off level, the upright ones at right angles to them (see
    :func:`_square`). Pieces of a bold stroke's edge taken for lines are seldom all of that."""
    lines = (*flat, *upright)
    thin = min(ln.thick for ln in lines)
    if max(ln.thick for ln in lines) > EVEN[0] * thin + EVEN[1]:
        return False
    turn = float(np.median([ln.slope for ln in flat]))
    if abs(turn) > LEVELLED:
        return False
    return (all(abs(ln.slope - turn) <= SKEW[0] + SKEW[1] / ln.length for ln in flat)
            and all(abs(v.slope + turn) <= SKEW[0] + SKEW[1] / v.length for v in upright))


def _without_ruling(ink: np.ndarray, flat: list[_Line], upright: list[_Line]) -> np.ndarray:
    """The ink map with these ruled lines taken out; where a stroke crosses a line (ink on both
    sides of it, :data:`LEAN` pixels aside at most), the stroke is bridged over it at the fainter
    side's level."""
    bands = np.zeros(ink.shape, bool)
    for ln in flat:
        _band(bands, ln, ln.thick, transpose=False)
    for v in upright:
        _band(bands, v, v.thick, transpose=True)
    clean = np.where(bands, np.float32(0.0), ink)
    out = clean.copy()
    for lines, transpose in ((flat, False), (upright, True)):
        for ln in lines:
            _bridge(out, ink, clean, ln, transpose)
    return out


def _bridge(out: np.ndarray, ink: np.ndarray, clean: np.ndarray, line: _Line, transpose: bool) -> None:
    """Put back, in place, the ink of the strokes crossing a ruled line's band (see :func:`_band`),
    no darker than the stroke is on its fainter side."""
    target, before, after = (a.T if transpose else a for a in (out, ink, clean))
    n_across, n_along = target.shape
    along = np.arange(max(0, line.a0 - 1), min(n_along, line.a1 + 1))
    if not along.size:
        return
    mid = line.mid(along)
    half = 0.5 * line.thick + MARGIN
    lo = np.clip(np.floor(mid - half + 0.5), 0, n_across).astype(np.int32)
    hi = np.clip(np.floor(mid + half + 0.5) + 1, 0, n_across).astype(np.int32)
    zero = np.float32(0.0)
    side_a = np.where(lo > 0, after[np.maximum(lo - 1, 0), along], zero)
    side_b = np.where(hi < n_across, after[np.minimum(hi, n_across - 1), along], zero)
    reach = np.ones((1, 2 * LEAN + 1), np.uint8)
    crossing = np.minimum(cv2.dilate(side_a[None], reach)[0], cv2.dilate(side_b[None], reach)[0])
    # bridged: where the stroke goes on at both sides, in the columns it reaches at one side at least
    crosses = (crossing >= LEVEL) & ((side_a >= LEVEL) | (side_b >= LEVEL))
    if not crosses.any():
        return
    r0, r1 = int(lo.min()), int(hi.max())
    across = np.arange(r0, r1, dtype=np.int32)[:, None]
    inside = (across >= lo) & (across < hi) & crosses
    cols = slice(int(along[0]), int(along[-1]) + 1)
    block = target[r0:r1, cols]
    block[inside] = np.maximum(block, np.minimum(before[r0:r1, cols], crossing[None, :]))[inside]


def without_frames(ink: np.ndarray) -> np.ndarray:
    """The ink map with its frames' lines and the lines of ruled or squared paper taken out (see
    the module's docstring); the same array, unchanged, without them."""
    printed = _Printed(ink)
    # three lines or more across the picture: ruled or squared paper, whose cells are no boxes
    paper = sum(ln.length >= SPAN * ink.shape[1] for ln in printed.flat) >= 3
    lines = None if paper else frame_mask(ink, printed)
    out = ink
    if lines is not None:
        out = ink.copy()
        out[lines] = 0.0
        printed = _Printed(out)  # what is left of the print: squared paper round a comb of its cells
    flat, upright = ruling(out, printed)
    return _without_ruling(out, flat, upright) if flat else out
