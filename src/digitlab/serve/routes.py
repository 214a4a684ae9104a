"""The endpoints: each reads its request (:mod:`.parsing`), asks the model (:mod:`.adapter`) and answers JSON.

Errors are raised, never answered here: :mod:`.errors` maps them to statuses by type.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from digitlab.errors import DigitlabError
from digitlab.serve import parsing
from digitlab.serve.adapter import ServedModel
from digitlab.serve.errors import upload_message
from digitlab.serve.openapi import BATCH_BODY, ERRORS, PREDICT_BODY
from digitlab.serve.responses import dumps, json_response
from digitlab.serve.schemas import BatchResponse, Health, ModelInfo, Prediction

STATIC_DIR = Path(str(resources.files("digitlab.serve") / "static"))

INDEX_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def router(model: ServedModel, *, max_upload_bytes: int, max_batch: int) -> APIRouter:
    """The API and the page's root for one model."""
    api = APIRouter()
    info_json = dumps(model.info(max_upload_bytes, max_batch))
    health_json = dumps({"status": "ok", "model": model.predictor.name})
    one_picture = (422, "send one picture per request, in the field 'file' (several go to /api/predict/batch)")
    too_many = (413, f"too many files; send at most {max_batch} per request")

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
        kind = parsing.media_type(request)
        if kind == "multipart/form-data":
            form = await parsing.read_form(request, 1, one_picture)
            try:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise HTTPException(422, "no picture in the form; upload it in a field named 'file'")
                data = await upload.read()
            finally:
                await form.close()
            x = shown = await parsing.picture_to_input_async(data, model.max_pixels)
        elif kind == "application/json":
            x, shown = parsing.pixels_to_input(parsing.parse_pixels(await request.body()))
        elif kind.startswith("image/") or kind == "application/octet-stream":
            x = shown = await parsing.picture_to_input_async(await request.body(), model.max_pixels)
        else:
            what = kind or "(none)"
            raise HTTPException(415, f"unsupported content type {what!r}; send multipart/form-data "
                                     "(field 'file'), an image/* body, or application/json pixels")
        return json_response(dumps(model.predict(x, shown, activations)))

    @api.post("/api/predict/batch", response_model=BatchResponse, responses=ERRORS, tags=["predict"],
              openapi_extra=BATCH_BODY)
    async def predict_batch(request: Request) -> Response:
        """Predict several pictures at once (multipart field `files`, at most `max_batch`).

        A file that cannot be used (not an image, blank, too large) gets its own error entry with the
        status a single request would have had; the request as a whole fails (4xx) only when it is
        not multipart, holds no files, holds too many, or is over the size limit.
        """
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
        results = await anyio.to_thread.run_sync(batch, model, uploads)
        return json_response(dumps(results))

    @api.get("/", include_in_schema=False)
    async def index() -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=INDEX_HEADERS)

    return api


def batch(model: ServedModel, uploads: list[tuple[str | None, bytes]]) -> dict[str, Any]:
    """Every usable picture predicted in one model call; the others with their own status and reason."""
    items: list[dict[str, Any]] = []
    good: list[tuple[int, np.ndarray]] = []
    for i, (filename, data) in enumerate(uploads):
        try:
            x = parsing.picture_to_input(data, model.max_pixels)
        except HTTPException as e:
            status, error = e.status_code, str(e.detail)
        except DigitlabError as e:
            status, error = e.http_status, upload_message(e)
        else:
            items.append({"index": i, "filename": filename, "ok": True, "status": 200, "error": None,
                          "prediction": None})
            good.append((i, x))
            continue
        items.append({"index": i, "filename": filename, "ok": False, "status": status, "error": error,
                      "prediction": None})
    if good:
        proba, ms = model.predict_many([x for _, x in good])
        for (i, x), p in zip(good, proba, strict=True):
            items[i]["prediction"] = model.result(p, x, ms / len(good))
    return {"count": len(items), "ok": len(good), "results": items}
