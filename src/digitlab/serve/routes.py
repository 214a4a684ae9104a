"""The endpoints: each reads its request (:mod:`.parsing`), asks the model (:mod:`.adapter`) and answers JSON.

Also the page's root ``/`` (in the browser's language, from Accept-Language) and ``/docs``
(Swagger UI from /static/swagger/: it works offline). Errors are raised, never answered here:
:mod:`.errors` maps them to statuses by type.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from digitlab.errors import DigitlabError
from digitlab.inference.explain import explain as explain_input
from digitlab.serve import parsing
from digitlab.serve.adapter import MnistSamples, ServedModel
from digitlab.serve.errors import upload_message
from digitlab.serve.numbers import read_picture, single_fields
from digitlab.serve.openapi import BATCH_BODY, ERRORS, EXPLAIN_BODY, PREDICT_BODY
from digitlab.serve.responses import dumps, json_response
from digitlab.serve.schemas import BatchResponse, ErrorBody, Explanation, Health, ModelInfo, Prediction, Sample

log = logging.getLogger("digitlab.serve")

STATIC_DIR = Path(str(resources.files("digitlab.serve") / "static"))

INDEX_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
    "Vary": "Accept-Language",
}
PAGE_LANGUAGES = ("en", "zh-CN")


def router(model: ServedModel, *, max_upload_bytes: int, max_batch: int) -> APIRouter:
    """The API and the page's root for one model."""
    api = APIRouter()
    info_json = dumps(model.info(max_upload_bytes, max_batch))
    health_json = dumps({"status": "ok", "model": model.predictor.name})
    too_many = (413, f"too many files; send at most {max_batch} per request")
    samples = MnistSamples()
    page = (STATIC_DIR / "index.html").read_text("utf-8")
    pages = {lang: page.replace('<html lang="en">', f'<html lang="{lang}">', 1).encode("utf-8")
             for lang in PAGE_LANGUAGES}

    @api.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Response:
        """Liveness: the model is loaded and the server answers."""
        return json_response(health_json)

    @api.get("/api/model", response_model=ModelInfo, tags=["model"])
    async def model_info() -> Response:
        """The model's name, Keras-like architecture rows, parameter count and test accuracy."""
        return json_response(info_json)

    @api.post("/api/predict", response_model=Prediction, responses=ERRORS, tags=["predict"],
              openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> Response:
        """Predict the digit in one picture, or in 28x28 JSON pixels."""
        activations = parsing.flag(request, "activations")
        act_format, layers = parsing.activation_options(request, model.activation_shapes)
        reject = parsing.flag(request, "reject", default=True)
        single = parsing.flag(request, "single")
        got = await parsing.read_input(request, model, single=single, reject=reject)
        await parsing.stop_if_gone(request)
        if got.whole is not None and not activations:  # the model has read this input already
            result = model.answer(got.whole, got.model_ms, reject)
        else:
            result = model.predict(got.x, got.shown, activations, act_format, layers, reject,
                                   None if got.whole is None else got.whole.digit_score)
        result.update(got.number or single_fields(result))
        return json_response(dumps(result))

    @api.post("/api/explain", response_model=Explanation, responses=ERRORS, tags=["predict"],
              openapi_extra=EXPLAIN_BODY)
    async def explain(request: Request) -> Response:
        """Which pixels pushed the answer up or down: occlusion maps (28x28 floats in [-1, 1]) for the
        predicted class and the runner-up. The same bodies as /api/predict."""
        x = (await parsing.read_input(request, model, numbers=False)).x
        result = await anyio.to_thread.run_sync(lambda: explain_input(model.predictor, x).to_dict())
        return json_response(dumps(result))

    @api.post("/api/predict/batch", response_model=BatchResponse, responses=ERRORS, tags=["predict"],
              openapi_extra=BATCH_BODY)
    async def predict_batch(request: Request) -> Response:
        """Predict several pictures at once (multipart field `files`, at most `max_batch`).

        A file that cannot be used (not an image, blank, too large) gets its own error entry with the
        status a single request would have had; the request as a whole fails (4xx) only when it is
        not multipart, holds no files, holds too many, or is over the size limit.
        """
        reject = parsing.flag(request, "reject", default=True)
        single = parsing.flag(request, "single")
        if parsing.media_type(request) != "multipart/form-data":
            raise HTTPException(415, "send the pictures as multipart/form-data in fields named 'files'")
        form = await parsing.read_form(request, max_batch, too_many)
        try:
            uploads = [(u.filename, await u.read())
                       for u in form.getlist("files") if isinstance(u, UploadFile)]
        finally:
            await form.close()
        if not uploads:
            raise HTTPException(422, "no pictures in the form; upload them in fields named 'files'")
        results = await anyio.to_thread.run_sync(batch, model, uploads, reject, single)
        return json_response(dumps(results))

    @api.get("/api/sample", response_model=Sample, tags=["model"],
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
        return json_response(dumps(item))

    @api.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        # the page speaks the language the browser prefers: Accept-Language picks the first text it shows
        lang = parsing.page_language(request.headers.get("accept-language", ""))
        return Response(pages[lang], media_type="text/html; charset=utf-8", headers=INDEX_HEADERS)

    @api.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="digitlab API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")

    return api


def batch(model: ServedModel, uploads: list[tuple[str | None, bytes]], reject: bool = True,
          single: bool = False) -> dict[str, Any]:
    """Every usable picture read as /api/predict reads it (one digit or a number); the others with
    their own status and reason."""
    items: list[dict[str, Any]] = []
    good = 0
    for i, (filename, data) in enumerate(uploads):
        try:
            number, whole, ms = read_picture(model, data, single, reject)
        except HTTPException as e:
            status, error = e.status_code, str(e.detail)
        except DigitlabError as e:
            status, error = e.http_status, upload_message(e)
        except Exception:  # a fault of the server's own: this file's entry says so, the others are answered
            log.exception("reading file %d of a batch failed", i)
            status, error = 500, "internal server error while reading this picture"
        else:
            prediction = model.answer(whole, ms, reject) | number
            items.append({"index": i, "filename": filename, "ok": True, "status": 200, "error": None,
                          "prediction": prediction})
            good += 1
            continue
        items.append({"index": i, "filename": filename, "ok": False, "status": status, "error": error,
                      "prediction": None})
    return {"count": len(items), "ok": good, "results": items}
