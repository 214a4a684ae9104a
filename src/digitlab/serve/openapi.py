"""The OpenAPI description's hand-written parts.

Responses are described by FastAPI from the response models in :mod:`digitlab.serve.schemas`.
Only the request bodies and query parameters of the predict and explain endpoints are written
here: those endpoints read their body by content type (a picture, a multipart form or JSON pixels)
and their query string by hand, neither of which FastAPI can infer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from digitlab.serve.schemas import ErrorBody, PixelsRequest

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [(413, "Body or picture too large"), (415, "Not an image / unsupported content type"),
                       (422, "Malformed JSON, wrong shape, values out of range, or a blank picture"),
                       (400, "Malformed multipart body")]
}

ACTIVATIONS_PARAM = {
    "name": "activations", "in": "query", "required": False,
    "description": "Include each hidden layer's output (true/false, 1/0).",
    "schema": {"type": "boolean", "default": False},
}

SINGLE_PARAM = {
    "name": "single", "in": "query", "required": False,
    "description": "Read the picture as one digit; by default it is read as what is written, one digit "
                   "or a number (fields number, number_confidence, digits).",
    "schema": {"type": "boolean", "default": False},
}

REJECT_PARAM = {
    "name": "reject", "in": "query", "required": False,
    "description": "Answer label and name null when the picture holds no digit (is_digit false); "
                   "reject=0 always gives the most likely class.",
    "schema": {"type": "boolean", "default": True},
}

ACT_FORMAT_PARAM = {
    "name": "act_format", "in": "query", "required": False,
    "description": "How activations are written: `json` (nested lists of floats, the default) or `u8`: "
                   "each layer as `{\"shape\": [...], \"scale\": s, \"data\": base64}` where `data` holds "
                   "one uint8 per value, row-major, and a value is `byte * scale` (negatives clipped to 0).",
    "schema": {"type": "string", "enum": ["json", "u8"], "default": "json"},
}

LAYERS_PARAM = {
    "name": "layers", "in": "query", "required": False,
    "description": "Comma-separated activation layer names (see /api/model `activation_layers`); "
                   "only these are sent. All of them by default.",
    "schema": {"type": "string"},
}

PREDICT_BODY = {
    "parameters": [ACTIVATIONS_PARAM, ACT_FORMAT_PARAM, LAYERS_PARAM, REJECT_PARAM, SINGLE_PARAM],
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

EXPLAIN_BODY = {"requestBody": PREDICT_BODY["requestBody"]}  # the same bodies; no query parameters

BATCH_BODY = {
    "parameters": [REJECT_PARAM, SINGLE_PARAM],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["files"],
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        },
    }
}


def install_openapi(app: FastAPI) -> None:
    """FastAPI's schema, plus PixelsRequest (referenced by PREDICT_BODY, unseen by FastAPI)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                               description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            ref = "#/components/schemas/{model}"
            schemas["PixelsRequest"] = PixelsRequest.model_json_schema(ref_template=ref)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
