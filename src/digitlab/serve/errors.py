"""Error mapping: every failure becomes ``{"detail": "..."}`` with the status its type carries.

A :class:`~digitlab.errors.DigitlabError` answers with its ``http_status`` (NotAnImageError 415,
ImageTooLargeError 413, ImageError 422, ...). Nothing here reads an error's message to choose a
status. An unexpected exception answers 500 with ``Connection: close``: the server then drops the
connection cleanly instead of leaving the client's next request on a socket it is closing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from digitlab.errors import DigitlabError
from digitlab.serve.responses import error_body

log = logging.getLogger("digitlab.serve")

CLOSE = {"Connection": "close"}


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(detail), status_code=status, media_type="application/json", headers=headers)


def upload_message(e: DigitlabError) -> str:
    """The pictures module calls bytes 'the given data'; over HTTP they are 'the upload'."""
    text = str(e)
    prefix = "the given data"
    return "the upload" + text[len(prefix):] if text.startswith(prefix) else text


def validation_message(errors: Iterable[dict[str, Any]]) -> str:
    """Pydantic's errors for a request -> one line a person can act on."""
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


def install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(exc.status_code, detail, exc.headers)

    async def digitlab_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DigitlabError)
        return error_response(exc.http_status, upload_message(exc))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, validation_message(exc.errors()))

    async def disconnected(request: Request, exc: Exception) -> Response:
        # the client went away (or was cut off by a timeout) while its body was read: nobody to answer
        return error_response(400, "the client disconnected before the request was complete", CLOSE)

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, "internal server error; the server log has the details", CLOSE)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(DigitlabError, digitlab_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(Exception, server_error)
