"""Is there a digit at all? A small detector that runs beside every model.

Every model digitlab trains answers with one of its 10 classes, whatever it is shown: clothing, a
letter or a scribble gets a digit too. :func:`digit_scores` says how much a 28x28 input (what
:func:`digitlab.data.pictures.load_digit` gives) looks like a handwritten or printed digit, from 0
to 1; below :data:`THRESHOLD` the picture is "not a digit". It does not depend on the model being
served (the tutorial models keep their 10-way output), needs only NumPy, and takes about a quarter
of a millisecond for one image (less per image in batches).

The detector is a small CNN (conv 5x5 stride 2, conv 3x3 stride 2, dense 64, sigmoid; 56k weights)
stored as float16 in ``detector.safetensors`` beside this module. It was trained by
``benchmarks/train_detector.py`` on MNIST *train* digits (plain, softened, handed in as pictures,
degraded: thumbnails, blur, low contrast, JPEG, thick and thin strokes), printed and drawn digits,
against Fashion-MNIST *train*, printed and drawn letters (not those written like digits: O, I, l,
S, Z, ...), scribbles, shapes, noise, dots and lines. ``benchmarks/bench_detector.py`` measures it
on held-out data (README, "Not a digit").

:func:`readings` turns a model's probabilities into :class:`~digitlab.inference.reading.DigitReading`
objects with the verdict; :func:`digitlab.inference.predictor.read_digits` does everything from pictures
or arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

from digitlab.inference.blas import one_thread
from digitlab.inference.reading import DigitReading, top_classes

WEIGHTS = Path(__file__).with_name("detector.safetensors")

#: Ink below this (out of 255) anywhere in the image: nothing drawn, score 0.
MIN_INK = 13


def _metadata() -> dict[str, str]:
    with safe_open(str(WEIGHTS), framework="numpy") as f:
        return dict(f.metadata() or {})


#: Scores below this are "not a digit" (chosen on the training side's validation data).
THRESHOLD: float = float(_metadata().get("threshold", 0.5))


@lru_cache(maxsize=1)
def _layers() -> tuple[int, tuple[tuple[np.ndarray, np.ndarray], ...]]:
    """(number of convolutions, (weights, bias) per layer as float32), from detector.safetensors."""
    return as_layers(load_file(str(WEIGHTS)))


def as_layers(tensors: dict[str, np.ndarray]) -> tuple[int, tuple[tuple[np.ndarray, np.ndarray], ...]]:
    """The stored tensors -> what :func:`logits` takes (the 1/255 of uint8 inputs folded into layer 1)."""
    t = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    layers = [(t[k], t[k + "b"]) for k in ("c1", "c2") if k in t]
    n_conv = len(layers)
    layers += [(t[f"w{i}"], t[f"b{i}"]) for i in range(len([k for k in t if k.startswith("w")]))]
    w, b = layers[0]
    layers[0] = (w / np.float32(255.0), b)
    return n_conv, tuple(layers)


def _patches(x: np.ndarray, k: int) -> np.ndarray:
    """(N, H, W, C) -> (N, H', W', C * k * k): the k x k windows at stride 2, in (c, ky, kx) order."""
    x = np.ascontiguousarray(x)
    n, h, w, c = x.shape
    sn, sh, sw, sc = x.strides
    v = np.lib.stride_tricks.as_strided(x, (n, (h - k) // 2 + 1, (w - k) // 2 + 1, c, k, k),
                                        (sn, 2 * sh, 2 * sw, sc, sh, sw), writeable=False)
    return v.reshape(*v.shape[:3], c * k * k)


def digit_scores(images: np.ndarray) -> np.ndarray:
    """``(N, 28, 28)`` (or one ``(28, 28)``) uint8 [0, 255] images -> ``(N,)`` float32 scores in [0, 1].

    Higher is more digit-like; ``score < THRESHOLD`` means "not a digit". Float images are taken
    as [0, 1]. An image without ink scores 0.
    """
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (N, 28, 28), got {x.shape}")
    if x.dtype.kind == "f":
        x = np.clip(x, 0.0, 1.0) * np.float32(255.0)
    n = len(x)
    h = x.reshape(n, 784).astype(np.float32)
    ink = h.max(axis=1) if n else np.zeros(0, np.float32)
    with one_thread():
        z = logits(h, *_layers())
    score = 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
    score[ink < MIN_INK] = 0.0
    return score.astype(np.float32)


def logits(h: np.ndarray, n_conv: int, layers) -> np.ndarray:
    """``(N, 784)`` float32 pixels in [0, 255] -> ``(N,)`` logits of the detector's network."""
    n = len(h)
    if n_conv:  # two convolutions (5x5 and 3x3, stride 2, ReLU), then the dense layers
        (c1, b1), (c2, b2) = layers[:2]
        layers = layers[2:]
        h = _patches(h.reshape(n, 28, 28, 1), 5) @ c1
        h += b1
        np.maximum(h, 0.0, out=h)
        h = _patches(h, 3) @ c2
        h += b2
        np.maximum(h, 0.0, out=h)
        h = h.reshape(n, -1)
    for w, b in layers[:-1]:
        h = h @ w
        h += b
        np.maximum(h, 0.0, out=h)
    w, b = layers[-1]
    return (h @ w)[:, 0] + b[0]


def is_digit(images: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the detector's verdict for each image."""
    return digit_scores(images) >= THRESHOLD


def readings(probabilities: np.ndarray, labels: Sequence[str], images: np.ndarray | None = None, *,
             scores: np.ndarray | None = None, reject: bool = True, top: int = 3,
             keep_images: bool = False) -> list[DigitReading]:
    """A model's ``(N, K)`` probabilities (+ the ``(N, 28, 28)`` inputs it saw) -> one DigitReading each.

    ``scores`` are the detector's scores when already known, else they are computed from
    ``images`` (one of the two is needed). With ``reject`` (the default) a reading that is not a
    digit has ``index`` and ``label`` None; its probabilities and top classes are kept. With
    ``reject=False`` the label is always given and ``is_digit`` still carries the verdict.
    """
    probs = np.asarray(probabilities, dtype=np.float32)
    if probs.ndim == 1:
        probs = probs[None]
    if scores is None:
        if images is None:
            raise ValueError("readings needs the images or their scores")
        scores = digit_scores(images)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(scores) != len(probs):
        raise ValueError(f"{len(probs)} probability rows but {len(scores)} scores")
    names = [str(s) for s in labels]
    out = []
    for i, (p, s) in enumerate(zip(probs, scores, strict=True)):
        order = np.argsort(-p, kind="stable")[:top]
        k = int(order[0])
        ok = bool(s >= THRESHOLD)
        keep = ok or not reject
        out.append(DigitReading(
            index=k if keep else None, label=names[k] if keep else None, confidence=float(p[k]),
            probabilities=p, top=top_classes(p, names, top),
            is_digit=ok, digit_score=float(s),
            image=None if images is None or not keep_images else np.asarray(images[i], dtype=np.uint8)))
    return out
