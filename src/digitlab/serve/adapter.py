"""The model adapter: one loaded predictor and what the endpoints need from it, computed once.

It turns model outputs into the API's dictionaries (a prediction with its digit score, its
activations as JSON floats or 8-bit ``u8`` layers, /api/model's description, /api/sample's MNIST
test digit). It never imports torch: a torch model is recognised only when torch is already loaded.
"""

from __future__ import annotations

import base64
import math
import sys
import time
from typing import Any

import numpy as np

from digitlab.data.datasets import locate, read_source
from digitlab.errors import DigitlabError
from digitlab.inference.detector import THRESHOLD as DIGIT_THRESHOLD
from digitlab.inference.detector import digit_scores
from digitlab.inference.predictor import Predictor, trace
from digitlab.inference.reading import DigitReading


class ServedModel:
    """One loaded predictor; ``max_pixels`` bounds the pictures decoded for it."""

    def __init__(self, predictor: Predictor, source: str, max_pixels: int):
        self.predictor = predictor
        self.source = source
        self.max_pixels = max_pixels
        self.labels = [str(s) for s in predictor.labels]
        probe = np.zeros((1, 28, 28), np.uint8)
        acts = predictor.activations(probe)
        self.activation_shapes = {k: list(np.asarray(v).shape[1:]) for k, v in acts.items()}
        predictor.predict_proba(probe)  # warm up (first call allocates)

    def predict(self, x: np.ndarray, shown: np.ndarray, with_activations: bool, act_format: str = "json",
                layers: list[str] | None = None, reject: bool = True, score: float | None = None) -> dict[str, Any]:
        """One input's answer; with activations, of ``layers`` (None: all) as ``act_format`` ('json'/'u8').
        ``score``: the shown image's digit score where it is known already (else it is computed)."""
        t0 = time.perf_counter()
        if with_activations:  # the answer and its activations from the same forward pass
            proba, acts = trace(self.predictor, x[None])
        else:
            proba, acts = self.predictor.predict_proba(x[None]), {}
        proba = np.asarray(proba, dtype=np.float32)[0]
        ms = (time.perf_counter() - t0) * 1000.0
        if score is None:
            score = float(digit_scores(shown)[0])
        result = self.result(proba, shown, ms, score, reject)
        if with_activations:
            if layers is not None:
                acts = {k: acts[k] for k in layers}
            encode = _u8 if act_format == "u8" else _rounded
            result["activations"] = {k: encode(np.asarray(v)[0]) for k, v in acts.items()}
        return result

    def answer(self, reading: DigitReading, ms: float, reject: bool = True) -> dict[str, Any]:
        """The answer's dictionary for a reading already made (its input, probabilities and digit
        score), ``ms`` the time it spent in the model."""
        return self.result(reading.probabilities, np.asarray(reading.image, dtype=np.uint8), ms,
                           reading.digit_score, reject)

    def result(self, proba: np.ndarray, shown: np.ndarray, ms: float, score: float = 1.0,
               reject: bool = True) -> dict[str, Any]:
        """The answer's dictionary; ``reject``: label and name None when ``score`` says it is no digit."""
        probs = proba.astype(np.float64).tolist()
        order = np.argsort(-proba, kind="stable")[:3].tolist()
        k = order[0]
        digit = score >= DIGIT_THRESHOLD
        keep = digit or not reject
        return {
            "label": k if keep else None,
            "name": self.labels[k] if keep else None,
            "is_digit": digit,
            "digit_score": round(score, 6),
            "confidence": probs[k],
            "probabilities": probs,
            "top3": [{"label": i, "name": self.labels[i], "probability": probs[i]} for i in order],
            "input": np.ascontiguousarray(shown, dtype=np.uint8),
            "model_ms": round(ms, 4),
            "activations": None,
        }

    def info(self, max_upload_bytes: int, max_batch: int) -> dict[str, Any]:
        """The body of /api/model."""
        p = self.predictor
        rows, params = architecture(p)
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
            "unsure_below": unsure_below(p.config, metrics),
        }


def architecture(predictor: Predictor) -> tuple[list[dict[str, Any]], int | None]:
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


def unsure_below(config: Any, metrics: Any = None) -> float:
    """The confidence under which the page says "not sure", one constant per model.

    The calibrated one when the run has it (``digitlab evaluate RUN --calibrate`` saves it in
    metrics.json: below it, at least 1 answer in 4 was wrong on held-out digits). Otherwise a rule:
    label smoothing (eps) caps a trained model's confidence near 1 - eps * (K - 1) / K, so a model
    trained with it never says 99 %: the threshold is 70 % of that ceiling (0.7 without smoothing).
    """
    calibrated = metrics.get("unsure_below") if isinstance(metrics, dict) else None
    if isinstance(calibrated, int | float) and not isinstance(calibrated, bool) and 0 <= calibrated <= 1:
        return round(float(calibrated), 4)
    fit = config.get("fit") if isinstance(config, dict) else None
    eps = fit.get("label_smoothing") if isinstance(fit, dict) else None
    eps = float(eps) if isinstance(eps, int | float) and 0 <= eps < 1 else 0.0
    return round(0.7 * (1.0 - eps * 0.9), 4)


class MnistSamples:
    """MNIST's test set, read once from the files on this machine (never downloaded): /api/sample."""

    def __init__(self) -> None:
        self.test: tuple[np.ndarray, np.ndarray] | None = None
        self.missing = False

    def pick(self) -> dict[str, Any] | None:
        """A random test digit ``{"pixels", "label", "index"}``; None when there is no MNIST here."""
        if self.test is None and not self.missing:
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


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _number_int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _rounded(a: np.ndarray) -> np.ndarray:
    """Activations rounded to 4 decimals (plenty for a heat map; keeps the JSON short)."""
    return np.ascontiguousarray(np.round(a.astype(np.float32, copy=False), 4))


def _u8(a: np.ndarray) -> dict[str, Any]:
    """One layer's activations as 8 bits a value: ``{"shape", "scale", "data"}`` (value = byte * scale)."""
    a = np.maximum(np.nan_to_num(a.astype(np.float32, copy=False)), 0.0)
    top = float(a.max()) if a.size else 0.0
    scale = top / 255.0 if top > 0 else 1.0
    q = np.rint(a / scale).astype(np.uint8)
    return {"shape": list(a.shape), "scale": scale, "data": base64.b64encode(q.tobytes()).decode("ascii")}
