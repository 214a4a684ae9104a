"""Inference on arrays or images -> labels + probabilities: the :class:`Predictor` protocol, loading
one, and predicting the digit of picture files.

Works from a run folder (PyTorch) or an exported ``.onnx`` file (onnxruntime, no PyTorch needed).
This module imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from digitlab.data.formats import atomic_write_bytes
from digitlab.data.pictures import find_images, ink_image, load_digit
from digitlab.data.preprocess import check_images
from digitlab.errors import DigitlabError, ImageError
from digitlab.inference.detector import readings
from digitlab.inference.numbers import read_ink
from digitlab.inference.onnx_predictor import OnnxPredictor
from digitlab.inference.reading import DigitReading


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

    # Optional: ``trace(images) -> (probabilities, activations)`` from one pass; see :func:`trace`.


def trace(predictor: Predictor, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Probabilities and activations of ``images``: one pass where the predictor can (both of
    digitlab's can), two calls otherwise."""
    one_pass = getattr(predictor, "trace", None)
    if one_pass is not None:
        return one_pass(images)
    return np.asarray(predictor.predict_proba(images), dtype=np.float32), predictor.activations(images)


def load_predictor(path: str | os.PathLike, device: str = "cpu") -> Predictor:
    """A run folder -> TorchPredictor; a ``.onnx`` file -> OnnxPredictor."""
    path = Path(path)
    # the torch implementation loads only when asked for: ONNX inference never imports torch
    if path.suffix.lower() == ".onnx":
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
    number: str | None = None        # what is written ("2026"), when read as a number
    number_confidence: float | None = None
    digits: list = field(default_factory=list)  # its DigitReadings, left to right

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> int | None:
        """The predicted class id."""
        return None if self.reading is None else self.reading.index

    @property
    def name(self) -> str | None:
        """Its class name; for a number of several digits, the number."""
        if self.reading is None:
            return self.number if len(self.digits) > 1 else None
        return self.reading.label

    @property
    def probability(self) -> float | None:
        """The probability of the predicted class; for a number of several digits, its confidence."""
        if self.reading is None:
            return self.number_confidence if len(self.digits) > 1 else None
        return self.reading.confidence

    @property
    def is_digit(self) -> bool | None:
        """The not-a-digit verdict (for a number: every digit's); None when the picture was unreadable."""
        if self.reading is not None:
            return self.reading.is_digit
        return all(d.is_digit for d in self.digits) if self.digits else None

    @property
    def digit_score(self) -> float | None:
        """The detector's score in [0, 1] (for a number: its least digit-like digit's)."""
        if self.reading is not None:
            return self.reading.digit_score
        return min(float(d.digit_score) for d in self.digits) if self.digits else None

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
            "is_digit": self.is_digit,
            "digit_score": self.digit_score,
            "number": self.number,
            "number_confidence": self.number_confidence,
            "digits": [d.to_dict() for d in self.digits],
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
    reject: bool = True,
    single: bool = True,
) -> list[FilePrediction]:
    """Predict the digit in each picture; folders are searched for images.

    Every picture goes through :func:`digitlab.data.pictures.load_digit` (the same preprocessing as the
    server). A picture that cannot be used (not an image, blank, too large) does not stop the
    others: its :class:`FilePrediction` carries ``error`` and no label, and the caller decides
    what to do (the CLI reports it and exits with status 1 after printing the rest). Paths that
    do not exist and folders without images raise :class:`~digitlab.errors.ImageError` at once.

    ``save_inputs``: a folder where the 28x28 image the model actually saw is written as
    ``<stem>.png`` for each picture (``<stem>_2.png``... when two pictures share a name).

    ``reject``: a picture that holds no digit (:mod:`digitlab.inference.detector`) gets
    ``is_digit=False`` and no ``label``/``name`` (its probabilities stay); ``reject=False`` keeps
    the label and still reports ``is_digit``.

    ``single=False`` reads what is written, one digit or a number
    (:func:`digitlab.inference.numbers.read_number`): ``number``, ``number_confidence`` and ``digits``
    are set, and the one-digit fields hold the number's digit when it has one.
    """
    files = find_images(list(paths))
    if not files:
        raise ImageError(f"no images found in {', '.join(str(p) for p in paths)}")
    results = [FilePrediction(path=Path(f)) for f in files]
    if not single:
        return _read_number_files(predictor, results, save_inputs, top, reject=reject)
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
        stacked = np.stack(inputs)
        found = readings(predict_proba(predictor, stacked), predictor.labels, stacked, reject=reject, top=top)
        for r, d, image in zip(good, found, inputs, strict=True):
            d.image = image
            r.reading = d
    return results


def _read_number_files(predictor, results: list[FilePrediction], save_inputs: str | os.PathLike | None, top: int = 3,
               reject: bool = True) -> list[FilePrediction]:
    """Fill :class:`FilePrediction` s by reading each picture as a number.

    A one-digit number fills the one-digit fields exactly as the single-digit reading does; a longer
    one leaves ``label`` empty and puts the number in ``name`` (its confidence in ``probability``).
    ``save_inputs`` gets ``<stem>.png`` for a one-digit picture, ``<stem>-1.png``... per digit otherwise.
    """
    taken: set[str] = set()
    for r in results:
        try:
            ink, scale = ink_image(r.path)
            number, _ = read_ink(ink, scale, predictor, reject=reject, whole=False)
        except DigitlabError as e:
            r.error = str(e)
            continue
        r.number, r.number_confidence, r.digits = number.text, number.confidence, number.digits
        if len(number.digits) == 1:
            d = number.digits[0]
            p = np.asarray(d.probabilities)
            d.top = [(int(c), str(predictor.labels[int(c)]), float(p[c]))
                     for c in np.argsort(-p, kind="stable")[:top]]
            r.reading = d
        if save_inputs is not None:
            folder = Path(save_inputs)
            stems = [r.path.stem] if len(number.digits) == 1 else [
                f"{r.path.stem}-{i + 1}" for i in range(len(number.digits))]
            for stem, d in zip(stems, number.digits, strict=True):
                path = atomic_write_bytes(_unique_name(folder, stem, taken), _png_bytes(d.image))
                r.input_path = r.input_path or path
    return results


_INPUT_SHAPES = ((28, 28), (784,), (1, 784), (1, 28, 28), (28, 28, 1), (1, 28, 28, 1))


def _model_input(source) -> np.ndarray:
    if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.shape in _INPUT_SHAPES:
        return source.reshape(28, 28)  # a model input as it is (a row of x_test.reshape(-1, 784) too)
    return load_digit(source)


def read_digits(predictor, sources: Sequence[str | os.PathLike | bytes | Image.Image | np.ndarray], *,
                reject: bool = True, top: int = 3) -> list[DigitReading]:
    """Pictures (paths, encoded bytes, PIL images, numpy arrays) -> one DigitReading each.

    A uint8 array of 784 pixels (``(28, 28)``, ``(784,)``, ``(1, 28, 28)``...) is taken as a model
    input, as it is; every other picture goes through
    :func:`digitlab.data.pictures.load_digit` (a float array in [0, 1] too; errors such as a blank
    picture are raised, as :class:`~digitlab.errors.ImageError`). Each reading carries the input
    the model saw (``image``).
    """
    if not len(sources):
        return []
    inputs = np.stack([_model_input(s) for s in sources])
    probs = predict_proba(predictor, inputs)
    return readings(probs, predictor.labels, inputs, reject=reject, top=top, keep_images=True)


def read_digit(predictor, source: str | os.PathLike | bytes | Image.Image | np.ndarray, *,
               reject: bool = True) -> DigitReading:
    """One picture or input -> its :class:`DigitReading` (see :func:`read_digits`)."""
    return read_digits(predictor, [source], reject=reject)[0]
