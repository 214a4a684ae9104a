"""Turning a user's picture into a 28x28 MNIST-style input.

MNIST digits are white ink on black, anti-aliased (grey edges), the ink scaled to fit a 20x20 box
(aspect kept) and placed in 28x28 so that its centre of mass is at the centre. Every way a picture
reaches a model (the CLI, the server, the page, the Python API) goes through :func:`load_digit` or
:func:`to_mnist`, which are :func:`digit_from_ink` applied to the ink map of :func:`ink_image`.

:func:`ink_image`, the picture's ink:

1. **Pixels.** EXIF orientation is applied (photos), any mode is read (1, L, P, LA, RGB, RGBA,
   CMYK, 16-bit, float); a big JPEG is decoded at reduced scale and straight to grey. The picture is
   analysed at :data:`WORK_SIDE` pixels a side at most (area-averaged down) and at
   :data:`DETAIL_SIDE` at least: a thumbnail (8 px tall and up) is enlarged (bicubic) first, so that a
   soft or tiny digit is measured on a grid fine enough for its grey levels.
2. **Alpha.** Transparent pixels are composited onto a backdrop that contrasts with the opaque
   content: a canvas export with dark strokes on a transparent background lands on white, one with
   white strokes lands on black, and a mostly-opaque picture gets its own paper colour.
3. **Polarity.** A quadratic surface in x and y, fitted robustly to the picture's outer ring
   (nearly always background), predicts the paper or screen under the digit; whether the strongest
   departures from it are darker or lighter decides the polarity. The result is always white ink
   on black. A picture whose ring strays far from any one surface, or whose surface is far from the
   picture's own median, is fitted again from the ring's points near that median (mostly paper):
   the ring may hold a box's line. A picture cropped at a printed box (a thin line of one polarity
   just inside three or four of its edges) is first given a margin of its own paper.
4. **Background.** A grey-scale morphological opening with a window wider than the thickest
   stroke (at least a quarter of the picture) estimates the background everywhere, so shadows,
   gradient lighting and vignetting cancel out. For dark ink on paper, contrast is measured
   relative to the local paper brightness: ink in a shadow counts as dark as ink in the light.
5. **Levels, not a mask.** Two levels are estimated robustly: the ink's (a high percentile of the
   biggest blob, so a dark speck does not set the scale) and the paper texture's (a high percentile
   away from the ink). The ink map is a linear ramp between them, so an anti-aliased, blurred or faint
   stroke keeps its grey levels and stays in one piece; only where even the lightly smoothed contrast
   stays under the texture's level is it zero. Printed boxes round the digits (a form's box, a comb
   of boxes) and the lines of ruled or squared paper are then taken out, strokes crossing a ruled
   line bridged over it (:mod:`digitlab.data.frames`).

:func:`digit_from_ink`, one digit's ink -> MNIST:

6. **The digit.** Connected parts of the ink map are used only to choose what belongs to the digit:
   its biggest part, and the parts near it as dark as it (a 5's flag, a 4's second stroke); specks,
   far blobs and haze more than about one MNIST pixel from the strokes' cores are dropped. No ink
   at all is an error (:class:`~digitlab.errors.ImageError`), never a guess.
7. **Stroke width.** Strokes thinner than :data:`STROKE_MIN` px at MNIST scale (a hairline on a
   big picture) are thickened with a distance transform to about :data:`STROKE_TARGET` px, MNIST's
   typical width; MNIST's own thin digits are left alone.
8. **MNIST geometry.** The ink is cropped to where it reaches :data:`BOX_LEVEL` (a blurred digit's
   faint halo does not shrink it), scaled (area-averaged) so its longer side is 20 px, and put into
   28x28 with its centre of mass moved to pixel (14, 14), by a whole-pixel shift that never pushes
   ink out of the frame -- the same geometry as the real MNIST images.

Nothing here imports torch: the ONNX-only server uses it too. NumPy, Pillow (decoding) and OpenCV
(resizing, blur, morphology, connected parts, distance transform) do the work.
"""

from __future__ import annotations

import errno
import io
import math
import os
import stat
import warnings
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitlab.data.arrays import largest, of_labels, quantile, zero_pad
from digitlab.data.frames import without_frames
from digitlab.errors import ImageError, ImageTooLargeError, NotAnImageError

cv2.setNumThreads(1)  # pictures are small: threads cost more than they save (servers run their own workers)

MAX_PIXELS = 40_000_000  # refuse larger pictures before decoding their pixels
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm", ".pfm")

#: Pillow decoders :func:`open_image` will use (others, e.g. EPS, are refused as "not an image").
OPEN_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")
#: Pictures are analysed at most this many pixels a side (area-averaged down beforehand) ...
WORK_SIDE = 384
#: ... and at least this many on the longer side (smaller ones are enlarged, bicubic).
DETAIL_SIDE = 112
#: Polarity and stroke width are judged on a thumbnail this many pixels a side.
THUMB_SIDE = 64
#: The smallest picture that can hold a digit, along its longer side ...
MIN_SIDE = 8
MIN_THIN = 3  # ... and at least this many along the other (a 1 cropped at its ink is narrow)

BOX = 20  # MNIST: the ink fits a 20x20 box ...
SIZE = 28  # ... inside a 28x28 image ...
CENTRE = 14.0  # ... with its centre of mass at pixel (14, 14) (row, column indices)
STROKE_MIN = 1.2  # thinner strokes (px at MNIST scale) are thickened ...
STROKE_TARGET = 2.0  # ... to about this width (MNIST's median is ~2.0 px at the 50% level)

LOW, HIGH = 0.06, 0.85  # the ink map's ramp, as fractions of the ink's contrast (see _ink_map)
HIGH_SMALL = 0.6  # ... for an enlarged thumbnail, whose strokes are thinner than its pixels
STRONG, DARK = 0.5, 0.8  # ink-map levels of a stroke's core, and of the pen's own darkness
EVEN = 0.02  # a picture whose border strays less than this from a smooth surface is evenly lit
UNSURE = 0.05  # ... and one whose border strays more than this may have ink along its edge
BLOCKY_SIDE = 1024  # pictures up to this many pixels a side may be a thumbnail enlarged by repeating its pixels
FLAT = 0.03  # ... as may one whose surface passes this close to less than half of the border
EDGE_DEPTH, EDGE_CONTRAST, EDGE_SOLID = 0.04, 0.15, 0.9  # a box's line along an edge: within this
# share of the side, this much darker (or lighter) than the paper inside it, along this share of the side
BOX_MARGIN = 0.08  # ... and then a margin of paper this wide (x the longer side) is added
INKY, TOUCH = 0.6, 0.05  # a picture cropped at its ink: ink this far from the paper (x the ink's
                          # contrast) in this share of its edge; it gets the same margin ...
FAINT, STROKE_DEPTH = 0.35, 0.25  # ... when what meets the edge, ink this far from the paper at least,
                                  # is no deeper than this (x the longer side) from its own edge
DESK, SHEET, DESK_DEPTH = 0.1, 0.33, 0.04  # a sheet on a desk: the desk this much of the picture at
                                           # least, the sheet this much, the desk this deep (x the side),
DESK_EDGE = 0.2  # ... and along this much of the picture's edge at least
SOLID = 0.15  # ... the sheet this deep (x the side): a broad piece of paper, not strokes
HELD, BETWEEN = 0.005, 0.1  # the sheet holding dark pieces of this much of the picture, and levels
                            # between the desk's and the sheet's in no more than this much of it
TINY = 12  # a thumbnail this many pixels tall or fewer: its blurred strokes may be twice as deep
OFF = 0.15  # a border surface this far from the picture's median at its centre may be ink, not paper
NEAR = 0.3  # paper texture is measured away from where the contrast reaches this
JOIN = 0.4  # ink-map level that is part of a stroke however far from its core
BOX_LEVEL = 0.1  # the digit's box: where its ink reaches this level
MIN_CONTRAST = 0.05  # ink fainter than this (5% of black-to-white) is no ink
DETAIL = 80  # small crops are upsampled to at least this many pixels a side before thickening

_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_BLANK_HINT = "use a picture with one dark digit on light paper, or a light digit on a dark background"


def _describe(source) -> str:
    """How an error names a picture: its path (a very long one shortened), or 'the given data'."""
    if isinstance(source, Image.Image):
        return "the given image"
    if isinstance(source, np.ndarray):
        return "the given array"
    if not isinstance(source, str | os.PathLike):
        return "the given data"
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text if len(text) <= 240 else f"{text[:160]}...{text[-60:]}"


def _too_large(label: str, max_pixels: int, size: tuple[int, int] | None = None) -> ImageTooLargeError:
    if size is None:
        what = f"more than {max_pixels:,} pixels"
    else:
        what = f"{size[0]} x {size[1]} = {size[0] * size[1]:,} pixels, the limit is {max_pixels:,}"
    return ImageTooLargeError(f"{label} is too large ({what}); scale it down first")


def open_image(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS,
               draft: int | None = None, grey: bool = False) -> Image.Image:
    """Open a picture (path or bytes), refusing non-images and anything over ``max_pixels``.

    The size is checked from the header, before any pixel is decoded (and Pillow's own
    decompression-bomb guard is turned into the same error). An animated GIF/WebP gives its first
    frame. The returned image is fully loaded. Whatever a decoder raises for a hostile or broken
    file (OSError, ValueError for a text or ICC chunk past Pillow's limits, SyntaxError, EOFError,
    MemoryError, decompression bombs...) becomes an :class:`~digitlab.errors.ImageError` subclass here:
    :class:`~digitlab.errors.NotAnImageError` when it cannot be opened,
    :class:`~digitlab.errors.ImageTooLargeError` when it is too large, ImageError when it is damaged.
    ``draft``: a big JPEG may be decoded at 1/2, 1/4 or 1/8 scale, keeping its longer side at least
    this long (much faster; what :func:`load_digit` does, since :func:`to_mnist` looks at no more than
    :data:`WORK_SIDE`); ``grey``: a colour JPEG may be decoded straight to grey (mode L).
    """
    label = _describe(source)
    if isinstance(source, bytes | bytearray | memoryview):
        fp: io.BytesIO | Path = io.BytesIO(bytes(source))
    elif not isinstance(source, str | os.PathLike):
        raise TypeError(f"expected a path or the file's bytes, got {type(source).__name__}")
    else:
        if not os.fspath(source):
            raise ImageError("no file name given (an empty path)")
        fp = Path(source)
        mode = _stat_mode(fp, label)
        if mode is None:
            if os.path.islink(fp):
                raise ImageError(f"{label} is a broken symbolic link or a symbolic link loop")
            raise ImageError(f"{label}: no such file")
        if stat.S_ISDIR(mode):
            raise ImageError(f"{label} is a folder, not an image file")
        if not stat.S_ISREG(mode):  # a FIFO, socket or device: opening it could block for ever
            raise NotAnImageError(f"{label} is not a regular file (a FIFO, socket or device), not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(fp, formats=OPEN_FORMATS)
        except UnidentifiedImageError:
            raise NotAnImageError(f"{label} is not an image (expected a PNG, JPEG, BMP, GIF or WebP file)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
            raise _too_large(label, max_pixels) from None
        except Exception as e:  # any decoder failure (OSError, ValueError, SyntaxError...) is the file's
            raise NotAnImageError(f"{label} cannot be read ({_reason(e)})") from None
        width, height = image.size
        if width * height > max_pixels:
            image.close()
            raise _too_large(label, max_pixels, (width, height))
        if width == 0 or height == 0:
            image.close()
            raise ImageError(f"{label} is an empty image ({width} x {height} pixels)")
        try:
            if image.format in ("JPEG", "MPO") and (grey or draft):
                mode = "L" if grey and image.mode in ("RGB", "YCbCr") else image.mode
                size = (width, height)
                if draft and max(width, height) >= 2 * draft:
                    f = draft / max(width, height)
                    size = (math.ceil(width * f), math.ceil(height * f))
                if mode != image.mode or size != (width, height):
                    image.draft(mode, size)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
                image.load()
                frame = image.copy()
                image.close()
                image = frame
            else:
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
            raise _too_large(label, max_pixels) from None
        except Exception as e:  # any decoder failure (OSError, ValueError, SyntaxError...) is the file's
            raise ImageError(f"{label} is a damaged image ({_reason(e)}); re-save or re-export it") from None
    return image


def _stat_mode(path: Path, label: str) -> int | None:
    """The file's mode (following links), None when there is nothing there (or a broken link); an
    :class:`~digitlab.errors.ImageError` for a path the file system refuses (a name too long, a
    folder it may not enter), whatever Python's version does with such errors in ``Path.exists``."""
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None
        raise ImageError(f"{label} cannot be opened ({e.strerror or _reason(e)})") from None


def _reason(e: Exception) -> str:
    """A decoder's complaint on one short line."""
    text = " ".join(str(e).split())[:200]
    return text or type(e).__name__


def _exif_upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (phone photos), if there is one."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF: leave the picture as it is
        return image
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(image)
    return image


def _finite(f: np.ndarray) -> np.ndarray:
    """A float picture with NaN (no data) or infinities in it: NaN becomes the picture's median (its
    paper, not ink), an infinity its brightest or darkest finite level; a picture with no finite
    value at all becomes black (blank)."""
    bad = ~np.isfinite(f)
    if not bad.any():
        return f
    good = f[~bad]
    if not good.size:
        return np.zeros_like(f)
    f[np.isnan(f)] = np.median(good)
    f[np.isposinf(f)] = good.max()
    f[np.isneginf(f)] = good.min()
    return f


def _pil_grey(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image -> (grey, alpha or None), uint8 for 8-bit pictures, float32 [0, 1] for wide ones."""
    image = _exif_upright(image)
    if image.mode in _WIDE_MODES:
        a = _finite(np.asarray(image).astype(np.float32))
        top = float(a.max()) if a.size else 0.0
        if image.mode.startswith("I;16") or top > 255:
            scale = 65535.0
        elif image.mode == "F" and top <= 1.0:
            scale = 1.0
        else:
            scale = 255.0
        return np.clip(a / np.float32(scale), 0.0, 1.0), None
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        if image.mode == "La":  # premultiplied: Pillow converts it to LA only
            image = image.convert("LA")
        if image.mode != "LA":
            image = image.convert("RGBA").convert("LA")
        a = np.asarray(image)
        return a[..., 0], a[..., 1]
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image), None


def _array_grey(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A numpy picture ((H, W), (H, W, 1|2|3|4); uint8, uint16, bool or float) -> (grey, alpha)."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ValueError(f"expected an image array of shape (H, W) or (H, W, 1|2|3|4), got {a.shape}")
    if a.dtype == np.bool_:
        f = a.astype(np.float32)
    elif a.dtype == np.uint8:
        f = a
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / np.float32(65535.0)
    elif np.issubdtype(a.dtype, np.number):
        f = _finite(a.astype(np.float32))
        top = float(f.max()) if f.size else 0.0
        if top > 255:
            f /= np.float32(65535.0)
        elif top > 1:
            f /= np.float32(255.0)
        f = np.clip(f, 0.0, 1.0)
    else:
        raise ValueError(f"expected a numeric image array, got dtype {a.dtype}")
    if f.ndim == 2:
        return f, None
    channels = f.shape[2]
    if channels == 2:
        return f[..., 0], f[..., 1]
    if f.dtype == np.uint8:
        grey = cv2.cvtColor(np.ascontiguousarray(f[..., :3]), cv2.COLOR_RGB2GRAY)
    else:
        grey = (f[..., :3] @ _LUMA).astype(np.float32)
    return grey, (f[..., 3] if channels == 4 else None)


def _as_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) * np.float32(1 / 255)
    return np.clip(a.astype(np.float32, copy=False), 0.0, 1.0)


def _work_size(grey: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Grey and alpha at the analysis size, float32 [0, 1], and the scale factor (work px per source px)."""
    h, w = grey.shape
    if max(h, w) < MIN_SIDE or min(h, w) < MIN_THIN:
        raise ImageError(f"the image is too small to hold a digit ({w} x {h} pixels, need {MIN_SIDE} or more "
                         f"along its longer side and {MIN_THIN} along the other)")
    side = max(h, w)
    if side > WORK_SIDE:
        scale, method = WORK_SIDE / side, cv2.INTER_AREA
    elif side < DETAIL_SIDE:
        scale, method = DETAIL_SIDE / side, cv2.INTER_CUBIC
    else:
        return _as_float(grey), (None if alpha is None else _as_float(alpha)), 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = _as_float(cv2.resize(np.ascontiguousarray(grey), size, interpolation=method))
    if alpha is not None:
        alpha = _as_float(cv2.resize(np.ascontiguousarray(alpha), size, interpolation=method))
    return grey, alpha, size[0] / w


def _composite(grey: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Put transparent pixels on a backdrop that contrasts with what is drawn.

    Mostly transparent (a canvas export): the opaque pixels are the ink, so the backdrop is white
    under dark ink and black under light ink. Mostly opaque: the opaque pixels are the paper, and
    the transparent ones become paper too.
    """
    if alpha is None or float(alpha.min()) >= 0.99:
        return grey
    opaque = alpha > 0.5
    if not opaque.any():
        return np.ones_like(grey)  # nothing drawn at all: blank
    content = float(np.median(grey[opaque]))
    if float(alpha.mean()) < 0.5:
        backdrop = 1.0 if content < 0.5 else 0.0
    else:
        backdrop = content
    return grey * alpha + np.float32(backdrop) * (1.0 - alpha)


def _border_surface(smooth: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """A quadratic in x and y fitted robustly to the picture's outer ring (10% of its shorter side).

    The ring is nearly always background, so the surface says what the paper or screen would look
    like under the digit, gradient lighting included. Returns the surface, the spread of the ring
    about it (robust sigma) and the quadratic's coefficients.
    """
    h, w = smooth.shape
    rows, cols, design = _ring(h, w)
    values = smooth[rows, cols].astype(np.float64)
    coef, sigma, _ = _robust_fit(values, design, np.ones(values.size, bool))
    if np.count_nonzero(np.abs(values - design @ coef) < FLAT) < 0.5 * values.size:
        # the surface passes close to few of the ring's points: the ring may be paper of one level
        # with ink along the edges (a digit cropped tight, its strokes touching the edges; in a
        # thumbnail, that is much of the ring). Start again from the ring's most common level, and
        # keep that fit where it holds half the ring, more tightly
        near = np.abs(values - _densest(values)) < FLAT
        if near.sum() >= 12:
            again, spread, held = _robust_fit(values, design, near)
            if held.sum() >= 0.5 * values.size and spread < sigma:
                return _surface(again, (h, w)), spread, again
    middle = quantile(smooth[::2, ::2].ravel(), 0.5)  # the picture's own median: mostly paper
    off = abs(float(coef[0]) - middle) > OFF  # the surface's level at the centre is not the paper's
    if sigma > UNSURE or off:
        # the ring strays far from any one surface, or the surface found is not the paper: much
        # of the ring may be ink (a box's line just inside the edge of a picture cropped round the
        # box). Start again from the ring's values near the picture's median, and keep that fit
        # where it is the closer one, or the paper's, for enough of the ring
        near = np.abs(values - middle) < UNSURE
        if near.sum() >= 12:
            again, spread, held = _robust_fit(values, design, near)
            if held.sum() >= (0.3 if off else 0.5) * values.size and (off or spread < sigma):
                coef, sigma = again, spread
    return _surface(coef, (h, w)), sigma, coef


def _densest(values: np.ndarray) -> float:
    """The median of the values in the window of width ``FLAT`` that holds the most of them: the
    most common level."""
    v = np.sort(values)
    counts = np.searchsorted(v, v + FLAT, side="right") - np.arange(v.size)
    first = int(np.argmax(counts))
    return float(v[first + counts[first] // 2])


def _robust_fit(values: np.ndarray, design: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """The quadratic fitted to the ring's values, refitted on the points near it: (coefficients,
    robust sigma, the points kept), starting from the points in ``keep``."""
    coef = np.zeros(6)
    sigma = 0.0
    ridge = 1e-9 * np.eye(6)
    for _ in range(3):
        a = design[keep]
        # normal equations (6 x 6), solved by Cholesky: cheap for a tiny problem
        _, coef = cv2.solve(np.dot(a.T, a) + ridge, np.dot(values[keep], a), flags=cv2.DECOMP_CHOLESKY)
        coef = coef[:, 0]
        dev = np.abs(values - design @ coef)
        sigma = 1.4826 * quantile(dev[keep], 0.5)
        new = dev < max(2.5 * sigma, 0.03)
        if new.sum() < 12 or np.array_equal(new, keep):
            break
        keep = new
    return coef, sigma, keep


@lru_cache(maxsize=64)
def _ring(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sample points of an (H, W) picture's outer ring and the quadratic's terms at them (the
    same for every picture of that size: kept, so pictures of one size share them)."""
    b = max(1, round(0.1 * min(h, w)))
    # about 32 samples along each side and 4 across the ring: a few hundred points
    step_r, step_c, step_b = max(1, h // 32), max(1, w // 32), max(1, b // 4)
    across = np.arange(0, b, step_b)
    r_all, c_all = np.arange(0, h, step_r), np.arange(0, w, step_c)
    edge_r = np.concatenate([across, h - 1 - across])
    edge_c = np.concatenate([across, w - 1 - across])
    rows = np.concatenate([np.repeat(edge_r, c_all.size), np.tile(r_all, edge_c.size)])
    cols = np.concatenate([np.tile(c_all, edge_r.size), np.repeat(edge_c, r_all.size)])
    y, x = _axis(h)[rows].astype(np.float64), _axis(w)[cols].astype(np.float64)
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    for a in (rows, cols, design):
        a.setflags(write=False)
    return rows, cols, design


@lru_cache(maxsize=64)
def _axis(n: int) -> np.ndarray:
    """n points spanning [-1, 1], float32 (read-only, shared)."""
    a = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    a.setflags(write=False)
    return a


def _surface(coef: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The quadratic of :func:`_border_surface` on an (H, W) grid spanning [-1, 1] both ways."""
    c0, c1, c2, c3, c4, c5 = (np.float32(v) for v in coef)
    y2 = _axis(shape[0])[:, None]
    x2 = _axis(shape[1])[None, :]
    return (c0 + c2 * y2 + c5 * y2 * y2) + x2 * (c1 + c3 * x2 + c4 * y2)


def _extreme(a: np.ndarray) -> float:
    """Mean of the largest values of ``a`` (the top 0.02%, at least 9): how bright the ink is."""
    flat = a.ravel()
    if flat.size > 60_000:  # every other row and column: plenty for a stroke's brightest pixels
        flat = a[::2, ::2].ravel()
    k = min(flat.size, max(9, flat.size // 5000))
    return float(largest(flat, k).mean())


def _local_background(v: np.ndarray, window: float = 0.25) -> np.ndarray:
    """Background under bright ink: a grey opening, its window a fraction of the picture's longer side.

    Computed on a block-minimum thumbnail (at most 64 px a side) and upsampled bilinearly; strokes
    narrower than the window vanish from it, shadows and lighting gradients stay.
    """
    h, w = v.shape
    d = max(1, math.ceil(max(h, w) / 64))
    hh, ww = math.ceil(h / d) * d, math.ceil(w / d) * d
    small = v
    if d > 1:  # block minimum: an erosion, sampled every d pixels
        if (hh, ww) != (h, w):
            v = cv2.copyMakeBorder(v, 0, hh - h, 0, ww - w, cv2.BORDER_REPLICATE)
        small = cv2.erode(v, np.ones((d, d), np.uint8), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[::d, ::d]
    k = max(3, round(window * max(h, w) / d))
    # past the edges: an odd reflection continues a lighting gradient (so the opening follows it to
    # the edge); the plain mirror stops ink near the edge from turning into a dark dip there
    pad = min(k, *small.shape) - 1
    small = np.ascontiguousarray(small, np.float32)
    padded = small
    if pad > 0:
        mirror = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        edge = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        padded = np.maximum(2 * edge - mirror, mirror)
    kernel = np.ones((k, k), np.uint8)
    opened = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_REPLICATE)
    opened = np.ascontiguousarray(opened[pad : pad + small.shape[0], pad : pad + small.shape[1]])
    if d == 1:
        return opened
    return cv2.resize(opened, (ww, hh), interpolation=cv2.INTER_LINEAR)[:h, :w]


def _thickest_stroke(mask: np.ndarray) -> float:
    """Radius in pixels of the widest disc that fits in the ink (blobs touching the border aside)."""
    d = max(1, math.ceil(max(mask.shape) / 128))
    if d > 1:  # a coarser grid is plenty for an upper bound
        h, w = mask.shape[0] // d * d, mask.shape[1] // d * d
        mask = mask[:h, :w].reshape(h // d, d, w // d, d).any(axis=(1, 3))
    m = mask.astype(np.uint8)
    _, labels = cv2.connectedComponents(m, connectivity=8)
    edge = np.unique(_rim(labels))
    edge = edge[edge > 0]
    inner = m.astype(bool)
    if edge.size:
        inner &= ~of_labels(labels, edge)
    if inner.sum() < 10:
        inner = m.astype(bool)
    if not inner.any():
        return 0.0
    padded = cv2.copyMakeBorder(inner.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_5)[1:-1, 1:-1][inner]
    return quantile(dist, 0.99) * d


def _blank(why: str) -> ImageError:
    return ImageError(f"the image is blank ({why}); {_BLANK_HINT}")


def _ink_map(grey: np.ndarray, enlarged: float = 1.0) -> np.ndarray:
    """Grey picture (float32 [0, 1]) -> ink map float32 [0, 1]: 1 = the pen's own darkness, 0 = paper.

    A desk round a photographed sheet is painted over in the sheet's level first
    (:func:`_off_the_desk`). A picture cropped at a printed box, its lines along the picture's edges,
    or cropped at its ink (:func:`_cropped_at_ink`) is given a margin of its paper (and the ink map
    cropped back): the border is then paper, as it is elsewhere.
    """
    grey = _off_the_desk(grey)
    paper = _edge_box(grey)
    if paper is None:
        paper = _cropped_at_ink(grey, enlarged)
    if paper is None:
        return _ink_map_of(grey, enlarged)
    pad = max(4, round(BOX_MARGIN * max(grey.shape)))
    wider = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=paper)
    return np.ascontiguousarray(_ink_map_of(wider, enlarged)[pad:-pad, pad:-pad])


def _rim(a: np.ndarray) -> np.ndarray:
    """The picture's outermost pixels, each once: top and bottom rows, then the sides between."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def _off_the_desk(grey: np.ndarray) -> np.ndarray:
    """A sheet of paper photographed on a darker desk (the desk along some of the picture's edges)
    -> the picture with the desk painted over in the sheet's own level; any other picture as it is.

    On a small copy split at Otsu's level: the light part's biggest piece, with the dark pieces it
    encloses (the digit), is the sheet, a third of the picture at least; the dark pieces that reach
    the edges are the desk, at least :data:`DESK` of the picture and deep (a stroke of a digit
    cropped at its ink is not), and the sheet is much lighter than the desk."""
    h, w = grey.shape
    t = max(1.0, max(h, w) / THUMB_SIDE)
    small = cv2.resize(grey, (max(1, round(w / t)), max(1, round(h / t))), interpolation=cv2.INTER_AREA)
    _, light = cv2.threshold(np.round(small * 255).astype(np.uint8), 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    edge = _rim(light)
    if edge.all() or not edge.any():
        return grey
    _, dark = cv2.connectedComponents((1 - light).astype(np.uint8), connectivity=4)
    outside = np.unique(_rim(dark))
    outside = outside[outside > 0]
    if outside.size > 2:  # a desk is one piece, or two on opposite sides; not the cells of a grid
        return grey
    desk = np.isin(dark, outside)
    along = _rim(desk)
    if desk.mean() < DESK or along.mean() < DESK_EDGE:  # a stroke or a line only meets the edge here and there
        return grey
    sheet = ~desk
    _, pieces = cv2.connectedComponents(sheet.astype(np.uint8), connectivity=4)
    sizes = np.bincount(pieces.ravel())[1:]
    if not sizes.size or sizes.max() < SHEET * sheet.size:
        return grey
    held = (dark > 0) & ~desk  # the dark pieces the sheet holds: the digit is on the sheet
    if held.mean() < HELD or held.mean() > 0.25 * sheet.mean():  # a sheet is mostly paper
        return grey
    solid = cv2.distanceTransform(sheet.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    if float(solid.max()) < SOLID * max(small.shape):  # strokes, a grid's lines: not a sheet
        return grey
    depth = cv2.distanceTransform(desk.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    if float(depth.max()) < DESK_DEPTH * max(small.shape):
        return grey
    paper, floor = float(np.median(small[light.astype(bool) & sheet])), float(np.median(small[desk]))
    gap = paper - floor
    between = (small > floor + 0.25 * gap) & (small < paper - 0.25 * gap)
    if gap < 0.25 or between.mean() > BETWEEN:  # a shadow or a gradient, not a desk's sharp edge
        return grey
    # the desk at full size, widened over the sheet's soft edge
    big = cv2.resize(desk.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    reach = max(1, round(1.5 * t))
    big = cv2.dilate(big, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    out = grey.copy()
    out[big.astype(bool)] = paper
    return out


def _cropped_at_ink(grey: np.ndarray, enlarged: float = 1.0) -> float | None:
    """The paper's level of a picture cropped at its ink (the digit's strokes run into its edges:
    a thumbnail, a tight crop), or None. Its edge is mostly of one level, the paper's; ink (at
    least :data:`INKY` of the ink's contrast away from it) meets the edge in :data:`TOUCH` of it or
    more; and what meets the edge is no thicker than strokes are (a shadow or a dark corner is).
    A thumbnail of :data:`TINY` pixels or fewer (``enlarged`` that many times to be analysed), whose
    strokes are blurred into blobs and run into most of its edge, needs less of both."""
    tiny = enlarged * TINY >= max(grey.shape)
    edge = _rim(grey).astype(np.float64)
    level = _densest(edge)
    lo, hi = float(grey.min()), float(grey.max())
    if hi - lo < MIN_CONTRAST:
        return None
    extreme = min(level - lo, hi - level) < 0.1 * (hi - lo)  # the paper lies at one end of the range
    if np.count_nonzero(np.abs(edge - level) < FLAT) < (0.5 if not extreme else 0.2 if tiny else 0.3) * edge.size:
        return None
    light = hi - level >= level - lo  # light ink on dark paper
    span = (hi - level) if light else (level - lo)
    if np.count_nonzero((edge - level if light else level - edge) > INKY * span) < TOUCH * edge.size:
        return None
    # what meets the edge, down to fainter ink, is no deeper than a stroke
    mask = ((grey > level + FAINT * span) if light else (grey < level - FAINT * span)).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    met = np.unique(_rim(labels))
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_5)[np.isin(labels, met[met > 0])]
    return level if depth.size and float(depth.max()) <= (2 if tiny else 1) * STROKE_DEPTH * max(grey.shape) else None


def _edge_box(grey: np.ndarray) -> float | None:
    """The paper's level of a picture cropped at a box (a thin line of one polarity along three
    sides or four, just inside the edge, the paper just inside it), or None."""
    h, w = grey.shape
    side = min(h, w)
    depth = max(2, round(EDGE_DEPTH * side))  # the line lies this close to the edge
    inner = max(depth + 2, round(2.5 * EDGE_DEPTH * side))  # ... and paper this far in
    if side < 3 * inner:
        return None
    cut_r, cut_c = h // 10, w // 10
    strips = (grey[:inner, cut_c : w - cut_c], grey[h - inner :, cut_c : w - cut_c][::-1],
              grey[cut_r : h - cut_r, :inner].T, grey[cut_r : h - cut_r, w - inner :].T[::-1])
    votes = [0, 0]  # sides with a dark line, with a light one
    for i, strip in enumerate(strips):
        edge, within = strip[:depth], strip[depth:inner]
        # the paper just inside: the lightest (or darkest) of those rows, past any ink there
        if np.mean(within.max(axis=0) - edge.min(axis=0) > EDGE_CONTRAST) >= EDGE_SOLID:
            votes[0] += 1
        elif np.mean(edge.max(axis=0) - within.min(axis=0) > EDGE_CONTRAST) >= EDGE_SOLID:
            votes[1] += 1
        if max(votes) + 3 - i < 3:  # too few sides left to make three
            return None
    if max(votes) < 3:
        return None
    return float(np.median(grey[inner : h - inner, inner : w - inner]))


def _ink_map_of(grey: np.ndarray, enlarged: float) -> np.ndarray:
    h, w = grey.shape
    if float(grey.max() - grey.min()) < 0.02:
        raise _blank("a single uniform colour")
    smooth = cv2.GaussianBlur(grey, (0, 0), 0.7, borderType=cv2.BORDER_REPLICATE)
    # polarity, on a thumbnail: are the outliers from the border's background darker or lighter than it?
    t = max(1.0, max(h, w) / THUMB_SIDE)
    thumb = smooth
    if t > 1.0:
        thumb = cv2.resize(smooth, (max(1, round(w / t)), max(1, round(h / t))), interpolation=cv2.INTER_AREA)
    surface, spread, coef = _border_surface(thumb)
    resid = thumb - surface
    darker, lighter = _extreme(-resid), _extreme(resid)
    dark_ink = darker > lighter
    if dark_ink:  # make the ink bright
        smooth, grey, resid = -smooth, -grey, -resid
    first = max(darker, lighter)
    # background: a morphological opening wider than any stroke follows shadows and gradients.
    # The window is a quarter of the picture, or wider for bold strokes; if it still swallowed the
    # strokes, contrast is lost: widen it
    radius = _thickest_stroke(resid > 0.5 * first) * t
    base = max(0.25, (2.5 * radius + 2.0) / max(h, w))
    for window in (base, 2 * base, 4 * base):
        floor = _local_background(smooth, window)
        resid = smooth - floor
        top_ink = _extreme(resid)
        if top_ink >= 0.6 * first:
            break
    if spread < EVEN:
        # an evenly lit picture (a scan, a screen, a thumbnail): the paper is the ring's surface, also
        # between the strokes of a small, dense or blurred digit, where an opening's window finds no paper
        full = _surface(coef, (h, w))
        floor = np.minimum(floor, (-full if dark_ink else full) + np.float32(3 * spread + 0.01))
        resid = smooth - floor
        top_ink = _extreme(resid)
    raw = grey - floor
    if dark_ink:
        # ink on paper reflects a fixed fraction of the light: where the paper is in shadow the ink's
        # contrast shrinks with it, so measure contrast relative to the local paper brightness
        paper = np.maximum(-floor, 0.05)
        scale = np.clip(quantile(paper[::4, ::4].ravel(), 0.5) / paper, 0.5, 4.0)
        resid, raw = resid * scale, raw * scale
        top_ink = _extreme(resid)
    if top_ink < MIN_CONTRAST:
        raise _blank("no ink stands out from the background")
    # the ink's level, from its biggest blob (a few dark specks must not set the scale)
    n, labels = cv2.connectedComponents((resid > 0.15 * top_ink).astype(np.uint8), connectivity=8)
    masses = np.bincount(labels.ravel(), weights=resid.ravel(), minlength=n)[1:]
    peak = quantile(resid[labels == int(np.argmax(masses)) + 1], 0.95)
    # the paper texture's level (and what is left of the lighting), away from the ink
    reach = max(2, round(0.03 * max(h, w)))
    near = cv2.dilate((resid > NEAR * peak).astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    away = resid[::2, ::2][near[::2, ::2] == 0]
    texture = quantile(away, 0.99) if away.size >= 100 else 0.0
    if peak < max(MIN_CONTRAST, 2.5 * texture):
        raise _blank("no ink stands out from the background")
    lo = min(max(LOW * peak, 1.2 * texture), 0.35 * peak)
    hi = (HIGH if enlarged < 2.0 else HIGH_SMALL) * peak
    ink = np.clip((raw - lo) * np.float32(1.0 / (hi - lo)), 0.0, 1.0).astype(np.float32, copy=False)
    ink[resid <= lo] = 0.0  # paper texture and noise: where even the smoothed contrast stays under it
    return without_frames(ink)


def ink_image(source: str | os.PathLike | bytes | Image.Image | np.ndarray,
              max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, float]:
    """A picture -> (its ink map, float32 (H, W) in [0, 1], 1 = ink; the scale factor s).

    ``source`` is a path, the file's bytes, a PIL image or a numpy array (see :func:`to_mnist`).
    Polarity, lighting, paper texture, alpha and EXIF orientation are dealt with, and printed
    boxes round the digits and the lines of ruled or squared paper taken out
    (:mod:`digitlab.data.frames`); ink-map pixel
    (x, y) is source pixel (x / s, y / s): s > 1 for an enlarged thumbnail, s < 1 for a big picture.
    Raises :class:`~digitlab.errors.ImageError` for a picture without ink (blank, one colour, faint
    noise) or one too small to hold a digit. A picture that already is an MNIST-style input (see
    :func:`model_input`) is its own ink map, with s = 1.
    """
    if isinstance(source, Image.Image | np.ndarray):
        return _ink_of(source)
    _check_source(source)
    try:
        return _ink_of(open_image(source, max_pixels, draft=WORK_SIDE, grey=True))
    except ImageError as e:
        raise named_error(e, source) from None


def _check_source(source) -> None:
    if not isinstance(source, str | os.PathLike | bytes | bytearray | memoryview):
        raise TypeError("expected a picture: a path, the file's bytes, a PIL image or a numpy array; "
                        f"got {type(source).__name__}")


def _grey_of(image: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(image, Image.Image):
        return _pil_grey(image)
    return _array_grey(image)


def _ink_of(image: Image.Image | np.ndarray) -> tuple[np.ndarray, float]:
    grey, alpha = _grey_of(image)
    if alpha is None and grey.shape == (SIZE, SIZE):
        g = _as_float(grey)
        if _already_mnist(g):
            return g, 1.0  # its own ink map: white ink on black, as the model takes it
    grey, alpha, blocks = _unblocked(grey, alpha)
    grey, alpha, scale = _work_size(grey, alpha)
    return _ink_map(_composite(grey, alpha), scale), scale / blocks


def _unblocked(grey: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, float]:
    """A thumbnail enlarged by repeating its pixels (nearest neighbour: pixel art, a zoomed
    screenshot) -> the thumbnail itself, which is then enlarged smoothly, and by how much it had been
    enlarged; any other picture as it is, and 1.0. Such a picture's rows come in runs of equal rows,
    each 2 or more long (the first and the last may be shorter; two equal rows of the thumbnail make
    one run twice as long), and so do its columns; enlarging the thumbnail found again by repeating
    its pixels, as much both ways, gives the picture back exactly. The thumbnail has at most
    :data:`THUMB_SIDE` pixels a side."""
    h, w = grey.shape
    if max(h, w) > BLOCKY_SIDE or min(h, w) < 2 * MIN_THIN:
        return grey, alpha, 1.0
    picks = []
    for a in (grey, grey.T):
        if not any(np.array_equal(a[i], a[i + 1]) for i in range(3)) or not all(
                np.array_equal(a[m], a[m - 1]) or np.array_equal(a[m], a[m + 1])
                for m in (a.shape[0] // 3, a.shape[0] // 2, 2 * a.shape[0] // 3)):
            return grey, alpha, 1.0  # a quick no, for nearly every picture: a row of its own
        rows = _zoomed_rows(a)
        if rows is None:
            return grey, alpha, 1.0
        picks.append(rows)
    rows, cols = picks
    if max(rows.size, cols.size) < MIN_SIDE or abs(h / rows.size - w / cols.size) > 0.05 * h / rows.size:
        return grey, alpha, 1.0  # too small, or enlarged more one way than the other
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha[np.ix_(rows, cols)])
    return np.ascontiguousarray(grey[np.ix_(rows, cols)]), alpha, h / rows.size


def _zoomed_rows(a: np.ndarray) -> np.ndarray | None:
    """The rows of ``a`` to keep (one per row of the thumbnail) when it is a thumbnail whose rows were
    repeated, each 2 or more times, or None. With f the rows one thumbnail row became (2.5 when
    runs are 2 and 3 long), every run of equal rows is within a row of a whole number of f (the
    first and the last may be shorter: a cropped zoom); a plain drawing's runs are not."""
    first = np.concatenate([[0], np.flatnonzero(np.any(a[1:] != a[:-1], axis=1)) + 1])
    runs = np.diff(np.append(first, a.shape[0]))
    inner = runs[1:-1]
    if runs.size < 4 or inner.min() < 2:  # a plain shape (a bar, a box) has few runs
        return None
    least = int(inner.min())
    factor = float(np.mean(inner[inner <= least + 1]))
    many = np.maximum(1, np.round(runs / factor)).astype(np.intp)  # thumbnail rows in each run
    off = np.abs(runs - many * factor)
    if np.any(off[1:-1] > 1.0) or np.any((off[[0, -1]] > 1.0) & (runs[[0, -1]] > many[[0, -1]] * factor)):
        return None
    if not MIN_THIN <= int(many.sum()) <= THUMB_SIDE:
        return None
    return np.concatenate([s + ((np.arange(k) + 0.5) * (n / k)).astype(np.intp)
                           for s, n, k in zip(first, runs, many, strict=True)])


def digit_from_ink(ink: np.ndarray) -> np.ndarray:
    """One digit's ink map (float (H, W) in [0, 1], 1 = ink; a crop of :func:`ink_image`'s) -> (28, 28) uint8.

    The digit's parts are kept (specks, far blobs and haze dropped), thin strokes thickened, the ink
    boxed to 20x20 and its centre of mass put at the centre of 28x28, grey levels kept. Raises
    :class:`~digitlab.errors.ImageError` when there is no digit-sized ink.
    """
    ink = np.asarray(ink, dtype=np.float32)
    if ink.ndim != 2:
        raise ValueError(f"expected an ink map of shape (H, W), got {ink.shape}")
    h, w = ink.shape
    if ink.size == 0 or float(ink.max()) < MIN_CONTRAST:
        raise _blank("no ink stands out from the background")
    n, labels, stats, _ = cv2.connectedComponentsWithStats((ink > 0).astype(np.uint8), connectivity=8)
    flat = labels.ravel()
    values = ink.ravel()
    masses = np.bincount(flat, weights=values, minlength=n)
    has_strong = np.bincount(flat[values >= STRONG], minlength=n) > 0
    # other parts join the digit only when as dark as its ink (the same pen), not paper texture
    has_dark = np.bincount(flat[values >= DARK], minlength=n) > 0
    has_strong[0] = False
    if not has_strong.any():
        raise _blank("no ink stands out from the background")
    main = int(np.argmax(np.where(has_strong, masses, -1.0)))
    joinable = has_strong & has_dark & (masses >= 0.03 * masses[main])
    joinable[main] = False
    candidates = [int(i) for i in np.flatnonzero(joinable)]
    boxes = {i: tuple(int(v) for v in (stats[i, 1], stats[i, 0], stats[i, 1] + stats[i, 3], stats[i, 0] + stats[i, 2]))
             for i in [main, *candidates]}
    top, left, bottom, right = boxes[main]
    if max(bottom - top, right - left) < max(5, 0.02 * max(h, w)):
        raise _blank("only specks, no digit-sized stroke")
    kept = {main}
    changed = True
    while changed:  # add the parts near the digit (a 5's flag, a 4's second stroke)
        changed = False
        reach = 0.6 * max(bottom - top, right - left)
        for i in candidates:
            if i in kept:
                continue
            b = boxes[i]
            gap_y = max(top - b[2], b[0] - bottom, 0)
            gap_x = max(left - b[3], b[1] - right, 0)
            if max(gap_y, gap_x) <= reach:
                kept.add(i)
                top, left = min(top, b[0]), min(left, b[1])
                bottom, right = max(bottom, b[2]), max(right, b[3])
                changed = True
    lut = np.zeros(n, bool)
    lut[list(kept)] = True
    keep = lut[labels[top:bottom, left:right]]
    crop = ink[top:bottom, left:right]
    # faint grey only as far as an anti-aliased or blurred edge reaches (~1.5 MNIST pixels) from the
    # strokes' cores: haze left by the paper or the lighting next to the digit goes, a faint join
    # between two strokes (a thumbnail's thin stretch) stays
    tail = max(1, round(0.08 * max(bottom - top, right - left)))
    core = (keep & (crop >= STRONG)).astype(np.uint8)
    keep &= cv2.dilate(core, np.ones((2 * tail + 1, 2 * tail + 1), np.uint8)).astype(bool) | (crop >= JOIN)
    digit = np.where(keep, crop, np.float32(0.0))
    rows = np.flatnonzero((digit >= BOX_LEVEL).any(axis=1))
    cols = np.flatnonzero((digit >= BOX_LEVEL).any(axis=0))
    digit = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    out = _mnist_geometry(_thicken(digit))
    return np.round(out * 255.0).astype(np.uint8)


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels, 2 * area / perimeter of the ink at the 50% level."""
    m = zero_pad(ink > 0.5, (1, 1))
    area = int(m.sum())
    perimeter = int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum())
    return 2.0 * area / perimeter if perimeter else 0.0


def _thicken(ink: np.ndarray) -> np.ndarray:
    """Widen strokes that would be thinner than STROKE_MIN px at MNIST scale."""
    width = _stroke_width(ink)
    if width == 0.0 or width * BOX / max(ink.shape) >= STROKE_MIN:
        return ink
    if max(ink.shape) < DETAIL:  # work on a finer grid than the picture's own
        u = math.ceil(DETAIL / max(ink.shape))
        ink = cv2.resize(ink, (ink.shape[1] * u, ink.shape[0] * u), interpolation=cv2.INTER_LINEAR)
        width = _stroke_width(ink)
    side = max(ink.shape)
    # grow by r on each side: (width + 2r) * BOX / (side + 2r) = STROKE_TARGET
    r = (STROKE_TARGET * side / BOX - width) / (2.0 * (1.0 - STROKE_TARGET / BOX))
    if r < 0.25:
        return ink
    pad = math.ceil(r) + 1
    padded = cv2.copyMakeBorder(np.ascontiguousarray(ink, np.float32), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform((padded <= 0.5).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    grown = np.maximum(padded, np.clip(r + 0.5 - dist, 0.0, 1.0).astype(np.float32))
    rows = np.flatnonzero(grown.any(axis=1))
    cols = np.flatnonzero(grown.any(axis=0))
    return grown[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _mnist_geometry(ink: np.ndarray) -> np.ndarray:
    """Cropped ink map -> (28, 28) float: longer side scaled to 20, centre of mass at (14, 14)."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    ink = np.ascontiguousarray(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], dtype=np.float32)
    h, w = ink.shape
    f = BOX / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    method = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    small = np.clip(cv2.resize(ink, size, interpolation=method), 0.0, 1.0)
    top = float(small.max())
    if 0.0 < top < 1.0:  # the strokes' cores saturate, as in MNIST
        small = np.minimum(small * np.float32(1.0 / top), 1.0)
    sh, sw = small.shape
    total = float(small.sum())
    cy = float(small.sum(axis=1) @ np.arange(sh, dtype=np.float32)) / total
    cx = float(small.sum(axis=0) @ np.arange(sw, dtype=np.float32)) / total
    oy = min(max(round(CENTRE - cy), 0), SIZE - sh)
    ox = min(max(round(CENTRE - cx), 0), SIZE - sw)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[oy : oy + sh, ox : ox + sw] = small
    return out


def _already_mnist(grey: np.ndarray) -> bool:
    """True for a picture that is already an MNIST-style input: 28x28, white ink on a black border,
    the ink's longer side 19-21 px and its centre of mass within a pixel of (14, 14). Such a picture
    (an MNIST digit, a saved ``--save-inputs`` image) goes to the model unchanged."""
    if grey.shape != (SIZE, SIZE):
        return False
    if max(float(grey[0].max()), float(grey[-1].max()), float(grey[:, 0].max()), float(grey[:, -1].max())) > 0.02:
        return False
    ink = grey > 0.1
    total = float(grey.sum())
    if total < 5.0 or not ink.any():
        return False
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not 19 <= max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21:
        return False
    idx = np.arange(SIZE)
    cy, cx = float(grey.sum(axis=1) @ idx) / total, float(grey.sum(axis=0) @ idx) / total
    return abs(cy - CENTRE) <= 1.0 and abs(cx - CENTRE) <= 1.0


def to_mnist(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any picture of one digit -> (28, 28) uint8, white ink on black, MNIST-centred.

    ``image`` is a PIL image (any mode, any size) or a numpy array ``(H, W)``/``(H, W, C)``
    (uint8, uint16, bool, or float in [0, 1]). Dark-on-light and light-on-dark both work; the
    result is always white ink on black. Raises :class:`~digitlab.errors.ImageError` when the
    picture holds no ink (blank, one colour, faint noise only) or is too small. A picture that is
    already an MNIST-style input goes to the model unchanged.
    """
    ink, _ = _ink_of(image)
    ready = model_input(ink)
    return digit_from_ink(ink) if ready is None else ready


def model_input(ink: np.ndarray) -> np.ndarray | None:
    """An ink map that already is an MNIST-style model input (28x28, white ink on a black border,
    the ink's longer side 19-21 px, its centre of mass within a pixel of (14, 14): an MNIST digit, a
    saved ``--save-inputs`` image) as that input, (28, 28) uint8, unchanged; else None."""
    ink = np.asarray(ink)
    if ink.shape != (SIZE, SIZE) or not _already_mnist(ink.astype(np.float32, copy=False)):
        return None
    return np.round(ink * 255.0).astype(np.uint8)


def named_error(e: ImageError, source) -> ImageError:
    """``e`` with "the image" in its message replaced by the picture's name (path, or "the given
    data" for bytes), of the same class (so the same HTTP status)."""
    msg = str(e)
    if msg.startswith("the image "):
        return type(e)(f"{_describe(source)} {msg[len('the image '):]}")  # the same class: its HTTP status
    return e


def load_digit(source: str | os.PathLike | bytes | Image.Image | np.ndarray,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A picture (a file's path or bytes, a PIL image or a numpy array) -> (28, 28) uint8
    MNIST-style input: ``to_mnist(open_image(source))``, in effect ``digit_from_ink(ink_image(source)[0])``;
    errors name the file."""
    try:
        if isinstance(source, Image.Image | np.ndarray):
            return to_mnist(source)
        _check_source(source)
        return to_mnist(open_image(source, max_pixels, draft=WORK_SIDE, grey=True))
    except ImageError as e:
        raise named_error(e, source) from None


def find_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    A folder contributes the files directly inside it (not its subfolders) whose suffix is one of
    :data:`IMAGE_SUFFIXES` (any case), hidden files excepted; a file named explicitly is taken
    whatever its suffix (:func:`open_image` says if it is not an image). The result is sorted and
    has no duplicates. A missing path, or a folder without images, raises ImageError.
    """
    if not paths:
        raise ImageError("no images given; pass image files or folders of images")
    found: set[Path] = set()
    for given in paths:
        if not os.fspath(given):
            raise ImageError("an empty file name was given")
        p = Path(given)
        try:
            mode = _stat_mode(p, _describe(p))
        except ImageError as e:
            raise ImageError(str(e).replace(" cannot be opened (", " cannot be read (", 1)) from None
        if mode is None:
            raise ImageError(f"{_describe(p)}: no such file or folder")
        if stat.S_ISDIR(mode):
            try:
                inside = [f for f in p.iterdir()
                          if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
            except OSError as e:  # a folder it may not read
                raise ImageError(f"{_describe(p)} cannot be read ({e.strerror or _reason(e)})") from None
            if not inside:
                raise ImageError(f"{p}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            found.update(inside)
        else:  # a file, or a FIFO or device named on purpose: open_image says what it is
            found.add(p)
    return sorted(found)
