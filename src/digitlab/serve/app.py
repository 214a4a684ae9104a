"""The FastAPI application: a REST API over one model, and the drawing page.

Endpoints::

    GET  /                   the page: draw a digit, watch the probabilities and activations
    POST /api/predict        one picture (multipart field ``file``, or a raw image/* body) or JSON pixels
    POST /api/predict/batch  several pictures (multipart field ``files``, at most ``max_batch``)
    POST /api/explain        the same bodies as /api/predict -> pixel maps of the answer and the runner-up
    GET  /api/model          name, architecture rows, parameter count, test accuracy
    GET  /api/sample         a random MNIST test digit (28x28 and label) when the dataset is on this machine
    GET  /healthz            liveness
    GET  /docs, /openapi.json   (Swagger UI 5 shipped in static/swagger/: works offline)

Every error is a JSON body ``{"detail": "..."}`` with a 4xx status and no traceback. The model is
loaded once, when the app is created, through :func:`digitlab.inference.predictor.load_predictor`; this module
never imports torch itself, so an ONNX file can be served without it.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from digitlab.errors import ImageError
from digitlab.inference.detector import THRESHOLD as DIGIT_THRESHOLD
from digitlab.inference.detector import digit_scores
from digitlab.inference.predictor import Predictor, load_predictor
from digitlab.serve.limits import BodyLimit
from digitlab.serve.numbers import read_picture, read_picture_async, single_fields
from digitlab.serve.schemas import (
    BatchResponse,
    ErrorBody,
    Explanation,
    Health,
    ModelInfo,
    PixelsRequest,
    Prediction,
    Sample,
)

try:  # optional: ~20x faster JSON for the 28x28 input and the activations; the json module otherwise
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

DEFAULT_MAX_UPLOAD_BYTES = 4_000_000
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_PIXELS = 20_000_000  # a 20-megapixel photo; larger pictures are refused before decoding
INLINE_DECODE_BYTES = 64_000  # smaller pictures are decoded on the event loop, larger ones in a thread
BLANK_RANGE = 13  # JSON pixels that vary less than this (5% of 255) hold no ink: 422, like a blank picture

# Environment variables read by create_app_from_env (uvicorn --workers N imports the app in each worker).
ENV_MODEL = "DIGITLAB_SERVE_MODEL"
ENV_MAX_UPLOAD = "DIGITLAB_SERVE_MAX_UPLOAD_BYTES"
ENV_MAX_BATCH = "DIGITLAB_SERVE_MAX_BATCH"
ENV_THREADS = "DIGITLAB_SERVE_THREADS"

STATIC_DIR = Path(str(resources.files("digitlab.serve") / "static"))

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [(413, "Body or picture too large"), (415, "Not an image / unsupported content type"),
                       (422, "Malformed JSON, wrong shape, values out of range, or a blank picture"),
                       (400, "Malformed multipart body")]
}

_ACTIVATIONS_PARAM = {
    "name": "activations", "in": "query", "required": False,
    "description": "Include each hidden layer's output (true/false, 1/0).",
    "schema": {"type": "boolean", "default": False},
}

_SINGLE_PARAM = {
    "name": "single", "in": "query", "required": False,
    "description": "Read the picture as one digit; by default it is read as what is written, one digit "
                   "or a number (fields number, number_confidence, digits).",
    "schema": {"type": "boolean", "default": False},
}

_REJECT_PARAM = {
    "name": "reject", "in": "query", "required": False,
    "description": "Answer label and name null when the picture holds no digit (is_digit false); "
                   "reject=0 always gives the most likely class.",
    "schema": {"type": "boolean", "default": True},
}

_ACT_FORMAT_PARAM = {
    "name": "act_format", "in": "query", "required": False,
    "description": "How activations are written: `json` (nested lists of floats, the default) or `u8`: "
                   "each layer as `{\"shape\": [...], \"scale\": s, \"data\": base64}` where `data` holds "
                   "one uint8 per value, row-major, and a value is `byte * scale` (negatives clipped to 0).",
    "schema": {"type": "string", "enum": ["json", "u8"], "default": "json"},
}

_LAYERS_PARAM = {
    "name": "layers", "in": "query", "required": False,
    "description": "Comma-separated activation layer names (see /api/model `activation_layers`); "
                   "only these are sent. All of them by default.",
    "schema": {"type": "string"},
}

_PREDICT_BODY = {
    "parameters": [_ACTIVATIONS_PARAM, _ACT_FORMAT_PARAM, _LAYERS_PARAM, _REJECT_PARAM, _SINGLE_PARAM],
    "requestBody": {
        "required": True,
        "description": "One picture as a multipart upload (field `file`) or as the raw body with an "
                       "image/* content type, or JSON pixels (the model input as-is).",
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}}}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/PixelsRequest"}},
        },
    }
}

_BATCH_BODY = {
    "parameters": [_REJECT_PARAM, _SINGLE_PARAM],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["files"],
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        },
    }
}


class ServedModel:
    """One loaded predictor and everything the endpoints need from it, computed once."""

    def __init__(self, predictor: Predictor, source: str, max_pixels: int):
        self.predictor = predictor
        self.source = source
        self.max_pixels = max_pixels
        self.labels = [str(s) for s in predictor.labels]
        probe = np.zeros((1, 28, 28), np.uint8)
        acts = predictor.activations(probe)
        self.activation_shapes = {k: list(np.asarray(v).shape[1:]) for k, v in acts.items()}
        predictor.predict_proba(probe)  # warm up (first call allocates)

    # -- pictures -> model input -------------------------------------------------------------

    def picture_to_input(self, data: bytes) -> np.ndarray:
        """Encoded picture bytes -> (28, 28) uint8, through ``load_digit`` exactly as ``digitlab predict``."""
        from digitlab.data.pictures import load_digit

        if not data:
            raise HTTPException(422, "the body is empty; send a picture of a digit")
        try:
            x = load_digit(data, self.max_pixels)
        except ImageError as e:
            raise HTTPException(_image_error_status(e), _upload_message(e)) from None
        return np.asarray(x, dtype=np.uint8).reshape(28, 28)

    async def picture_to_input_async(self, data: bytes) -> np.ndarray:
        if len(data) <= INLINE_DECODE_BYTES:
            return self.picture_to_input(data)
        return await anyio.to_thread.run_sync(self.picture_to_input, data)

    def pixels_to_input(self, req: PixelsRequest) -> tuple[np.ndarray, np.ndarray]:
        """JSON pixels -> (model input, the uint8 image shown back)."""
        rows = req.pixels
        nested = bool(rows) and isinstance(rows[0], list)
        if not (len(rows) == 784 and not nested or len(rows) == 28 and all(len(r) == 28 for r in rows)):
            raise HTTPException(422, f"pixels must be 28 rows of 28 values or a flat list of 784 values, got "
                                     f"{_describe_shape(req.pixels)}")
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
            from digitlab.data.pictures import to_mnist

            try:
                shown = np.asarray(to_mnist(shown), dtype=np.uint8).reshape(28, 28)
            except ImageError as e:
                raise HTTPException(422, str(e)) from None
            return shown, shown
        if req.scale == "unit":
            return a.astype(np.float32), shown
        return shown, shown

    # -- the model ---------------------------------------------------------------------------

    def predict(self, x: np.ndarray, shown: np.ndarray, with_activations: bool, act_format: str = "json",
                layers: list[str] | None = None, reject: bool = True) -> dict[str, Any]:
        t0 = time.perf_counter()
        proba = np.asarray(self.predictor.predict_proba(x[None]), dtype=np.float32)[0]
        ms = (time.perf_counter() - t0) * 1000.0
        result = self.result(proba, shown, ms, float(digit_scores(shown)[0]), reject)
        if with_activations:
            acts = self.predictor.activations(x[None])
            if layers is not None:
                acts = {k: acts[k] for k in layers}
            encode = _u8 if act_format == "u8" else _rounded
            result["activations"] = {k: encode(np.asarray(v)[0]) for k, v in acts.items()}
        return result

    def activation_options(self, request: Request) -> tuple[str, list[str] | None]:
        """``act_format`` and ``layers`` from the query string (422 for unknown values)."""
        fmt = request.query_params.get("act_format", "json").lower() or "json"
        if fmt not in ("json", "u8"):
            raise HTTPException(422, f"query parameter 'act_format' must be 'json' or 'u8', got {fmt!r}")
        value = request.query_params.get("layers")
        if value is None:
            return fmt, None
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in self.activation_shapes]
        if unknown:
            known = ", ".join(self.activation_shapes) or "(none)"
            raise HTTPException(422, f"unknown activation layer {unknown[0]!r}; this model has: {known}")
        return fmt, names

    def predict_many(self, xs: list[np.ndarray]) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        proba = np.asarray(self.predictor.predict_proba(np.stack(xs)), dtype=np.float32)
        return proba, (time.perf_counter() - t0) * 1000.0

    def result(self, proba: np.ndarray, shown: np.ndarray, ms: float, score: float = 1.0,
               reject: bool = True) -> dict[str, Any]:
        probs = proba.astype(np.float64).tolist()
        order = np.argsort(-proba, kind="stable")[:3].tolist()
        k = order[0]
        digit = score >= DIGIT_THRESHOLD
        return {
            "label": k if digit or not reject else None,
            "name": self.labels[k] if digit or not reject else None,
            "is_digit": digit,
            "digit_score": round(score, 6),
            "confidence": probs[k],
            "probabilities": probs,
            "top3": [{"label": i, "name": self.labels[i], "probability": probs[i]} for i in order],
            "input": np.ascontiguousarray(shown, dtype=np.uint8),
            "model_ms": round(ms, 4),
            "activations": None,
        }

    # -- /api/model --------------------------------------------------------------------------

    def info(self, max_upload_bytes: int, max_batch: int) -> dict[str, Any]:
        p = self.predictor
        rows, params = _architecture(p)
        metrics = p.metrics or {}
        follows = {}
        for prev, row in zip(rows, rows[1:], strict=False):
            follows[row["name"]] = prev["name"]
        dataset = p.config.get("dataset") if isinstance(p.config, dict) else None
        return {
            "name": p.name,
            "source": self.source,
            "dataset": dataset if isinstance(dataset, str) else None,
            "labels": self.labels,
            "architecture": rows,
            "parameters": params,
            "test_accuracy": _number(metrics.get("test_accuracy")),
            "test_loss": _number(metrics.get("test_loss")),
            "activation_layers": [{"name": k, "shape": s, "follows": follows.get(k)}
                                  for k, s in self.activation_shapes.items()],
            "max_upload_bytes": max_upload_bytes,
            "max_batch": max_batch,
            "unsure_below": _unsure_below(p.config),
        }


def create_app(model_path: str | os.PathLike, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, *,
               max_batch: int = DEFAULT_MAX_BATCH, max_pixels: int = DEFAULT_MAX_PIXELS,
               torch_threads: int | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The API and page for one model (a run folder or an ``.onnx`` file), loaded once, here.

    ``torch_threads`` caps PyTorch's intra-op threads (the server uses 1: requests are small and
    arrive in parallel). ``predictor`` skips loading when one is already at hand.
    """
    if max_upload_bytes <= 0:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    if max_batch <= 0:
        raise ValueError(f"max_batch must be positive, got {max_batch}")
    path = Path(model_path)
    if predictor is None:
        predictor = load_predictor(path)
    if torch_threads is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(torch_threads)
    source = "onnx" if path.suffix.lower() == ".onnx" else "run"
    model = ServedModel(predictor, source, max_pixels)
    info_json = _dumps(model.info(max_upload_bytes, max_batch))
    health_json = _dumps({"status": "ok", "model": predictor.name})

    app = FastAPI(
        title="digitlab",
        summary="Handwritten-digit recognition: predict from pictures or pixels, inspect the model.",
        description=(
            "Send a picture of one digit (multipart field `file`, or the raw body as `image/png` / "
            "`image/jpeg`) to **POST /api/predict**; it is centred and scaled like MNIST (white ink on "
            "black, 28x28), exactly as `digitlab predict` does. Or send JSON pixels: 28x28 nested or 784 "
            "flat, values 0-255 (or 0-1 with `\"scale\": \"unit\"`), taken as the model input as-is "
            "unless `\"preprocess\": true`. Errors are JSON `{\"detail\": ...}` with a 4xx status."
        ),
        version=_version(),
        redoc_url=None,
        docs_url=None,
    )
    app.state.model = model
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    _install_error_handlers(app)

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Response:
        """Liveness: the model is loaded and the server answers."""
        return _json_response(health_json)

    @app.get("/api/model", response_model=ModelInfo, tags=["model"])
    async def model_info() -> Response:
        """The model's name, Keras-like architecture rows, parameter count and test accuracy."""
        return _json_response(info_json)

    @app.post("/api/predict", response_model=Prediction, responses=_ERRORS, tags=["predict"],
              openapi_extra=_PREDICT_BODY)
    async def predict(request: Request) -> Response:
        """Predict the digit in one picture, or in 28x28 JSON pixels."""
        # (the query parameter is read by hand: FastAPI's parameter machinery costs more than the model)
        activations = _flag(request, "activations")
        act_format, layers = model.activation_options(request)
        reject = _flag(request, "reject", default=True)
        single, number = _flag(request, "single"), None
        kind = _media_type(request)
        if kind == "multipart/form-data":
            async with _form(request, max_files=1) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise HTTPException(422, "no picture in the form; upload it in a field named 'file'")
                data = await upload.read()
            x, number = await read_picture_async(model, data, single, reject)
            shown = x
        elif kind == "application/json":
            req = _parse_pixels(await request.body())
            x, shown = model.pixels_to_input(req)
        elif kind.startswith("image/") or kind == "application/octet-stream":
            x, number = await read_picture_async(model, await request.body(), single, reject)
            shown = x
        else:
            what = kind or "(none)"
            raise HTTPException(415, f"unsupported content type {what!r}; send multipart/form-data "
                                     "(field 'file'), an image/* body, or application/json pixels")
        result = model.predict(x, shown, activations, act_format, layers, reject)
        result.update(number or single_fields(result))
        return _json_response(_dumps(result))

    samples = _MnistSamples()

    @app.get("/api/sample", response_model=Sample, tags=["model"],
             responses={404: {"model": ErrorBody, "description": "No MNIST test set on this server"}})
    async def sample() -> Response:
        """A random MNIST test digit: ``{"pixels": 28x28 uint8, "label": int, "index": int}``.

        Read from the MNIST files already on this machine (``$DIGITLAB_DATA_DIR`` or the cache);
        404 when there are none (nothing is downloaded).
        """
        item = await anyio.to_thread.run_sync(samples.pick)
        if item is None:
            raise HTTPException(404, "no MNIST test set on this server (set DIGITLAB_DATA_DIR to a folder "
                                     "holding mnist/)")
        return _json_response(_dumps(item))

    @app.post("/api/explain", response_model=Explanation, responses=_ERRORS, tags=["predict"],
              openapi_extra=_PREDICT_BODY)
    async def explain(request: Request) -> Response:
        """Which pixels pushed the answer up or down: occlusion maps (28x28 floats in [-1, 1]) for the
        predicted class and the runner-up. The same bodies as /api/predict."""
        kind = _media_type(request)
        if kind == "multipart/form-data":
            async with _form(request, max_files=1) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise HTTPException(422, "no picture in the form; upload it in a field named 'file'")
                data = await upload.read()
            x = await model.picture_to_input_async(data)
        elif kind == "application/json":
            x, _ = model.pixels_to_input(_parse_pixels(await request.body()))
        elif kind.startswith("image/") or kind == "application/octet-stream":
            x = await model.picture_to_input_async(await request.body())
        else:
            raise HTTPException(415, f"unsupported content type {kind or '(none)'!r}; send multipart/form-data "
                                     "(field 'file'), an image/* body, or application/json pixels")
        from digitlab.inference.explain import explain as explain_input

        result = await anyio.to_thread.run_sync(lambda: explain_input(model.predictor, x).to_dict())
        return _json_response(_dumps(result))

    @app.post("/api/predict/batch", response_model=BatchResponse, responses=_ERRORS, tags=["predict"],
              openapi_extra=_BATCH_BODY)
    async def predict_batch(request: Request) -> Response:
        """Predict several pictures at once (multipart field `files`, at most `max_batch`).

        A file that cannot be used (not an image, blank, too large) gets its own error entry with the
        status a single request would have had; the request as a whole fails (4xx) only when it is
        not multipart, holds no files, holds too many, or is over the size limit.
        """
        if _media_type(request) != "multipart/form-data":
            raise HTTPException(415, "send the pictures as multipart/form-data in fields named 'files'")
        try:
            form = await request.form(max_files=max_batch, max_fields=max_batch + 4)
        except HTTPException as e:
            if "Too many files" in str(e.detail):
                raise HTTPException(413, f"too many files; send at most {max_batch} per request") from None
            raise
        try:
            uploads = [(u.filename, await u.read())
                       for u in form.getlist("files") if isinstance(u, UploadFile)]
        finally:
            await form.close()
        if not uploads:
            raise HTTPException(422, "no pictures in the form; upload them in fields named 'files'")
        results = await anyio.to_thread.run_sync(_batch, model, uploads, _flag(request, "reject", default=True),
                                                 _flag(request, "single"))
        return _json_response(_dumps(results))

    index_headers = {
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                                   "connect-src 'self'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        # the page speaks the language the browser prefers: Accept-Language picks the first text it shows
        lang = _page_language(request.headers.get("accept-language", ""))
        html = (STATIC_DIR / "index.html").read_text("utf-8").replace('<html lang="en">', f'<html lang="{lang}">', 1)
        return Response(html, media_type="text/html; charset=utf-8",
                        headers={**index_headers, "Vary": "Accept-Language"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="digitlab API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _document_pixels_body(app)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (one per worker): settings come from DIGITLAB_SERVE_* vars."""
    path = os.environ.get(ENV_MODEL)
    if not path:
        raise RuntimeError(f"{ENV_MODEL} is not set; it must name the run folder or .onnx file to serve")
    threads = os.environ.get(ENV_THREADS)
    return create_app(path, int(os.environ.get(ENV_MAX_UPLOAD, DEFAULT_MAX_UPLOAD_BYTES)),
                      max_batch=int(os.environ.get(ENV_MAX_BATCH, DEFAULT_MAX_BATCH)),
                      torch_threads=int(threads) if threads else None)


# -- helpers ------------------------------------------------------------------------------------


def _document_pixels_body(app: FastAPI) -> None:
    """/api/predict reads its body by content type, so FastAPI does not see PixelsRequest: add it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                               description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            ref = "#/components/schemas/{model}"
            schemas["PixelsRequest"] = PixelsRequest.model_json_schema(ref_template=ref)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _batch(model: ServedModel, uploads: list[tuple[str | None, bytes]], reject: bool = True,
           single: bool = False) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    good: list[tuple[int, np.ndarray]] = []
    numbers: dict[int, dict[str, Any]] = {}
    for i, (filename, data) in enumerate(uploads):
        try:
            x, numbers[i] = read_picture(model, data, single, reject)
        except HTTPException as e:
            items.append({"index": i, "filename": filename, "ok": False, "status": e.status_code,
                          "error": str(e.detail), "prediction": None})
            continue
        items.append({"index": i, "filename": filename, "ok": True, "status": 200, "error": None,
                      "prediction": None})
        good.append((i, x))
    if good:
        proba, ms = model.predict_many([x for _, x in good])
        scores = digit_scores(np.stack([x for _, x in good]))
        for (i, x), p, score in zip(good, proba, scores, strict=True):
            items[i]["prediction"] = model.result(p, x, ms / len(good), float(score), reject) | numbers[i]
    return {"count": len(items), "ok": len(good), "results": items}


def _form(request: Request, max_files: int):
    """The multipart form, with 'one picture please' instead of Starlette's 400 for extra files."""
    return _FormWithLimit(request, max_files)


class _FormWithLimit:
    def __init__(self, request: Request, max_files: int):
        self.request = request
        self.max_files = max_files
        self.form = None

    async def __aenter__(self):
        try:
            self.form = await self.request.form(max_files=self.max_files, max_fields=4)
        except HTTPException as e:
            if "Too many files" in str(e.detail):
                raise HTTPException(422, "send one picture per request, in the field 'file' "
                                         "(several go to /api/predict/batch)") from None
            raise
        return self.form

    async def __aexit__(self, *exc: object) -> None:
        if self.form is not None:
            await self.form.close()


def _parse_pixels(body: bytes) -> PixelsRequest:
    try:
        return PixelsRequest.model_validate_json(body)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
        raise HTTPException(422, _validation_message(errors)) from None


def _validation_message(errors: Iterable[dict[str, Any]]) -> str:
    errors = list(errors)
    if any(err.get("type") == "json_invalid" for err in errors):
        err = next(err for err in errors if err.get("type") == "json_invalid")
        return f"malformed JSON ({err.get('ctx', {}).get('error', err.get('msg'))}); send e.g. " \
               '{"pixels": [[0, 0, ...], ...]}'
    if any(err.get("loc", ())[:1] == ("pixels",) for err in errors):
        mine = [err for err in errors if err.get("loc", ())[:1] == ("pixels",)]
        if mine[0].get("type") == "missing":
            return "missing 'pixels': send 28 rows of 28 numbers or a flat list of 784 numbers"
        # the union branch that got furthest: the deepest error, a wrong value before a wrong shape
        deepest = max(mine, key=lambda err: (len(err["loc"]), err.get("type") == "float_type"))
        where = [p for p in deepest["loc"][2:] if isinstance(p, int)]
        if deepest.get("type") == "float_type" and where:
            at = f"row {where[0]}, column {where[1]}" if len(where) == 2 else f"index {where[0]}"
            return f"pixel values must be numbers; found something else at {at}"
        return "pixels must be 28 rows of 28 numbers or a flat list of 784 numbers"
    if any(err.get("type") == "model_type" and not err.get("loc") for err in errors):
        return 'the JSON body must be an object like {"pixels": [[0, 0, ...], ...]}'
    parts = []
    for err in errors[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def _describe_shape(pixels: list) -> str:
    if pixels and isinstance(pixels[0], list):
        lengths = sorted({len(row) for row in pixels})
        widths = str(lengths[0]) if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"
        return f"{len(pixels)} rows of {widths} values"
    return f"a flat list of {len(pixels)} values"


def _image_error_status(e: ImageError) -> int:
    """413 for pictures too large to decode, 415 for what is not an image, 422 for the rest (blank...)."""
    status = getattr(e, "status", None)
    if isinstance(status, int):
        return status
    text = str(e).lower()
    if "too large" in text or "decompression" in text:
        return 413
    if "not an image" in text or "cannot be read" in text:
        return 415
    return 422


def _upload_message(e: ImageError) -> str:
    """The images module calls bytes 'the given data'; over HTTP they are 'the upload'."""
    text = str(e)
    prefix = "the given data"
    return "the upload" + text[len(prefix):] if text.startswith(prefix) else text


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": _validation_message(exc.errors())}, status_code=422)

    async def server_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": "internal server error; the server log has the details"},
                            status_code=500)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)


def _architecture(predictor: Predictor) -> tuple[list[dict[str, Any]], int | None]:
    """Summary rows and parameter count: from the torch model when there is one, else from the config."""
    torch = sys.modules.get("torch")
    net = getattr(predictor, "model", None)
    if torch is not None and isinstance(net, torch.nn.Module) and hasattr(net, "image_input"):
        from digitlab.models import count_params, summary_rows

        rows = [{"name": r.name, "kind": r.kind, "output_shape": list(r.output_shape),
                 "params": int(r.params)} for r in summary_rows(net)]
        return rows, int(count_params(net))
    config = predictor.config if isinstance(predictor.config, dict) else {}
    rows = []
    for r in config.get("architecture") or config.get("summary") or []:
        try:
            rows.append({"name": str(r["name"]), "kind": str(r["kind"]),
                         "output_shape": [None if d is None else int(d) for d in r["output_shape"]],
                         "params": int(r["params"])})
        except (KeyError, TypeError, ValueError):
            return [], _number_int(config.get("parameters"))
    params = _number_int(config.get("parameters"))
    if params is None and rows:
        params = sum(r["params"] for r in rows)
    return rows, params


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _number_int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _u8(a: np.ndarray) -> dict[str, Any]:
    """One layer's activations as 8 bits a value: ``{"shape", "scale", "data"}`` (value = byte * scale)."""
    a = np.maximum(np.nan_to_num(a.astype(np.float32, copy=False)), 0.0)
    top = float(a.max()) if a.size else 0.0
    scale = top / 255.0 if top > 0 else 1.0
    q = np.rint(a / scale).astype(np.uint8)
    return {"shape": list(a.shape), "scale": scale, "data": base64.b64encode(q.tobytes()).decode("ascii")}


def _unsure_below(config: Any) -> float:
    """The confidence under which the page says "not sure", one constant per model.

    Label smoothing (eps) caps a trained model's confidence near 1 - eps * (K - 1) / K, so a model
    trained with it never says 99 %: the threshold is 70 % of that ceiling (0.7 without smoothing).
    """
    fit = config.get("fit") if isinstance(config, dict) else None
    eps = fit.get("label_smoothing") if isinstance(fit, dict) else None
    eps = float(eps) if isinstance(eps, int | float) and 0 <= eps < 1 else 0.0
    return round(0.7 * (1.0 - eps * 0.9), 4)


def _page_language(header: str) -> str:
    """'zh-CN' when Accept-Language puts Chinese before English, else 'en'."""
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


class _MnistSamples:
    """MNIST's test set, read once from the files on this machine (never downloaded)."""

    def __init__(self) -> None:
        self.test: tuple[np.ndarray, np.ndarray] | None = None
        self.missing = False

    def pick(self) -> dict[str, Any] | None:
        if self.test is None and not self.missing:
            from digitlab.data.datasets import locate, read_source
            from digitlab.errors import DigitlabError

            try:
                source = locate("mnist")
                self.test = read_source(source)[1] if source is not None else None
            except (DigitlabError, OSError, ValueError):
                self.test = None
            self.missing = self.test is None
        if self.test is None:
            return None
        x, y = self.test
        i = int(np.random.default_rng().integers(len(x)))
        return {"pixels": np.ascontiguousarray(x[i], dtype=np.uint8), "label": int(y[i]), "index": i}


def _rounded(a: np.ndarray) -> np.ndarray:
    """Activations rounded to 4 decimals (plenty for a heat map; keeps the JSON short)."""
    return np.ascontiguousarray(np.round(a.astype(np.float32, copy=False), 4))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _flag(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise HTTPException(422, f"query parameter {name!r} must be true or false (1 or 0), got {value!r}")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _dumps(data: Any) -> bytes:
    """Compact JSON; numpy arrays become nested lists (uint8 as ints, floats in their shortest form)."""
    if orjson is not None:
        return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(data, separators=(",", ":"), allow_nan=False, default=_plain).encode()


def _plain(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        if o.dtype.kind == "f":  # float32 -> the same short decimals orjson writes
            return np.round(o.astype(np.float64), 4).tolist()
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("digitlab")
    except Exception:  # not installed (running from a source tree)
        return "0"
