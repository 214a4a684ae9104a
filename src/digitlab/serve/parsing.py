"""Request parsing: query options, content types, multipart forms, JSON pixels and picture bytes -> model input.

:func:`read_input` reads the body of /api/predict and /api/explain (a multipart ``file``, a raw
image/* body or JSON pixels). Picture bytes go through :func:`digitlab.data.pictures.load_digit`,
exactly as ``digitlab predict`` (or :func:`digitlab.serve.numbers.read_picture`, which reads them as
what is written, one digit or a number, and gives the same 28x28 input); their errors (typed
:class:`~digitlab.errors.ImageError` subclasses) are answered with their own status by
:mod:`digitlab.serve.errors`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import numpy as np
from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from digitlab.data.pictures import load_digit, to_mnist
from digitlab.errors import ImageError
from digitlab.serve.errors import validation_message
from digitlab.serve.numbers import EMPTY, read_picture_async
from digitlab.serve.schemas import PixelsRequest

if TYPE_CHECKING:
    from digitlab.inference.reading import DigitReading
    from digitlab.serve.adapter import ServedModel

INLINE_DECODE_BYTES = 64_000  # smaller pictures are decoded on the event loop, larger ones in a thread
BLANK_RANGE = 13  # JSON pixels that vary less than this (5% of 255) hold no ink: 422, like a blank picture
ACT_FORMATS = ("json", "u8")

ONE_PICTURE = (422, "send one picture per request, in the field 'file' (several go to /api/predict/batch)")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def flag(request: Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter (read by hand: FastAPI's parameter machinery costs more than the model)."""
    value = request.query_params.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise HTTPException(422, f"query parameter {name!r} must be true or false (1 or 0), got {value!r}")


def activation_options(request: Request, known: Iterable[str]) -> tuple[str, list[str] | None]:
    """``act_format`` and ``layers`` from the query string (422 for an unknown format or layer name).

    ``known``: the model's activation layers. ``layers`` None: all of them.
    """
    fmt = request.query_params.get("act_format", "json").lower() or "json"
    if fmt not in ACT_FORMATS:
        raise HTTPException(422, f"query parameter 'act_format' must be 'json' or 'u8', got {fmt!r}")
    value = request.query_params.get("layers")
    if value is None:
        return fmt, None
    known = list(known)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise HTTPException(422, f"unknown activation layer {unknown[0]!r}; this model has: "
                                 f"{', '.join(known) or '(none)'}")
    return fmt, names


def page_language(header: str) -> str:
    """The page's language from an Accept-Language header: 'zh-CN' when Chinese comes before English, else 'en'."""
    best: tuple[float, int, str] | None = None
    for i, part in enumerate(header.split(",")):
        tag, _, q = part.strip().partition(";q=")
        tag = tag.strip().lower()
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        lang = "zh-CN" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if lang and weight > 0 and (best is None or (weight, -i) > (best[0], -best[1])):
            best = (weight, i, lang)
    return best[2] if best else "en"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_form(request: Request, max_files: int, too_many: tuple[int, str]) -> FormData:
    """The multipart form, with ``too_many`` (status, message) instead of Starlette's 400 for extra files."""
    try:
        return await request.form(max_files=max_files, max_fields=max_files + 4)
    except HTTPException as e:
        if "Too many files" in str(e.detail):  # Starlette's multipart limit says so only in its text
            raise HTTPException(*too_many) from None
        raise


@dataclass
class Input:
    """One request's digit: the model input, the uint8 image shown back, and the number fields when
    the body was a picture read as what is written (None for JSON pixels: they are one digit)."""

    x: np.ndarray
    shown: np.ndarray
    number: dict[str, Any] | None = None
    whole: DigitReading | None = None  # a picture's reading as one digit, made while reading the number
    model_ms: float = 0.0  # ... and the time it spent in the model


async def read_input(request: Request, model: ServedModel, *, numbers: bool = True, single: bool = False,
                     reject: bool = True) -> Input:
    """The body of /api/predict or /api/explain -> :class:`Input`, by content type (else 415).

    ``numbers``: read a picture as one digit or a number (``single``: always one digit), filling
    ``number``; without it a picture is only decoded to its 28x28 input.
    """
    kind = media_type(request)
    if kind == "application/json":
        x, shown = pixels_to_input(parse_pixels(await request.body()))
        return Input(x, shown)
    if kind == "multipart/form-data":
        data = await read_upload(request)
    elif kind.startswith("image/") or kind == "application/octet-stream":
        data = await request.body()
    else:
        raise HTTPException(415, f"unsupported content type {kind or '(none)'!r}; send multipart/form-data "
                                 "(field 'file'), an image/* body, or application/json pixels")
    await stop_if_gone(request)
    if not numbers:
        x = await picture_to_input_async(data, model.max_pixels)
        return Input(x, x)
    number, whole, ms = await read_picture_async(model, data, single, reject)
    x = np.asarray(whole.image, dtype=np.uint8)
    return Input(x, x, number, whole, ms)


async def stop_if_gone(request: Request) -> None:
    """Raise 499 when the client has closed the request (the page gave up on it for a newer drawing),
    so no work is spent on an answer nobody reads. The loop first runs once, so a close that has
    already reached the socket is seen."""
    await anyio.lowlevel.checkpoint()
    if await request.is_disconnected():
        raise HTTPException(499, "the client closed the request")


async def read_upload(request: Request) -> bytes:
    """The bytes of the one picture in a multipart form's field ``file``."""
    form = await read_form(request, 1, ONE_PICTURE)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "no picture in the form; upload it in a field named 'file'")
        return await upload.read()
    finally:
        await form.close()


def picture_to_input(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded picture bytes -> (28, 28) uint8."""
    if not data:
        raise HTTPException(422, EMPTY)
    x = load_digit(data, max_pixels)
    return np.asarray(x, dtype=np.uint8).reshape(28, 28)


def warm_up(max_pixels: int) -> None:
    """Decode one small picture, so the first request does not pay for the decoders' imports (~1-2 s)."""
    a = np.zeros((28, 28), np.uint8)
    a[5:23, 12:16] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    try:
        picture_to_input(buf.getvalue(), max_pixels)
    except ImageError:  # pragma: no cover - only the imports matter here
        pass


async def picture_to_input_async(data: bytes, max_pixels: int) -> np.ndarray:
    if len(data) <= INLINE_DECODE_BYTES:
        return picture_to_input(data, max_pixels)
    return await anyio.to_thread.run_sync(picture_to_input, data, max_pixels)


def parse_pixels(body: bytes) -> PixelsRequest:
    try:
        return PixelsRequest.model_validate_json(body)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
        raise HTTPException(422, validation_message(errors)) from None


def pixels_to_input(req: PixelsRequest) -> tuple[np.ndarray, np.ndarray]:
    """JSON pixels -> (model input, the uint8 image shown back)."""
    rows = req.pixels
    nested = bool(rows) and isinstance(rows[0], list)
    if not (len(rows) == 784 and not nested or len(rows) == 28 and all(len(r) == 28 for r in rows)):
        raise HTTPException(422, f"pixels must be 28 rows of 28 values or a flat list of 784 values, got "
                                 f"{describe_shape(req.pixels)}")
    a = np.asarray(rows, dtype=np.float64).reshape(28, 28)
    top = 255.0 if req.scale == "byte" else 1.0
    bad = ~np.isfinite(a) | (a < 0) | (a > top)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise HTTPException(422, f"pixel values must be between 0 and {top:g} with scale={req.scale!r}; "
                                 f"found {a[r, c]:g} at row {r}, column {c}")
    shown = np.rint(a if req.scale == "byte" else a * 255.0).astype(np.uint8)
    if int(shown.max()) - int(shown.min()) < BLANK_RANGE:
        raise HTTPException(422, "the pixels are blank (no ink: every value within 5% of the others); "
                                 "send a digit drawn in white (high values) on black (0)")
    if req.preprocess:
        try:
            shown = np.asarray(to_mnist(shown), dtype=np.uint8).reshape(28, 28)
        except ImageError as e:
            raise HTTPException(422, str(e)) from None
        return shown, shown
    if req.scale == "unit":
        return a.astype(np.float32), shown
    return shown, shown


def describe_shape(pixels: list) -> str:
    if pixels and isinstance(pixels[0], list):
        lengths = sorted({len(row) for row in pixels})
        widths = str(lengths[0]) if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"
        return f"{len(pixels)} rows of {widths} values"
    return f"a flat list of {len(pixels)} values"
