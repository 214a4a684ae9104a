"""JSON bodies: compact encoding (numpy arrays as nested lists) and the response that carries them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from starlette.responses import Response

try:  # optional: ~20x faster JSON for the 28x28 input and the activations; the json module otherwise
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None


def dumps(data: Any) -> bytes:
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


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_body(detail: str) -> bytes:
    """``{"detail": ...}``: the one shape of every refusal, whoever sends it (app, guard, protocol)."""
    return json.dumps({"detail": detail}).encode()
