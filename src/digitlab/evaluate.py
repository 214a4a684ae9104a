"""Metrics of a trained model on a labelled set: loss, accuracy, per-class precision/recall/F1,
the confusion matrix and the most confidently wrong examples.

Works with any :class:`digitlab.inference.predictor.Predictor` (a run folder or an exported ONNX file).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.data.datasets import load_data
from digitlab.data.preprocess import check_images, train_val_split
from digitlab.errors import ConfigError, RunError
from digitlab.inference.predictor import predict_arrays
from digitlab.runs import METRICS, read_json, write_json

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1] before the log, as Keras does
SPLITS = ("test", "val")
CONFUSION_PNG = "confusion.png"
MISCLASSIFIED_PNG = "misclassified.png"


@dataclass
class EvalResult:
    """Everything :func:`evaluate_predictor` measured. Arrays are numpy; :meth:`to_dict` is JSON-ready."""

    loss: float
    accuracy: float
    class_names: list[str]
    precision: np.ndarray        # (K,) per class
    recall: np.ndarray           # (K,)
    f1: np.ndarray               # (K,)
    support: np.ndarray          # (K,) true images per class
    confusion: np.ndarray        # (K, K) int64, rows: true class, columns: predicted class
    predictions: np.ndarray      # (N,) predicted class of every image
    wrong_indices: np.ndarray    # (k,) indices into the evaluated set, most confident mistake first
    wrong_true: np.ndarray       # (k,)
    wrong_pred: np.ndarray       # (k,)
    wrong_confidence: np.ndarray  # (k,) probability the model gave its (wrong) answer
    extra: dict = field(default_factory=dict)  # context the caller adds (split, dataset, model...)
    confidence: np.ndarray | None = None  # (N,) probability the model gave its answer, every image

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    @property
    def errors(self) -> int:
        return self.n - int(np.trace(self.confusion))

    def macro(self) -> dict[str, float]:
        return {"precision": float(self.precision.mean()), "recall": float(self.recall.mean()),
                "f1": float(self.f1.mean())}

    def weighted(self) -> dict[str, float]:
        w = self.support / max(int(self.support.sum()), 1)
        return {"precision": float(self.precision @ w), "recall": float(self.recall @ w),
                "f1": float(self.f1 @ w)}

    def to_dict(self) -> dict:
        return {
            **self.extra,
            "n": self.n,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "errors": self.errors,
            "per_class": [
                {"class": i, "name": name, "precision": float(self.precision[i]),
                 "recall": float(self.recall[i]), "f1": float(self.f1[i]), "support": int(self.support[i])}
                for i, name in enumerate(self.class_names)
            ],
            "macro_avg": self.macro(),
            "weighted_avg": self.weighted(),
            "confusion_matrix": self.confusion.tolist(),
            "most_confident_errors": [
                {"index": int(i), "true": int(t), "pred": int(p), "confidence": float(c)}
                for i, t, p, c in zip(self.wrong_indices, self.wrong_true, self.wrong_pred,
                                      self.wrong_confidence, strict=True)
            ],
        }


def cross_entropy(probs: np.ndarray, y: np.ndarray, eps: float = EPSILON) -> float:
    """Mean cross-entropy of integer labels under predicted probabilities (clipped to [eps, 1])."""
    p = probs[np.arange(len(y)), y].astype(np.float64)
    return float(-np.log(np.clip(p, eps, 1.0)).mean())


def summarize(
    probs: np.ndarray, y: np.ndarray, class_names: Sequence[str] | None = None, top: int = 16
) -> EvalResult:
    """Metrics from already-computed probabilities ``(N, K)`` and true labels ``(N,)``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # heavy: loaded when measuring

    probs = np.asarray(probs)
    y = np.asarray(y).astype(np.int64)
    if probs.ndim != 2 or len(probs) != len(y):
        raise ValueError(f"probabilities {probs.shape} do not match labels {y.shape}")
    if len(y) == 0:
        raise ValueError("cannot evaluate on an empty set")
    k = probs.shape[1]
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a model with {k} outputs")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must be in [0, {k}), got values from {y.min()} to {y.max()}")
    pred = probs.argmax(axis=1).astype(np.int64)
    classes = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=classes, zero_division=0)
    cm = confusion_matrix(y, pred, labels=classes).astype(np.int64)
    confidence = probs[np.arange(len(pred)), pred]
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][: max(int(top), 0)]
    return EvalResult(
        loss=cross_entropy(probs, y),
        accuracy=float((pred == y).mean()),
        class_names=names,
        precision=np.asarray(precision, np.float64),
        recall=np.asarray(recall, np.float64),
        f1=np.asarray(f1, np.float64),
        support=np.asarray(support, np.int64),
        confusion=cm,
        predictions=pred,
        wrong_indices=order.astype(np.int64),
        wrong_true=y[order],
        wrong_pred=pred[order],
        wrong_confidence=confidence[order].astype(np.float64),
        confidence=confidence.astype(np.float64),
    )


UNSURE_ERROR_RATE = 0.25  # "not sure": among the answers below the threshold, at least 1 in 4 is wrong
UNSURE_MIN_ANSWERS = 10


def unsure_threshold(confidence: np.ndarray, correct: np.ndarray, error_rate: float = UNSURE_ERROR_RATE,
                     min_answers: int = UNSURE_MIN_ANSWERS) -> dict:
    """Calibrate the confidence under which an answer is shown as "not sure", from held-out answers.

    The answers are sorted by confidence; the threshold is the highest one under which the model was
    wrong at least ``error_rate`` of the time (over at least ``min_answers`` answers), so "not sure"
    means what it says for this model, whatever caps its confidence (label smoothing, calibration).
    0 when no such band exists: the model is right often enough at every confidence it gives.
    """
    confidence = np.asarray(confidence, np.float64).reshape(-1)
    correct = np.asarray(correct, bool).reshape(-1)
    if len(confidence) != len(correct) or not len(confidence):
        raise ValueError(f"need as many answers as verdicts, got {len(confidence)} and {len(correct)}")
    if not 0 < error_rate < 1:
        raise ValueError(f"error rate must be in (0, 1), got {error_rate}")
    order = np.argsort(confidence, kind="stable")
    conf, ok = confidence[order], correct[order]
    k = np.arange(1, len(conf) + 1)
    accuracy_low = np.cumsum(ok) / k
    band = np.flatnonzero((accuracy_low <= 1 - error_rate) & (k >= min_answers))
    below = int(band[-1]) + 1 if len(band) else 0
    if below == 0:
        threshold = 0.0
    elif below == len(conf):
        threshold = float(conf[-1]) + 1e-6
    else:
        threshold = float(conf[below - 1] + conf[below]) / 2
    return {
        "unsure_below": min(1.0, math.ceil(threshold * 1e4) / 1e4),  # 4 decimals, never under an answer below
        "answers": int(len(conf)),
        "answers_below": below,
        "accuracy_below": float(ok[:below].mean()) if below else None,
        "accuracy_above": float(ok[below:].mean()) if below < len(conf) else None,
        "error_rate": error_rate,
    }


def save_calibration(run_dir: str | os.PathLike, result: EvalResult, y: np.ndarray, **context: Any) -> dict:
    """Calibrate "not sure" on ``result`` (labels ``y``) and save it in the run's metrics.json, as
    ``unsure_below`` (what the server reads) and ``unsure_calibration`` (how, plus ``context``)."""
    path = Path(run_dir) / METRICS
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise RunError(f"{path}: must hold a JSON object")
    unsure = {**unsure_threshold(result.confidence, result.predictions == np.asarray(y)), **context}
    metrics["unsure_below"] = unsure["unsure_below"]
    metrics["unsure_calibration"] = unsure
    write_json(path, metrics)
    return unsure


def evaluate_predictor(
    predictor, x_uint8: np.ndarray, y: np.ndarray, class_names: Sequence[str] | None = None, top: int = 16
) -> EvalResult:
    """Run ``predictor`` (a :class:`digitlab.inference.predictor.Predictor`) on ``x_uint8`` ``(N, 28, 28)`` and
    measure it against labels ``y``; ``top`` most confidently wrong examples are kept."""
    x_uint8 = np.asarray(x_uint8)
    if x_uint8.ndim != 3:
        raise ValueError(f"expected images of shape (N, 28, 28), got {x_uint8.shape}")
    x_uint8 = check_images(x_uint8)
    if len(x_uint8) != len(y):
        raise ValueError(f"{len(x_uint8)} images but {len(y)} labels")
    _, probs = predict_arrays(predictor, x_uint8)
    names = class_names if class_names is not None else getattr(predictor, "labels", None)
    return summarize(probs, y, names, top=top)


def load_split(
    config: dict,
    split: str = "test",
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    quiet: bool = False,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The images and labels to evaluate a run on: ``(x_uint8, y, dataset_name)``.

    ``test`` is the dataset's test set. ``val`` is the validation part the run held out of the
    training set, rebuilt from the run's ``val_split`` and ``split_seed`` (0.2 and 42 when the
    config does not say, as in the tutorial). The dataset is found (or downloaded, saying so on
    stderr unless ``quiet``) by :func:`digitlab.data.datasets.load_data`.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    name = dataset or config.get("dataset") or "mnist"
    (x_train, y_train), (x_test, y_test) = load_data(name, data_dir=data_dir, quiet=quiet)
    if split == "test":
        return x_test, y_test.astype(np.int64), name
    fraction = config.get("val_split", 0.2)
    if not fraction:
        raise ConfigError("this run was trained without a validation split; evaluate with --split test")
    seed = config.get("split_seed", 42)
    _, (x_val, y_val) = train_val_split(x_train, y_train, float(fraction), int(42 if seed is None else seed))
    return x_val, y_val.astype(np.int64), name


def save_figures(result: EvalResult, images: np.ndarray, out_dir: str | os.PathLike,
                 lang: str = "en") -> dict[str, Path]:
    """Write ``confusion.png`` and ``misclassified.png`` for ``result`` (``images``: the evaluated set)."""
    from digitlab.plots import confusion_matrix_figure, misclassified_gallery, save_figure  # matplotlib

    out_dir = Path(out_dir)
    title = None
    if result.extra.get("split"):
        from digitlab.plots import tr

        split = tr("test set" if result.extra["split"] == "test" else "validation set", lang)
        title = (f"{tr('Confusion matrix', lang)}, {split} ({tr('{n} images', lang).format(n=f'{result.n:,}')}, "
                 f"{tr('accuracy {acc}', lang).format(acc=f'{result.accuracy:.4f}')})")
    paths = {"confusion": save_figure(confusion_matrix_figure(result.confusion, result.class_names, title, lang=lang),
                                      out_dir / CONFUSION_PNG)}
    idx = result.wrong_indices
    paths["misclassified"] = save_figure(
        misclassified_gallery(np.asarray(images)[idx], result.wrong_true, result.wrong_pred,
                              result.wrong_confidence, result.class_names, lang=lang),
        out_dir / MISCLASSIFIED_PNG)
    return paths
