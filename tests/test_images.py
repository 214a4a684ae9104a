"""digitlab.data.pictures: any picture of a digit -> a 28x28 MNIST-style input; opening and finding pictures."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitlab.data.pictures import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    find_images,
    load_digit,
    open_image,
    to_mnist,
)
from digitlab.errors import ImageError

SS = 4  # draw at 4x and box-filter down: anti-aliased like a real rendering


def shape_strokes(digit: str) -> list[tuple[str, tuple[float, ...]]]:
    """Line/ellipse strokes of a few digits in a unit box (x right, y down)."""
    return {
        "0": [("ellipse", (0.1, 0.0, 0.9, 1.0))],
        "1": [("line", (0.3, 0.2, 0.6, 0.0)), ("line", (0.6, 0.0, 0.6, 1.0))],
        "4": [("line", (0.7, 1.0, 0.7, 0.0)), ("line", (0.7, 0.0, 0.0, 0.7)), ("line", (0.0, 0.7, 1.0, 0.7))],
        "7": [("line", (0.0, 0.0, 1.0, 0.0)), ("line", (1.0, 0.0, 0.35, 1.0))],
        "8": [("ellipse", (0.2, 0.0, 0.8, 0.45)), ("ellipse", (0.1, 0.45, 0.9, 1.0))],
    }[digit]


def ink_mask(digit: str = "7", size: tuple[int, int] = (120, 120), box: tuple[float, ...] = (30, 20, 80, 100),
             width: float = 8.0) -> np.ndarray:
    """An anti-aliased ink mask (H, W) float in [0, 1] of a digit drawn with strokes inside ``box``."""
    w, h = size
    img = Image.new("L", (w * SS, h * SS), 0)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    pw = max(1, round(width * SS))

    def pt(u: float, v: float) -> tuple[float, float]:
        return ((x0 + u * (x1 - x0)) * SS, (y0 + v * (y1 - y0)) * SS)

    for kind, c in shape_strokes(digit):
        if kind == "line":
            a, b = pt(c[0], c[1]), pt(c[2], c[3])
            draw.line([a, b], fill=255, width=pw)
            for p in (a, b):  # round caps
                draw.ellipse((p[0] - pw / 2, p[1] - pw / 2, p[0] + pw / 2, p[1] + pw / 2), fill=255)
        else:
            a, b = pt(c[0], c[1]), pt(c[2], c[3])
            draw.ellipse((a[0], a[1], b[0], b[1]), outline=255, width=pw)
    return np.asarray(img.resize(size, Image.Resampling.BOX), dtype=np.float32) / 255.0


def paint(mask: np.ndarray, ink: float = 0.0, paper: float = 1.0) -> np.ndarray:
    """Mask -> uint8 grey picture with the given ink and paper levels (0 = black, 1 = white)."""
    return np.clip((paper * (1 - mask) + ink * mask) * 255 + 0.5, 0, 255).astype(np.uint8)


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    x = x.astype(np.float64)
    i = np.arange(x.shape[0])
    return float((x.sum(1) * i).sum() / x.sum()), float((x.sum(0) * i).sum() / x.sum())


def bbox_side(x: np.ndarray) -> int:
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    return max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)


def stroke_width(x: np.ndarray) -> float:
    m = np.pad(x > 127, 1)
    per = (m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum()
    return 2.0 * m.sum() / per


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def same(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two 28x28 digits, up to a one-pixel shift (the centring moves whole pixels)."""
    return max(corr(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def assert_mnist_like(x: np.ndarray) -> None:
    """The geometry and look of a real MNIST digit (see test_mnist_geometry_conventions)."""
    assert x.shape == (28, 28) and x.dtype == np.uint8
    cy, cx = centre_of_mass(x)
    assert abs(cy - 14.0) <= 1.0 and abs(cx - 14.0) <= 1.0, (cy, cx)
    assert abs(bbox_side(x) - 20) <= 1, bbox_side(x)
    assert x.max() >= 250  # stroke cores saturate, as in MNIST
    assert (x > 0).mean() < 0.5  # black background, white ink
    assert 1.0 <= stroke_width(x) <= 4.5, stroke_width(x)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """to_mnist of each test digit drawn plainly: black ink on white, 'L' mode."""
    return {d: to_mnist(Image.fromarray(paint(ink_mask(d)))) for d in "01478"}


# --- MNIST's own conventions, measured on the real data ---------------------------------------


@pytest.mark.realdata
def test_mnist_geometry_conventions(mnist):
    (x, _), _ = mnist
    x = x[:10000].astype(np.float64)
    i = np.arange(28)
    mass = x.sum((1, 2))
    cy = (x.sum(2) * i).sum(1) / mass
    cx = (x.sum(1) * i).sum(1) / mass
    # the centre of mass sits at pixel (14, 14), within half a pixel (a whole-pixel shift) ...
    assert np.abs(cy - 14).max() < 0.55 and np.abs(cx - 14).max() < 0.55
    assert abs(cy.mean() - 14) < 0.05 and abs(cx.mean() - 14) < 0.05
    # ... and the ink's longer side is 20 pixels
    sides = np.array([bbox_side(img) for img in x[:2000]])
    assert (sides == 20).mean() > 0.99
    # our check of "MNIST-like" accepts almost every real MNIST digit
    passed = 0
    for img in x[:500].astype(np.uint8):
        try:
            assert_mnist_like(img)
            passed += 1
        except AssertionError:
            pass
    assert passed >= 475


@pytest.mark.realdata
def test_real_mnist_digit_passes_through_almost_unchanged(mnist):
    _, (xt, _) = mnist
    out = to_mnist(xt[0])
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert corr(out, xt[0]) > 0.95
    # MNIST's own centre of mass is only within half a pixel of (14, 14): re-centring may move a
    # digit by one whole pixel, so compare up to that shift
    cs = np.array([same(to_mnist(img), img) for img in xt[:300]])
    assert np.median(cs) > 0.98
    assert (cs > 0.9).mean() > 0.95
    assert cs.min() > 0.75


# --- drawn digits: any position, scale, thickness, polarity, mode, format ---------------------


@pytest.mark.parametrize("digit", list("01478"))
def test_drawn_digit_is_mnist_like(digit, reference):
    assert_mnist_like(reference[digit])


def test_digits_stay_distinct(reference):
    for a in reference:
        for b in reference:
            if a < b:
                assert same(reference[a], reference[b]) < 0.75, (a, b)


@pytest.mark.parametrize(
    "size, box",
    [((120, 120), (5, 5, 55, 85)), ((120, 120), (60, 30, 110, 110)), ((300, 100), (200, 10, 250, 90)),
     ((64, 200), (8, 120, 52, 190)), ((400, 400), (150, 120, 250, 280))],
)
def test_position_and_canvas_do_not_matter(size, box, reference):
    scale = (box[3] - box[1]) / 80
    out = to_mnist(Image.fromarray(paint(ink_mask("7", size, box, width=8 * scale))))
    assert_mnist_like(out)
    assert same(out, reference["7"]) > 0.95


@pytest.mark.parametrize("height", [16, 30, 60, 200, 600])
def test_any_scale(height, reference):
    w = round(height * 50 / 80)
    size = (w + 2 * height // 4 + 4, height + height // 2 + 4)
    box = (height // 4, height // 4, height // 4 + w, height // 4 + height)
    out = to_mnist(Image.fromarray(paint(ink_mask("8", size, box, width=height / 10))))
    assert_mnist_like(out)
    assert same(out, reference["8"]) > (0.85 if height < 20 else 0.92)


@pytest.mark.parametrize("width", [1.0, 2.0, 5.0, 14.0, 24.0])
def test_thin_and_thick_strokes(width):
    out = to_mnist(Image.fromarray(paint(ink_mask("0", (200, 200), (40, 20, 160, 180), width=width))))
    assert_mnist_like(out)
    ring = out[8:20, 8:20]  # the hole of the 0 stays open ...
    assert ring.min() == 0
    # ... and even a hairline becomes a stroke of MNIST-like width
    assert 1.3 <= stroke_width(out) <= 4.5


@pytest.mark.parametrize("ink, paper", [(0.0, 1.0), (1.0, 0.0), (0.2, 0.85), (0.9, 0.15), (0.45, 0.7)])
def test_polarity_is_detected(ink, paper, reference):
    out = to_mnist(Image.fromarray(paint(ink_mask("4"), ink, paper)))
    assert_mnist_like(out)
    assert same(out, reference["4"]) > 0.95


def rgba(mask: np.ndarray, colour: tuple[int, int, int], background: tuple[int, int, int, int]) -> Image.Image:
    a = np.zeros((*mask.shape, 4), np.float32)
    a[...] = background
    stroke = np.array([*colour, 255], np.float32)
    # what a canvas stores: colour blended over the background, alpha accumulated
    alpha = mask + background[3] / 255 * (1 - mask)
    for c in range(3):
        a[..., c] = np.where(alpha > 0, (stroke[c] * mask + a[..., c] * background[3] / 255 * (1 - mask))
                             / np.maximum(alpha, 1e-6), 0)
    a[..., 3] = alpha * 255
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), mode="RGBA")


@pytest.mark.parametrize(
    "colour, background",
    [((0, 0, 0), (0, 0, 0, 0)),  # a browser canvas: black strokes on transparent black
     ((255, 255, 255), (0, 0, 0, 0)),  # white strokes on transparent
     ((20, 40, 160), (255, 255, 255, 0)),  # blue pen on transparent white
     ((0, 0, 0), (255, 255, 255, 255)),  # opaque white paper
     ((250, 250, 250), (10, 10, 10, 255))],  # opaque dark screen
)
def test_alpha_is_composited(colour, background, reference):
    img = rgba(ink_mask("1"), colour, background)
    for src in (img, Image.open(io.BytesIO(encode(img, "PNG")))):
        out = to_mnist(src)
        assert_mnist_like(out)
        assert same(out, reference["1"]) > 0.95


def test_transparent_picture_of_paper_keeps_its_paper():
    """Mostly opaque: the transparent margin becomes paper, not a frame of ink."""
    grey = paint(ink_mask("7", (100, 100), (30, 15, 70, 85), 6))
    a = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    a[:, :10, 3] = 0  # a transparent (black) strip at the left
    a[:, :10, :3] = 0
    out = to_mnist(Image.fromarray(a, mode="RGBA"))
    ref = to_mnist(Image.fromarray(grey))
    assert same(out, ref) > 0.97


def _modes(mask: np.ndarray) -> dict[str, Image.Image]:
    grey = paint(mask)
    rgb = np.dstack([paint(mask, 0.1, 1.0), paint(mask, 0.2, 0.95), paint(mask, 0.6, 0.9)])
    pal = Image.fromarray(np.where(mask > 0.5, 1, 0).astype(np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 30, 30, 30] + [0] * 762)
    pal.info["transparency"] = 0  # transparent black background, dark ink: needs the alpha
    la = Image.fromarray(np.dstack([np.zeros_like(grey), (mask * 255).astype(np.uint8)]), mode="LA")
    return {
        "L": Image.fromarray(grey),
        "RGB": Image.fromarray(rgb),
        "RGBA": Image.fromarray(np.dstack([rgb, np.full_like(grey, 255)])),
        "LA": la,
        "La": la.convert("La"),  # premultiplied alpha
        "P": pal,
        "1": Image.fromarray(grey < 128).convert("1"),
        "I;16": Image.fromarray(grey.astype(np.uint16) * 257),
        "I": Image.fromarray(grey.astype(np.int32) * 257, mode="I"),
        "F": Image.fromarray(grey.astype(np.float32) / 255, mode="F"),
        "CMYK": Image.fromarray(rgb).convert("CMYK"),
    }


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "La", "P", "1", "I;16", "I", "F", "CMYK"])
def test_every_mode(mode, reference):
    img = _modes(ink_mask("7"))[mode]
    out = to_mnist(img)
    assert_mnist_like(out)
    assert same(out, reference["7"]) > (0.9 if mode in ("P", "1") else 0.95)


@pytest.mark.parametrize(
    "fmt, mode, options, floor",
    [("PNG", "L", {}, 0.97), ("PNG", "I;16", {}, 0.97), ("PNG", "RGBA", {}, 0.97), ("PNG", "P", {}, 0.9),
     ("JPEG", "RGB", {"quality": 60}, 0.9), ("JPEG", "L", {"quality": 85}, 0.95),
     ("WEBP", "RGB", {"quality": 70}, 0.93), ("WEBP", "RGBA", {"lossless": True}, 0.97),
     ("BMP", "RGB", {}, 0.97), ("GIF", "P", {}, 0.9), ("GIF", "L", {}, 0.97), ("TIFF", "RGB", {}, 0.97)],
)
def test_every_format_from_bytes(fmt, mode, options, floor, reference):
    data = encode(_modes(ink_mask("7"))[mode], fmt, **options)
    out = load_digit(data)
    assert_mnist_like(out)
    assert same(out, reference["7"]) > floor


def test_numpy_arrays(reference):
    grey = paint(ink_mask("0"))
    for a in (grey, grey[..., None], np.dstack([grey] * 3), np.dstack([grey] * 3 + [np.full_like(grey, 255)]),
              grey.astype(np.float32) / 255, grey.astype(np.uint16) * 257, grey < 128):
        out = to_mnist(a)
        assert_mnist_like(out)
        assert same(out, reference["0"]) > 0.9
    with pytest.raises(ValueError, match=r"expected an image array of shape \(H, W\)"):
        to_mnist(np.zeros((4, 28, 28), np.uint8))


def test_nan_and_infinity_in_float_pictures(reference):
    """NaN is no ink, in a float TIFF, a PIL image of mode F or an array; all NaN is blank."""
    grey = paint(ink_mask("7")).astype(np.float32) / 255
    holed = grey.copy()
    holed[:4, :] = np.nan
    holed[-3:, -3:] = np.inf  # as white as the paper
    buf = io.BytesIO()
    Image.fromarray(holed, mode="F").save(buf, format="TIFF")
    for picture in (buf.getvalue(), Image.fromarray(holed, mode="F"), holed):
        out = load_digit(picture)
        assert_mnist_like(out)
        assert same(out, reference["7"]) > 0.95
    nothing = np.full((40, 40), np.nan, np.float32)
    buf = io.BytesIO()
    Image.fromarray(nothing, mode="F").save(buf, format="TIFF")
    for picture in (buf.getvalue(), Image.fromarray(nothing, mode="F"), nothing):
        with pytest.raises(ImageError, match="is blank"):
            load_digit(picture)


def test_load_digit_takes_every_kind_of_picture(reference):
    grey = paint(ink_mask("4"))
    for picture in (encode(Image.fromarray(grey), "PNG"), Image.fromarray(grey), grey):
        assert np.array_equal(load_digit(picture), reference["4"])
    with pytest.raises(ImageError, match="^the given array is blank"):
        load_digit(np.zeros((40, 40), np.uint8))
    for wrong in (None, 7, [[0, 1]]):
        with pytest.raises(TypeError, match="^expected a picture: a path, the file's bytes, a PIL image"):
            load_digit(wrong)


def test_photo_of_paper_with_texture_lighting_and_noise(reference):
    """A small digit on a big, unevenly lit, grainy sheet of off-white paper, as JPEG."""
    rng = np.random.default_rng(0)
    h, w = 900, 1200
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    light = 1.0 - 0.35 * xx - 0.15 * yy - 0.4 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    paper = np.array([235, 225, 195], np.float32) * light[..., None]
    texture = np.asarray(Image.fromarray(rng.normal(0, 1, (h // 8, w // 8)).astype(np.float32), mode="F")
                         .resize((w, h), Image.Resampling.BICUBIC))[..., None] * 4
    mask = ink_mask("8", (w, h), (700, 550, 760, 650), width=7)[..., None]
    rgb = (paper + texture) * (1 - mask) + np.array([40, 40, 70]) * light[..., None] * mask
    rgb += rng.normal(0, 3, rgb.shape)
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    out = load_digit(encode(img, "JPEG", quality=80))
    assert_mnist_like(out)
    assert same(out, reference["8"]) > 0.9


def test_big_jpeg_is_decoded_at_reduced_scale(reference):
    grey = paint(ink_mask("7", (2400, 3000), (900, 1000, 1400, 1800), width=60))
    data = encode(Image.fromarray(grey), "JPEG", quality=90)
    assert open_image(data).size == (2400, 3000)
    assert open_image(data, draft=1024).size == (1200, 1500)  # half scale keeps both sides >= 1024
    assert open_image(data, draft=500).size == (600, 750)
    out = load_digit(data)  # drafts at WORK_SIDE
    assert_mnist_like(out)
    assert same(out, to_mnist(open_image(data))) > 0.97
    assert same(out, reference["7"]) > 0.95


def test_specks_far_from_the_digit_are_ignored(reference):
    grey = paint(ink_mask("4", (200, 200), (60, 50, 130, 150), 9))
    grey[10:13, 10:13] = 0
    grey[180:182, 185:188] = 20
    grey[20, 170] = 0
    out = to_mnist(Image.fromarray(grey))
    assert_mnist_like(out)
    assert same(out, to_mnist(Image.fromarray(paint(ink_mask("4", (200, 200), (60, 50, 130, 150), 9))))) > 0.98
    assert same(out, reference["4"]) > 0.85


def test_exif_orientation_is_applied(reference):
    upright = Image.fromarray(np.dstack([paint(ink_mask("7", (120, 160), (30, 30, 90, 130)))] * 3))
    stored = upright.rotate(90, expand=True)  # the camera stored it sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... and says: rotate 90 degrees clockwise to display
    data = encode(stored, "JPEG", quality=95, exif=exif)
    out = load_digit(data)
    assert same(out, reference["7"]) > 0.95
    assert same(to_mnist(Image.open(io.BytesIO(encode(stored, "JPEG", quality=95)))), reference["7"]) < 0.6


def test_animated_gif_gives_its_first_frame(reference):
    frames = [Image.fromarray(paint(ink_mask(d))).convert("P") for d in "18"]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    img = open_image(data)
    assert getattr(img, "n_frames", 1) == 1  # a plain still image, detached from the file
    out = to_mnist(img)
    assert same(out, reference["1"]) > 0.97
    assert same(out, reference["8"]) < 0.7


def test_output_is_deterministic_and_input_untouched():
    grey = paint(ink_mask("8"))
    copy = grey.copy()
    a, b = to_mnist(grey), to_mnist(Image.fromarray(grey))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(grey, copy)


def test_to_mnist_does_not_import_torch(tmp_path):
    Image.fromarray(paint(ink_mask("7"))).save(tmp_path / "d.png")
    code = ("import sys; from digitlab.data.pictures import load_digit; x = load_digit(sys.argv[1]); "
            "assert x.shape == (28, 28); assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "d.png")], check=True)


# --- blank pictures are refused, never guessed ------------------------------------------------


@pytest.mark.parametrize(
    "picture",
    [np.full((100, 100), 255, np.uint8), np.zeros((100, 100), np.uint8), np.full((64, 64, 3), (30, 90, 200), np.uint8),
     np.full((50, 80), 128, np.uint8)],
    ids=["white", "black", "blue", "grey"],
)
def test_uniform_picture_is_blank(picture):
    with pytest.raises(ImageError, match=r"^the image is blank \(a single uniform colour\); use a picture"):
        to_mnist(picture)


def test_faint_noise_gradient_and_specks_are_blank():
    rng = np.random.default_rng(1)
    noise = np.clip(rng.normal(235, 3, (200, 300)), 0, 255).astype(np.uint8)
    gradient = np.tile(np.linspace(90, 220, 300), (200, 1)).astype(np.uint8)
    specks = np.full((400, 400), 250, np.uint8)
    for y, x in rng.integers(0, 398, (6, 2)):
        specks[y : y + 2, x : x + 2] = 0
    for picture in (noise, gradient, specks):
        with pytest.raises(ImageError, match=r"^the image is blank \("):
            to_mnist(picture)
    transparent = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    with pytest.raises(ImageError, match="blank"):
        to_mnist(transparent)


def test_blank_file_error_names_the_file(tmp_path):
    path = tmp_path / "white.png"
    Image.new("L", (60, 60), 255).save(path)
    with pytest.raises(ImageError) as e:
        load_digit(path)
    assert str(e.value).startswith(f"{path} is blank (a single uniform colour); use a picture")


def test_too_small_picture():
    with pytest.raises(ImageError, match=r"^the image is too small to hold a digit \(2 x 40 pixels, need 8 or "
                                         r"more along its longer side and 3 along the other\)"):
        to_mnist(np.zeros((40, 2), np.uint8))
    with pytest.raises(ImageError, match=r"^the image is too small to hold a digit \(7 x 7 pixels"):
        to_mnist(np.zeros((7, 7), np.uint8))
    one = np.full((40, 5), 255, np.uint8)  # a 1 cropped at its ink: as narrow as its stroke, nearly
    one[:, 1:4] = 0
    assert_mnist_like(to_mnist(one))


# --- open_image: what is refused, and how ---------------------------------------------------


def test_open_image_path_and_bytes(tmp_path):
    img = Image.fromarray(paint(ink_mask("7")))
    img.save(tmp_path / "seven.png")
    for src in (tmp_path / "seven.png", str(tmp_path / "seven.png"), encode(img, "PNG")):
        opened = open_image(src)
        assert opened.size == (120, 120) and opened.mode == "L"
        np.testing.assert_array_equal(np.asarray(opened), np.asarray(img))


def test_not_an_image_bytes():
    with pytest.raises(ImageError) as e:
        open_image(b"hello, this is not a picture")
    assert str(e.value) == "the given data is not an image (expected a PNG, JPEG, BMP, GIF or WebP file)"


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("7\n")
    with pytest.raises(ImageError) as e:
        load_digit(path)
    assert str(e.value) == f"{path} is not an image (expected a PNG, JPEG, BMP, GIF or WebP file)"


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.png: no such file$"):
        open_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match=r"is a folder, not an image file$"):
        open_image(tmp_path)


def test_unusable_paths_are_named_clearly(tmp_path):
    with pytest.raises(ImageError, match=r"^no file name given \(an empty path\)$"):
        load_digit("")
    long = tmp_path / ("a" * 300 + ".png")  # longer than a file name may be
    for read in (open_image, load_digit):
        with pytest.raises(ImageError, match=r"aaa\.\.\.aaa.*\.png cannot be opened \(File name too long\)$"):
            read(long)
    with pytest.raises(ImageError, match=r"cannot be read \(File name too long\)$"):
        find_images([long])
    with pytest.raises(ImageError, match="^an empty file name was given$"):
        find_images([""])
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert find_images([fifo]) == [fifo]  # named on purpose: open_image says what it is, without blocking
    with pytest.raises(ImageError, match="is not a regular file"):
        load_digit(fifo)


def test_truncated_image_is_damaged(tmp_path):
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)), "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png is a damaged image \(.*\); re-save or re-export it$"):
        open_image(path)


def png_header(width: int, height: int) -> bytes:
    """A small PNG file whose header claims the given size (its pixel data is a few bytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_huge_dimensions_refused_before_decoding():
    with pytest.raises(ImageError) as e:
        open_image(png_header(100_000, 100_000))
    assert str(e.value) == f"the given data is too large (more than {MAX_PIXELS:,} pixels); scale it down first"
    with pytest.raises(ImageError) as e:
        open_image(png_header(8000, 6000))  # under Pillow's own limit, over ours
    assert str(e.value) == ("the given data is too large (8000 x 6000 = 48,000,000 pixels, the limit is "
                            "40,000,000); scale it down first")


def test_max_pixels(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (300, 200), 255).save(path)
    with pytest.raises(ImageError) as e:
        load_digit(path, max_pixels=10_000)
    assert str(e.value) == f"{path} is too large (300 x 200 = 60,000 pixels, the limit is 10,000); scale it down first"
    assert open_image(path, max_pixels=60_000).size == (300, 200)


def test_refused_formats_are_not_images():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError, match="is not an image"):
        open_image(eps)


# --- find_images -----------------------------------------------------------------------------


def test_find_images(tmp_path):
    img = Image.fromarray(paint(ink_mask("7")))
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.JPG", "c.webp", "d.bmp", "e.gif", "f.jpeg"):
        img.convert("RGB").save(folder / name, format={"jpg": "JPEG", "jpeg": "JPEG"}.get(
            name.rsplit(".", 1)[1].lower(), name.rsplit(".", 1)[1].upper()))
    (folder / "notes.txt").write_text("hi")
    (folder / ".hidden.png").write_bytes(b"")
    img.save(folder / "sub" / "deep.png")
    other = tmp_path / "z.png"
    img.save(other)
    found = find_images([other, folder, folder / "b.png"])
    names = [p.name for p in found]
    assert found == sorted(found)
    assert sorted(names) == ["a.JPG", "b.png", "c.webp", "d.bmp", "e.gif", "f.jpeg", "z.png"]
    assert all(p.suffix.lower() in IMAGE_SUFFIXES for p in found)
    # an explicitly named file is taken whatever its suffix
    assert find_images([folder / "notes.txt"]) == [folder / "notes.txt"]
    for p in found:
        assert_mnist_like(load_digit(p))


def test_find_images_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    with pytest.raises(ImageError) as e:
        find_images([empty])
    assert str(e.value) == f"{empty}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})"
    with pytest.raises(ImageError) as e:
        find_images([tmp_path / "missing"])
    assert str(e.value) == f"{tmp_path / 'missing'}: no such file or folder"
    with pytest.raises(ImageError, match="^no images given"):
        find_images([])


def test_returned_paths_are_paths(tmp_path):
    Image.new("L", (10, 10)).save(tmp_path / "one.png")
    assert find_images([str(tmp_path)]) == [Path(tmp_path / "one.png")]


@pytest.mark.realdata
def test_mnist_style_pictures_go_to_the_model_unchanged(mnist):
    """A 28x28 picture that is already MNIST-style (an MNIST digit, a --save-inputs image) is not
    re-processed; one that is 28x28 but off-centre still is."""
    _, (x_test, _) = mnist
    same = [np.array_equal(to_mnist(x), x) for x in x_test[:1000]]
    assert np.mean(same) >= 0.98
    moved = np.roll(x_test[0], (-5, 4), axis=(0, 1))
    out = to_mnist(moved)
    assert not np.array_equal(out, moved)
    mass = out.astype(np.float64)
    i = np.arange(28)
    assert abs((mass.sum(1) @ i) / mass.sum() - 14) <= 1 and abs((mass.sum(0) @ i) / mass.sum() - 14) <= 1
