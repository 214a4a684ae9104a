"""Inference on arrays or images -> labels + probabilities: the :class:`Predictor` protocol, loading
one, and predicting the digit of picture files.

Works from a run folder (PyTorch) or an exported ``.onnx`` file (onnxruntime, no PyTorch needed).
This module imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from digitlab.data.formats import atomic_write_bytes
from digitlab.data.pictures import find_images, load_digit
from digitlab.data.preprocess import check_images
from digitlab.errors import DigitlabError, ImageError
from digitlab.inference.reading import DigitReading, read_digit


class Predictor(Protocol):
    """What predict, evaluate and the server need from a model, whatever runs it."""

    name: str            # model name from the registry ("mlp", "cnn", ...)
    config: dict         # the run's config.json (or the ONNX metadata's copy of it)
    metrics: dict | None  # the run's metrics.json, if any
    labels: list[str]    # class names, index = class id
    architecture: list[dict]  # Keras-like summary rows: name, kind, output_shape, params (empty if unknown)
    parameters: int | None    # parameter count, if known

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 [0, 255] or float32 [0, 1] -> (N, 10) float32 probabilities."""
        ...

    def activations(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Hidden activations per layer name for (N, 28, 28) images (empty when unavailable)."""
        ...


def load_predictor(path: str | os.PathLike, device: str = "cpu") -> Predictor:
    """A run folder -> TorchPredictor; a ``.onnx`` file -> OnnxPredictor."""
    path = Path(path)
    # each implementation loads only when asked for: ONNX inference never imports torch
    if path.suffix.lower() == ".onnx":
        from digitlab.inference.onnx_predictor import OnnxPredictor

        return OnnxPredictor(path)
    from digitlab.inference.torch_predictor import TorchPredictor

    return TorchPredictor(path, device=device)


DEFAULT_BATCH = 4096


def predict_proba(predictor: Predictor, images: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Probabilities ``(N, K)`` for ``(N, 28, 28)`` images, asked for in batches of ``batch_size``."""
    images = check_images(images)
    parts = [np.asarray(predictor.predict_proba(images[i : i + batch_size]), dtype=np.float32)
             for i in range(0, len(images), batch_size)]
    if not parts:
        return np.zeros((0, len(predictor.labels)), np.float32)
    return np.concatenate(parts)


def predict_arrays(predictor: Predictor, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 28, 28)`` images (uint8 or float32 [0, 1]) -> ``(labels int64 (N,), probs float32 (N, K))``."""
    probs = predict_proba(predictor, images)
    return probs.argmax(axis=1).astype(np.int64), probs


@dataclass
class FilePrediction:
    """The model's answer for one picture (its :class:`DigitReading`), or why there is none (``error``)."""

    path: Path
    reading: DigitReading | None = None  # what the model read (None with ``error``)
    input_path: Path | None = None   # where the 28x28 input was saved (``save_inputs``)
    error: str | None = None         # why the picture could not be read (then no prediction)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> int | None:
        """The predicted class id."""
        return None if self.reading is None else self.reading.index

    @property
    def name(self) -> str | None:
        """Its class name."""
        return None if self.reading is None else self.reading.label

    @property
    def probability(self) -> float | None:
        """The probability of the predicted class."""
        return None if self.reading is None else self.reading.confidence

    @property
    def top(self) -> list[tuple[int, str, float]]:
        """The best classes: (class, name, probability)."""
        return [] if self.reading is None else self.reading.top

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "label": self.label,
            "name": self.name,
            "probability": self.probability,
            "top": [{"label": c, "name": n, "probability": p} for c, n, p in self.top],
            "input_path": None if self.input_path is None else str(self.input_path),
            "error": self.error,
        }


def _png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _unique_name(folder: Path, stem: str, taken: set[str]) -> Path:
    name, n = f"{stem}.png", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}.png"
    taken.add(name)
    return folder / name


def predict_files(
    predictor: Predictor,
    paths: Sequence[str | os.PathLike],
    save_inputs: str | os.PathLike | None = None,
    top: int = 3,
) -> list[FilePrediction]:
    """Predict the digit in each picture; folders are searched for images.

    Every picture goes through :func:`digitlab.data.pictures.load_digit` (the same preprocessing as the
    server). A picture that cannot be used (not an image, blank, too large) does not stop the
    others: its :class:`FilePrediction` carries ``error`` and no label, and the caller decides
    what to do (the CLI reports it and exits with status 1 after printing the rest). Paths that
    do not exist and folders without images raise :class:`~digitlab.errors.ImageError` at once.

    ``save_inputs``: a folder where the 28x28 image the model actually saw is written as
    ``<stem>.png`` for each picture (``<stem>_2.png``... when two pictures share a name).
    """
    files = find_images(list(paths))
    if not files:
        raise ImageError(f"no images found in {', '.join(str(p) for p in paths)}")
    results = [FilePrediction(path=Path(f)) for f in files]
    inputs: list[np.ndarray] = []
    good: list[FilePrediction] = []
    for r in results:
        try:
            inputs.append(load_digit(r.path))
            good.append(r)
        except DigitlabError as e:
            r.error = str(e)
    if save_inputs is not None:
        folder, taken = Path(save_inputs), set()
        for r, image in zip(good, inputs, strict=True):
            r.input_path = atomic_write_bytes(_unique_name(folder, r.path.stem, taken), _png_bytes(image))
    if good:
        names = list(predictor.labels)
        for r, p, image in zip(good, predict_proba(predictor, np.stack(inputs)), inputs, strict=True):
            r.reading = read_digit(p, names, top, image=image)
    return results
