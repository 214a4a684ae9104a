"""The API's number fields: ``number``, ``number_confidence`` and ``digits`` of a prediction.

A picture is read as what is written (:func:`digitlab.inference.numbers.read_ink`): one digit or a
number. The single-digit fields of the answer (label, probabilities, input...) stay what they were:
the picture read as one digit; the number fields say what is written. With ``?single=1`` the
picture is one digit and the number fields repeat it. A picture that cannot be read answers the
status its error type carries (``http_status``, see :mod:`digitlab.serve.errors`).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import numpy as np
from starlette.exceptions import HTTPException

from digitlab.data.pictures import ink_image, named_error
from digitlab.errors import DigitlabError, ImageError
from digitlab.inference.numbers import read_ink
from digitlab.inference.reading import DigitReading
from digitlab.serve.errors import upload_message

INLINE_DECODE_BYTES = 64_000  # smaller pictures are read on the event loop, larger ones in a thread
EMPTY = "the picture is empty (0 bytes); send a picture of a digit"


class _Timed:
    """A predictor that adds up the time spent in it (the answer's ``model_ms``)."""

    def __init__(self, predictor):
        self.predictor, self.labels, self.ms = predictor, predictor.labels, 0.0

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.predictor.predict_proba(images)
        finally:
            self.ms += (time.perf_counter() - t0) * 1000.0


def read_picture(model, data: bytes, single: bool, reject: bool = True
                 ) -> tuple[dict[str, Any], DigitReading, float]:
    """Picture bytes -> (the number fields; the picture's reading as one digit: its 28x28 input,
    exactly load_digit's, probabilities and digit score; milliseconds spent in the model)."""
    if not data:
        raise HTTPException(422, EMPTY)
    timed = _Timed(model.predictor)
    try:
        ink, scale = ink_image(data, model.max_pixels)
        number, whole = read_ink(ink, scale, timed, single=single, reject=reject)
    except DigitlabError as e:
        named = named_error(e, data) if isinstance(e, ImageError) else e
        raise HTTPException(e.http_status, upload_message(named)) from None
    return fields(number), whole, timed.ms


async def read_picture_async(model, data: bytes, single: bool, reject: bool = True):
    if len(data) <= INLINE_DECODE_BYTES:
        return read_picture(model, data, single, reject)
    return await anyio.to_thread.run_sync(read_picture, model, data, single, reject)


def fields(number) -> dict[str, Any]:
    return {"number": number.text, "number_confidence": float(number.confidence),
            "digits": [d.to_dict(with_image=True) for d in number.digits]}


def single_fields(result: dict[str, Any]) -> dict[str, Any]:
    """The number fields of a one-digit answer (JSON pixels, ``?single=1``): the digit itself."""
    probs = result["probabilities"]
    digit = {"index": result["label"], "label": result["name"], "confidence": result["confidence"],
             "probabilities": probs,
             "top": [{"index": t["label"], "label": t["name"], "probability": t["probability"]}
                     for t in result["top3"]],
             "is_digit": result.get("is_digit", True), "digit_score": result.get("digit_score", 1.0),
             "box": None, "input": result["input"]}
    return {"number": result["name"], "number_confidence": result["confidence"], "digits": [digit]}
