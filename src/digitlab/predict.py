"""Inference on arrays or images -> labels + probabilities.

Works from a run folder (PyTorch) or an exported ``.onnx`` file (onnxruntime, no PyTorch needed).
This module imports neither torch nor onnxruntime at the top.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np


class Predictor(Protocol):
    """What predict, evaluate and the server need from a model, whatever runs it."""

    name: str            # model name from the registry ("mlp", "cnn", ...)
    config: dict         # the run's config.json (or the ONNX metadata's copy of it)
    metrics: dict | None  # the run's metrics.json, if any
    labels: list[str]    # class names, index = class id

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 [0, 255] or float32 [0, 1] -> (N, 10) float32 probabilities."""
        ...

    def activations(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Hidden activations per layer name for (N, 28, 28) images (empty when unavailable)."""
        ...


def load_predictor(path: str | os.PathLike, device: str = "cpu") -> Predictor:
    """A run folder -> TorchPredictor; a ``.onnx`` file -> OnnxPredictor."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from digitlab.export import OnnxPredictor

        return OnnxPredictor(path)
    from digitlab.torch_predictor import TorchPredictor

    return TorchPredictor(path, device=device)
