"""Turning a user's picture into a 28x28 MNIST-style input.

MNIST digits are white ink on black, the ink scaled to fit a 20x20 box (aspect kept) and placed
in 28x28 so that its centre of mass is at the centre. Every way a picture reaches a model (the
CLI, the server, the Python API) goes through :func:`to_mnist`.

What :func:`to_mnist` does with a picture, in order:

1. **Pixels.** EXIF orientation is applied (photos), any mode is read (1, L, P, LA, RGB, RGBA,
   CMYK, 16-bit, float); very large pictures are box-filtered down to at most
   :data:`WORK_SIDE` pixels a side first.
2. **Alpha.** Transparent pixels are composited onto a backdrop that contrasts with the opaque
   content: a canvas export with dark strokes on a transparent background lands on white, one with
   white strokes lands on black, and a mostly-opaque picture gets its own paper colour.
3. **Polarity.** A quadratic surface in x and y, fitted robustly to the picture's outer ring
   (nearly always background), predicts the paper or screen under the digit; whether the strongest
   departures from it are darker or lighter decides the polarity. The result is always white ink
   on black.
4. **Background.** A grey-scale morphological opening with a window wider than the thickest
   stroke (at least a quarter of the picture) estimates the background everywhere, so shadows,
   gradient lighting and vignetting cancel out. For dark ink on paper, contrast is measured
   relative to the local paper brightness: ink in a shadow counts as dark as ink in the light.
5. **Ink.** The digit's contrast is taken from its biggest blob (a dark speck must not set the
   scale). Pixels above both a fraction of it and the paper's texture (measured away from the ink)
   are ink; hysteresis (weak pixels connected to strong ones) keeps faint parts of a stroke, and a
   linear ramp keeps the grey levels of anti-aliased edges. Blobs near the digit and as dark as it
   join it (a 5's flag, a 4's second stroke); specks, far blobs and haze more than about one MNIST
   pixel from the strokes are dropped. No ink at all is an error
   (:class:`~digitlab.errors.ImageError`), never a guess.
6. **Stroke width.** Strokes thinner than :data:`STROKE_MIN` px at MNIST scale (a hairline on a
   big picture) are thickened with a distance transform to about :data:`STROKE_TARGET` px, MNIST's
   typical width; MNIST's own thin digits are left alone.
7. **MNIST geometry.** The ink is cropped, scaled (area-averaged) so its longer side is 20 px,
   and put into 28x28 with its centre of mass moved to pixel (14, 14), by a whole-pixel shift that
   never pushes ink out of the frame -- the same geometry as the real MNIST images.

Nothing here imports torch: the ONNX-only server uses it too. NumPy, Pillow and
``scipy.ndimage`` (connected components, morphology, distance transform, a small blur; scipy comes
with scikit-learn) do the work.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitlab.errors import ImageError, ImageTooLargeError, NotAnImageError

MAX_PIXELS = 40_000_000  # refuse larger pictures before decoding their pixels
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

#: Pillow decoders :func:`open_image` will use (others, e.g. EPS, are refused as "not an image").
OPEN_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")
#: Pictures are analysed at most this many pixels a side (box-filtered down beforehand).
WORK_SIDE = 1024
#: The smallest picture that can hold a digit.
MIN_SIDE = 8

BOX = 20  # MNIST: the ink fits a 20x20 box ...
SIZE = 28  # ... inside a 28x28 image ...
CENTRE = 14.0  # ... with its centre of mass at pixel (14, 14) (row, column indices)
STROKE_MIN = 1.2  # thinner strokes (px at MNIST scale) are thickened ...
STROKE_TARGET = 2.0  # ... to about this width (MNIST's median is ~2.0 px at the 50% level)

LOW, STRONG, HIGH = 0.06, 0.45, 0.85  # ink thresholds as fractions of the ink's contrast (see _digit)
MIN_CONTRAST = 0.05  # ink fainter than this (5% of black-to-white) is no ink
DETAIL = 80  # small crops are upsampled to at least this many pixels a side before thickening

_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_BLANK_HINT = "use a picture with one dark digit on light paper, or a light digit on a dark background"


def _describe(source: str | os.PathLike | bytes) -> str:
    if isinstance(source, bytes | bytearray | memoryview):
        return "the given data"
    return os.fspath(source)


def _too_large(label: str, max_pixels: int, size: tuple[int, int] | None = None) -> ImageTooLargeError:
    if size is None:
        what = f"more than {max_pixels:,} pixels"
    else:
        what = f"{size[0]} x {size[1]} = {size[0] * size[1]:,} pixels, the limit is {max_pixels:,}"
    return ImageTooLargeError(f"{label} is too large ({what}); scale it down first")


def open_image(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS,
               draft: int | None = None) -> Image.Image:
    """Open a picture (path or bytes), refusing non-images and anything over ``max_pixels``.

    The size is checked from the header, before any pixel is decoded (and Pillow's own
    decompression-bomb guard is turned into the same error). An animated GIF/WebP gives its first
    frame. The returned image is fully loaded. Whatever a decoder raises for a hostile or broken
    file (OSError, ValueError for a text or ICC chunk past Pillow's limits, SyntaxError, EOFError,
    MemoryError, decompression bombs...) becomes an :class:`~digitlab.errors.ImageError` subclass here:
    :class:`~digitlab.errors.NotAnImageError` when it cannot be opened,
    :class:`~digitlab.errors.ImageTooLargeError` when it is too large, ImageError when it is damaged.
    ``draft``: a big JPEG may be
    decoded at 1/2, 1/4 or 1/8 scale, keeping both sides at least this long (much faster; what
    :func:`load_digit` does, since :func:`to_mnist` looks at no more than :data:`WORK_SIDE`).
    """
    label = _describe(source)
    if isinstance(source, bytes | bytearray | memoryview):
        fp: io.BytesIO | Path = io.BytesIO(bytes(source))
    else:
        fp = Path(source)
        if not fp.exists():
            if fp.is_symlink():
                raise ImageError(f"{label} is a broken symbolic link or a symbolic link loop")
            raise ImageError(f"{label}: no such file")
        if fp.is_dir():
            raise ImageError(f"{label} is a folder, not an image file")
        if not fp.is_file():  # a FIFO, socket or device: opening it could block for ever
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
            if draft and image.format in ("JPEG", "MPO") and min(width, height) >= 2 * draft:
                image.draft(image.mode, (draft, draft))
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


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return a
    h, w = a.shape[0] // k * k, a.shape[1] // k * k
    if h == 0 or w == 0:
        return a
    return a[:h, :w].reshape(h // k, k, w // k, k, *a.shape[2:]).mean(axis=(1, 3))


def _pil_arrays(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image -> (grey float32 [0, 1], alpha float32 [0, 1] or None), at most WORK_SIDE a side."""
    image = _exif_upright(image)
    k = math.ceil(max(image.size) / WORK_SIDE)
    if image.mode in _WIDE_MODES:
        a = np.asarray(image).astype(np.float32)
        top = float(a.max()) if a.size else 0.0
        if image.mode.startswith("I;16") or top > 255:
            scale = 65535.0
        elif image.mode == "F" and top <= 1.0:
            scale = 1.0
        else:
            scale = 255.0
        return np.clip(_block_mean(a, k) / scale, 0.0, 1.0), None
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    if image.mode in ("1", "L") and not has_alpha:
        target = "L"
    else:
        target = "RGBA" if has_alpha else "RGB"
    if image.mode != target:
        image = image.convert(target)
    if k > 1:
        image = image.reduce(k)
    a = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    if target == "L":
        return a, None
    grey = a[..., :3] @ _LUMA
    return grey, (a[..., 3] if has_alpha else None)


def _array_arrays(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A numpy picture ((H, W), (H, W, 1|2|3|4); uint8, uint16, bool or float) -> (grey, alpha)."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ValueError(f"expected an image array of shape (H, W) or (H, W, 1|2|3|4), got {a.shape}")
    if a.dtype == np.bool_:
        f = a.astype(np.float32)
    elif a.dtype == np.uint8:
        f = a.astype(np.float32) / np.float32(255.0)
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / np.float32(65535.0)
    elif np.issubdtype(a.dtype, np.number):
        f = a.astype(np.float32)
        top = float(np.nanmax(f)) if f.size else 0.0
        if top > 255:
            f /= np.float32(65535.0)
        elif top > 1:
            f /= np.float32(255.0)
        f = np.nan_to_num(f)
    else:
        raise ValueError(f"expected a numeric image array, got dtype {a.dtype}")
    f = np.clip(f, 0.0, 1.0)
    k = math.ceil(max(f.shape[:2]) / WORK_SIDE)
    f = _block_mean(f, k)
    if f.ndim == 2:
        return f, None
    channels = f.shape[2]
    grey = f[..., 0] if channels == 2 else f[..., :3] @ _LUMA
    alpha = f[..., -1] if channels in (2, 4) else None
    return grey.astype(np.float32), alpha


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


def _border_surface(smooth: np.ndarray) -> np.ndarray:
    """A quadratic in x and y fitted robustly to the picture's outer ring (10% of its shorter side).

    The ring is nearly always background, so the surface says what the paper or screen would look
    like under the digit, gradient lighting included; it only decides the polarity.
    """
    h, w = smooth.shape
    b = max(1, round(0.1 * min(h, w)))
    step = max(1, max(h, w) // 64)
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float32)
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    ring = np.zeros((h, w), bool)
    ring[:b] = ring[-b:] = True
    ring[:, :b] = ring[:, -b:] = True
    sample = np.zeros((h, w), bool)
    sample[::step, ::step] = True
    rows, cols = np.nonzero(ring & sample)
    y, x = ys[rows].astype(np.float64), xs[cols].astype(np.float64)
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    values = smooth[rows, cols].astype(np.float64)
    keep = np.ones(values.size, bool)
    coef = np.zeros(6)
    for _ in range(5):
        a = design[keep]
        # normal equations (6 x 6): cheap, and no multithreaded BLAS call for a tiny problem
        gram = np.einsum("ni,nj->ij", a, a) + 1e-9 * np.eye(6)
        coef = np.linalg.solve(gram, np.einsum("ni,n->i", a, values[keep]))
        resid = values - design @ coef
        sigma = 1.4826 * float(np.median(np.abs(resid[keep])))
        new = np.abs(resid) < max(2.5 * sigma, 0.03)
        if new.sum() < 12 or np.array_equal(new, keep):
            break
        keep = new
    c = coef.astype(np.float32)
    y2, x2 = ys[:, None], xs[None, :]
    return c[0] + c[1] * x2 + c[2] * y2 + c[3] * x2 * x2 + c[4] * x2 * y2 + c[5] * y2 * y2


def _extreme(a: np.ndarray) -> float:
    """Mean of the largest values of ``a`` (the top 0.02%, at least 9): how bright the ink is."""
    k = max(9, a.size // 5000)
    flat = a.ravel()
    return float(np.partition(flat, flat.size - k)[-k:].mean())


def _local_background(v: np.ndarray, window: float = 0.25) -> np.ndarray:
    """Background under bright ink: a grey opening, its window a fraction of the picture's longer side.

    Computed on a block-minimum thumbnail (at most 128 px a side) and upsampled bilinearly; strokes
    narrower than the window vanish from it, shadows and lighting gradients stay.
    """
    from scipy import ndimage

    h, w = v.shape
    d = max(1, math.ceil(max(h, w) / 128))
    hh, ww = math.ceil(h / d) * d, math.ceil(w / d) * d
    small = np.pad(v, ((0, hh - h), (0, ww - w)), mode="edge").reshape(hh // d, d, ww // d, d).min(axis=(1, 3))
    k = max(3, round(window * max(h, w) / d))
    # past the edges: an odd reflection continues a lighting gradient (so the opening follows it to
    # the edge); the plain mirror stops ink near the edge from turning into a dark dip there
    pad = min(k, *small.shape) - 1
    padded = small
    if pad > 0:
        padded = np.maximum(np.pad(small, pad, mode="reflect", reflect_type="odd"),
                            np.pad(small, pad, mode="reflect"))
    opened = ndimage.grey_opening(padded, size=(k, k), mode="nearest")
    opened = opened[pad : pad + small.shape[0], pad : pad + small.shape[1]].astype(np.float32)
    up = Image.fromarray(opened, mode="F").resize((ww, hh), Image.Resampling.BILINEAR)
    return np.asarray(up)[:h, :w]


def _thickest_stroke(mask: np.ndarray) -> float:
    """Radius in pixels of the widest disc that fits in the ink (blobs touching the border aside)."""
    from scipy import ndimage

    d = max(1, math.ceil(max(mask.shape) / 256))
    if d > 1:  # a coarser grid is plenty for an upper bound
        h, w = mask.shape[0] // d * d, mask.shape[1] // d * d
        mask = mask[:h, :w].reshape(h // d, d, w // d, d).any(axis=(1, 3))
    labels, _ = ndimage.label(mask)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    inner = mask & ~np.isin(labels, edge[edge > 0])
    if inner.sum() < 10:
        inner = mask
    if not inner.any():
        return 0.0
    dist = ndimage.distance_transform_edt(np.pad(inner, 1))[1:-1, 1:-1]
    return float(np.percentile(dist[inner], 99)) * d


def _blank(why: str) -> ImageError:
    return ImageError(f"the image is blank ({why}); {_BLANK_HINT}")


def _contrast(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey picture -> (ink contrast, lightly smoothed; ink contrast, raw).

    Ink is positive whatever the picture's polarity; the background is ~0 even under shadows.
    """
    from scipy import ndimage

    h, w = grey.shape
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"the image is too small to hold a digit ({w} x {h} pixels, need {MIN_SIDE} or more)")
    if float(grey.max() - grey.min()) < 0.02:
        raise _blank("a single uniform colour")
    smooth = ndimage.gaussian_filter(grey, 0.7, mode="nearest")
    # polarity: are the outliers from the border's background darker or lighter than it?
    resid = smooth - _border_surface(smooth)
    dark_ink = _extreme(-resid) > _extreme(resid)
    if dark_ink:  # make the ink bright
        smooth, grey, resid = -smooth, -grey, -resid
    first = _extreme(resid)
    # background: a morphological opening wider than any stroke follows shadows and gradients.
    # The window is a quarter of the picture, or wider for bold strokes; if it still swallowed the
    # strokes, contrast is lost: widen it
    radius = _thickest_stroke(resid > 0.5 * first)
    base = max(0.25, (2.5 * radius + 2.0) / max(h, w))
    for window in (base, 2 * base, 4 * base):
        floor = _local_background(smooth, window)
        resid = smooth - floor
        if _extreme(resid) >= 0.6 * first:
            break
    raw = grey - floor
    if dark_ink:
        # ink on paper reflects a fixed fraction of the light: where the paper is in shadow the ink's
        # contrast shrinks with it, so measure contrast relative to the local paper brightness
        paper = np.maximum(-floor, 0.05)
        scale = np.clip(float(np.median(paper)) / paper, 0.5, 4.0)
        resid, raw = resid * scale, raw * scale
    return resid, raw


def _digit(ink: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Ink contrast -> the digit's ink map in [0, 1], cropped to it; texture, specks and far blobs dropped."""
    from scipy import ndimage

    h, w = ink.shape
    eight = np.ones((3, 3), bool)
    top_ink = _extreme(ink)
    if top_ink < MIN_CONTRAST:
        raise _blank("no ink stands out from the background")
    # the digit's own contrast, from its biggest blob (a few dark specks must not set the scale)
    labels, n = ndimage.label(ink > 0.15 * top_ink, structure=eight)
    masses = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)[1:]
    peak = float(np.percentile(ink[labels == int(np.argmax(masses)) + 1], 95))
    # what the paper's texture and the leftovers of the lighting reach, away from the ink
    reach = max(2, round(0.03 * max(h, w)))
    near = ndimage.maximum_filter(ink > 0.3 * peak, size=2 * reach + 1)
    texture = float(np.percentile(ink[~near], 99)) if (~near).sum() >= 100 else 0.0
    if peak < max(MIN_CONTRAST, 2.5 * texture):
        raise _blank("no ink stands out from the background")
    lo = min(max(LOW * peak, 1.2 * texture), 0.35 * peak)
    hi = HIGH * peak
    labels, n = ndimage.label(ink > lo, structure=eight)
    soft = np.clip((raw - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    masses = np.bincount(labels.ravel(), weights=soft.ravel(), minlength=n + 1)[1:]
    has_strong = np.bincount(labels[ink >= STRONG * peak], minlength=n + 1)[1:] > 0
    # other blobs join the digit only when as dark as its ink (the same pen), not paper texture
    has_dark = np.bincount(labels[ink >= 0.7 * peak], minlength=n + 1)[1:] > 0
    boxes = ndimage.find_objects(labels)
    candidates = [int(i) for i in np.flatnonzero(has_strong)]
    if not candidates:
        raise _blank("no ink stands out from the background")
    main = max(candidates, key=lambda i: masses[i])
    top, left, bottom, right = (boxes[main][0].start, boxes[main][1].start,
                                boxes[main][0].stop, boxes[main][1].stop)
    if max(bottom - top, right - left) < max(5, 0.02 * max(h, w)):
        raise _blank("only specks, no digit-sized stroke")
    kept = {main}
    changed = True
    while changed:  # add the blobs near the digit (a 5's flag, a 4's second stroke)
        changed = False
        reach = 0.6 * max(bottom - top, right - left)
        for i in candidates:
            if i in kept or masses[i] < 0.03 * masses[main] or not has_dark[i]:
                continue
            b = boxes[i]
            gap_y = max(top - b[0].stop, b[0].start - bottom, 0)
            gap_x = max(left - b[1].stop, b[1].start - right, 0)
            if max(gap_y, gap_x) <= reach:
                kept.add(i)
                top, left = min(top, b[0].start), min(left, b[1].start)
                bottom, right = max(bottom, b[0].stop), max(right, b[1].stop)
                changed = True
    keep = np.isin(labels[top:bottom, left:right], [i + 1 for i in kept])
    # grey levels only as far as an anti-aliased or blurred edge reaches (~1 MNIST pixel) from the
    # strokes' cores: haze left by the paper or the lighting next to the digit goes
    tail = max(1, round(0.05 * max(bottom - top, right - left)))
    core = keep & (ink[top:bottom, left:right] >= STRONG * peak)
    keep &= ndimage.maximum_filter(core, size=2 * tail + 1)
    return np.where(keep, soft[top:bottom, left:right], np.float32(0.0))


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels, 2 * area / perimeter of the ink at the 50% level."""
    m = np.pad(ink > 0.5, 1)
    area = int(m.sum())
    perimeter = int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum())
    return 2.0 * area / perimeter if perimeter else 0.0


def _thicken(ink: np.ndarray) -> np.ndarray:
    """Widen strokes that would be thinner than STROKE_MIN px at MNIST scale."""
    from scipy import ndimage

    width = _stroke_width(ink)
    if width == 0.0 or width * BOX / max(ink.shape) >= STROKE_MIN:
        return ink
    if max(ink.shape) < DETAIL:  # work on a finer grid than the picture's own
        u = math.ceil(DETAIL / max(ink.shape))
        size = (ink.shape[1] * u, ink.shape[0] * u)
        ink = np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.Resampling.BILINEAR))
        width = _stroke_width(ink)
    side = max(ink.shape)
    # grow by r on each side: (width + 2r) * BOX / (side + 2r) = STROKE_TARGET
    r = (STROKE_TARGET * side / BOX - width) / (2.0 * (1.0 - STROKE_TARGET / BOX))
    if r < 0.25:
        return ink
    pad = math.ceil(r) + 1
    padded = np.pad(ink, pad)
    dist = ndimage.distance_transform_edt(padded <= 0.5)
    grown = np.maximum(padded, np.clip(r + 0.5 - dist, 0.0, 1.0).astype(np.float32))
    rows = np.flatnonzero(grown.any(axis=1))
    cols = np.flatnonzero(grown.any(axis=0))
    return grown[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _mnist_geometry(ink: np.ndarray) -> np.ndarray:
    """Cropped ink map -> (28, 28) float: longer side scaled to 20, centre of mass at (14, 14)."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = ink.shape
    f = BOX / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    resample = Image.Resampling.BOX if f < 1 else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(ink.astype(np.float32), mode="F").resize(size, resample))
    small = np.clip(small, 0.0, 1.0)
    sh, sw = small.shape
    total = float(small.sum())
    cy = float((small.sum(axis=1) * np.arange(sh)).sum()) / total
    cx = float((small.sum(axis=0) * np.arange(sw)).sum()) / total
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
    picture holds no ink (blank, one colour, faint noise only) or is too small.
    """
    if isinstance(image, Image.Image):
        grey, alpha = _pil_arrays(image)
    else:
        grey, alpha = _array_arrays(image)
    if alpha is None and _already_mnist(grey):
        return np.round(grey * 255.0).astype(np.uint8)
    ink = _thicken(_digit(*_contrast(_composite(grey, alpha))))
    out = _mnist_geometry(ink)
    return np.round(out * 255.0).astype(np.uint8)


def load_digit(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``to_mnist(open_image(source))``; errors name the file."""
    try:
        return to_mnist(open_image(source, max_pixels, draft=WORK_SIDE))
    except ImageError as e:
        msg = str(e)
        label = _describe(source)
        if msg.startswith("the image "):
            raise type(e)(f"{label} {msg[len('the image '):]}") from None
        raise


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
    for p in map(Path, paths):
        if p.is_dir():
            inside = [f for f in p.iterdir()
                      if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
            if not inside:
                raise ImageError(f"{p}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            found.update(inside)
        elif p.is_file():
            found.add(p)
        else:
            raise ImageError(f"{p}: no such file or folder")
    return sorted(found)


# numbers: temporary -- ink_image / digit_from_ink (the two steps of load_digit) from the internals above

_SOFT_STRONG = (STRONG - LOW) / (HIGH - LOW)  # STRONG and 0.7 of the ink's contrast, on the ink map's scale
_SOFT_DARK = (0.7 - LOW) / (HIGH - LOW)
_SOFT_FLOOR = np.float32(1e-3)  # ink above the low threshold but under the ramp keeps a trace (connectivity)


def _source_grey(source, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(grey, alpha, scale) of a path, bytes, PIL image or array; scale = analysed px per source px."""
    if isinstance(source, np.ndarray):
        grey, alpha = _array_arrays(source)
        return grey, alpha, grey.shape[0] / max(1, np.asarray(source).shape[0])
    if isinstance(source, Image.Image):
        image = source
    else:
        image = open_image(source, max_pixels, draft=WORK_SIDE)
    size = image.size
    if not isinstance(source, Image.Image) and image.format in ("JPEG", "MPO"):
        with Image.open(io.BytesIO(bytes(source)) if isinstance(source, bytes | bytearray | memoryview)
                        else Path(source)) as header:
            size = header.size  # the size before the draft decode
    upright = _exif_upright(image).size
    if upright != image.size:
        size = (size[1], size[0])
    grey, alpha = _pil_arrays(image)
    return grey, alpha, grey.shape[1] / max(1, size[0])


def ink_image(source, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, float]:
    """A picture -> (ink map float32 (H, W) in [0, 1], 1 = ink; scale s: map pixel (x, y) = source (x/s, y/s))."""
    try:
        grey, alpha, scale = _source_grey(source, max_pixels)
        if alpha is None and _already_mnist(grey):
            return grey.astype(np.float32), scale
        ink, raw = _contrast(_composite(grey, alpha))
        top_ink = _extreme(ink)
        if top_ink < MIN_CONTRAST:
            raise _blank("no ink stands out from the background")
        from scipy import ndimage

        h, w = ink.shape
        eight = np.ones((3, 3), bool)
        labels, n = ndimage.label(ink > 0.15 * top_ink, structure=eight)
        masses = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)[1:]
        peak = float(np.percentile(ink[labels == int(np.argmax(masses)) + 1], 95))
        reach = max(2, round(0.03 * max(h, w)))
        near = ndimage.maximum_filter(ink > 0.3 * peak, size=2 * reach + 1)
        texture = float(np.percentile(ink[~near], 99)) if (~near).sum() >= 100 else 0.0
        if peak < max(MIN_CONTRAST, 2.5 * texture):
            raise _blank("no ink stands out from the background")
        lo = min(max(LOW * peak, 1.2 * texture), 0.35 * peak)
        hi = HIGH * peak
        soft = np.clip((raw - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
        # the ink's extent is where the smoothed contrast passes the low threshold, as in _digit
        out = np.where(ink > lo, np.maximum(soft, _SOFT_FLOOR), np.float32(0.0))
        return out.astype(np.float32), scale
    except ImageError as e:
        msg = str(e)
        if msg.startswith("the image ") and not isinstance(source, np.ndarray | Image.Image):
            raise ImageError(f"{_describe(source)} {msg[len('the image '):]}") from None
        raise


def digit_from_ink(ink: np.ndarray) -> np.ndarray:
    """One digit's ink map (a crop of :func:`ink_image`'s) -> (28, 28) uint8, MNIST style (see _digit)."""
    from scipy import ndimage

    ink = np.asarray(ink, dtype=np.float32)
    if ink.ndim != 2 or min(ink.shape) < 1:
        raise _blank("no ink")
    if _already_mnist(ink):
        return np.round(ink * 255.0).astype(np.uint8)
    h, w = ink.shape
    eight = np.ones((3, 3), bool)
    labels, n = ndimage.label(ink > 0, structure=eight)
    masses = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)[1:]
    has_strong = np.bincount(labels[ink >= _SOFT_STRONG], minlength=n + 1)[1:] > 0
    has_dark = np.bincount(labels[ink >= _SOFT_DARK], minlength=n + 1)[1:] > 0
    boxes = ndimage.find_objects(labels)
    candidates = [int(i) for i in np.flatnonzero(has_strong)]
    if not candidates:
        raise _blank("no ink stands out from the background")
    main = max(candidates, key=lambda i: masses[i])
    top, left, bottom, right = (boxes[main][0].start, boxes[main][1].start,
                                boxes[main][0].stop, boxes[main][1].stop)
    if max(bottom - top, right - left) < max(5, 0.02 * max(h, w)):
        raise _blank("only specks, no digit-sized stroke")
    kept = {main}
    changed = True
    while changed:
        changed = False
        reach = 0.6 * max(bottom - top, right - left)
        for i in candidates:
            if i in kept or masses[i] < 0.03 * masses[main] or not has_dark[i]:
                continue
            b = boxes[i]
            gap_y = max(top - b[0].stop, b[0].start - bottom, 0)
            gap_x = max(left - b[1].stop, b[1].start - right, 0)
            if max(gap_y, gap_x) <= reach:
                kept.add(i)
                top, left = min(top, b[0].start), min(left, b[1].start)
                bottom, right = max(bottom, b[0].stop), max(right, b[1].stop)
                changed = True
    crop = ink[top:bottom, left:right]
    keep = np.isin(labels[top:bottom, left:right], [i + 1 for i in kept])
    tail = max(1, round(0.05 * max(bottom - top, right - left)))
    core = keep & (crop >= _SOFT_STRONG)
    keep &= ndimage.maximum_filter(core, size=2 * tail + 1)
    soft = np.where(keep & (crop > _SOFT_FLOOR), crop, np.float32(0.0))
    if not soft.any():
        raise _blank("no ink stands out from the background")
    return np.round(_mnist_geometry(_thicken(soft)) * 255.0).astype(np.uint8)
