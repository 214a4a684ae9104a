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

HEAD works wherever GET does. Every error is a JSON body ``{"detail": "..."}`` with a 4xx status
and no traceback. The model is loaded once, when the app is created, through
:func:`digitlab.inference.predictor.load_predictor`; nothing in ``digitlab.serve`` imports torch itself,
so an ONNX file can be served without it.

The parts: :mod:`.routes` (endpoints), :mod:`.parsing` (requests -> model input), :mod:`.adapter`
(the predictor -> API dictionaries), :mod:`.errors` (exceptions -> statuses, by type),
:mod:`.openapi` (the request bodies FastAPI cannot infer), :mod:`.schemas` (the pydantic models),
:mod:`.guard` (host check, work and body limits), :mod:`.protocol` and :mod:`.server` (uvicorn).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from digitlab.inference.predictor import Predictor, load_predictor
from digitlab.serve.adapter import ServedModel
from digitlab.serve.errors import install_error_handlers
from digitlab.serve.guard import Guard
from digitlab.serve.openapi import install_openapi
from digitlab.serve.parsing import warm_up
from digitlab.serve.routes import STATIC_DIR, router

__all__ = ["STATIC_DIR", "create_app", "create_app_from_env"]

DEFAULT_MAX_UPLOAD_BYTES = 4_000_000
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_PIXELS = 20_000_000  # a 20-megapixel photo; larger pictures are refused before decoding
DEFAULT_MAX_IN_FLIGHT = 64  # requests being worked on at once (per process); more get 503

# Environment variables read by create_app_from_env (uvicorn --workers N imports the app in each worker).
ENV_MODEL = "DIGITLAB_SERVE_MODEL"
ENV_MAX_UPLOAD = "DIGITLAB_SERVE_MAX_UPLOAD_BYTES"
ENV_MAX_BATCH = "DIGITLAB_SERVE_MAX_BATCH"
ENV_THREADS = "DIGITLAB_SERVE_THREADS"
ENV_ALLOWED_HOSTS = "DIGITLAB_SERVE_ALLOWED_HOSTS"  # comma-separated; unset: no host check


def create_app(model_path: str | os.PathLike, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, *,
               max_batch: int = DEFAULT_MAX_BATCH, max_pixels: int = DEFAULT_MAX_PIXELS,
               torch_threads: int | None = None, predictor: Predictor | None = None,
               allowed_hosts: Iterable[str] | None = None,
               max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> FastAPI:
    """The API and page for one model (a run folder or an ``.onnx`` file), loaded once, here.

    ``torch_threads`` caps PyTorch's intra-op threads (the server uses 1: requests are small and
    arrive in parallel). ``predictor`` skips loading when one is already at hand.
    ``allowed_hosts``: the names the ``Host`` header may carry (None: any; ``digitlab serve``
    always passes a list). ``max_in_flight``: requests worked on at once; more get 503.
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
    warm_up(max_pixels)

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
        docs_url=None,  # /docs is served by .routes from /static/swagger/ (no CDN)
    )
    app.state.model = model
    app.add_middleware(Guard, max_bytes=max_upload_bytes, max_in_flight=max_in_flight,
                       allowed_hosts=allowed_hosts)
    install_error_handlers(app)
    app.include_router(router(model, max_upload_bytes=max_upload_bytes, max_batch=max_batch))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_openapi(app)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (one per worker): settings come from DIGITLAB_SERVE_* vars."""
    path = os.environ.get(ENV_MODEL)
    if not path:
        raise RuntimeError(f"{ENV_MODEL} is not set; it must name the run folder or .onnx file to serve")
    threads = os.environ.get(ENV_THREADS)
    hosts = os.environ.get(ENV_ALLOWED_HOSTS)
    return create_app(path, int(os.environ.get(ENV_MAX_UPLOAD, DEFAULT_MAX_UPLOAD_BYTES)),
                      max_batch=int(os.environ.get(ENV_MAX_BATCH, DEFAULT_MAX_BATCH)),
                      torch_threads=int(threads) if threads else None,
                      allowed_hosts=None if hosts is None else hosts.split(","))


def _version() -> str:
    try:
        return version("digitlab")
    except Exception:  # not installed (running from a source tree)
        return "0"
