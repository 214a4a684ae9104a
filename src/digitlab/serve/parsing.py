"""Request parsing: query flags, content types, multipart forms, JSON pixels and picture bytes -> model input.

Picture bytes go through :func:`digitlab.data.pictures.load_digit`, exactly as ``digitlab predict``;
its errors (typed :class:`~digitlab.errors.ImageError` subclasses) propagate and are answered with
their own status by :mod:`digitlab.serve.errors`.
"""

from __future__ import annotations

import anyio
import numpy as np
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from digitlab.errors import ImageError
from digitlab.serve.errors import validation_message
from digitlab.serve.schemas import PixelsRequest

INLINE_DECODE_BYTES = 64_000  # smaller pictures are decoded on the event loop, larger ones in a thread

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def flag(request: Request, name: str) -> bool:
    """A boolean query parameter (read by hand: FastAPI's parameter machinery costs more than the model)."""
    value = request.query_params.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise HTTPException(422, f"query parameter {name!r} must be true or false (1 or 0), got {value!r}")


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


def picture_to_input(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded picture bytes -> (28, 28) uint8."""
    from digitlab.data.pictures import load_digit

    if not data:
        raise HTTPException(422, "the body is empty; send a picture of a digit")
    x = load_digit(data, max_pixels)
    return np.asarray(x, dtype=np.uint8).reshape(28, 28)


def warm_up(max_pixels: int) -> None:
    """Decode one small picture, so the first request does not pay for the decoders' imports (~1-2 s)."""
    import io

    from PIL import Image

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
    if req.preprocess:
        from digitlab.data.pictures import to_mnist

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
