"""The PyTorch side of :mod:`digitlab.inference.predictor` (kept apart so ONNX inference never imports torch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from digitlab.data.preprocess import image_batch
from digitlab.errors import RunError
from digitlab.models import architecture, count_params, load_model, predict_arrays
from digitlab.runs import read_metrics, run_labels


class TorchPredictor:
    """A run folder's model behind the :class:`digitlab.inference.predictor.Predictor` protocol."""

    def __init__(self, run_dir: str | os.PathLike, device: str = "cpu", batch_size: int = 1024):
        self.run_dir = Path(run_dir)
        self.model, self.config = load_model(self.run_dir)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.name = self.model.name
        self.metrics = read_metrics(self.run_dir)
        self.labels = run_labels(self.config)
        self.architecture = architecture(self.model)
        self.parameters = count_params(self.model)
        self.batch_size = batch_size
        classes = self.predict_proba(np.zeros((1, 28, 28), np.uint8)).shape[1]
        if len(self.labels) != classes:
            raise RunError(f"{self.run_dir / 'config.json'}: 'labels' names {len(self.labels)} classes, "
                           f"the model has {classes}")

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return predict_arrays(self.model, image_batch(images), self.batch_size)

    @torch.inference_mode()
    def activations(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(image_batch(images)).to(self.device)
        return {k: v.float().cpu().numpy() for k, v in self.model.activations(x).items()}

    @torch.inference_mode()
    def trace(self, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Probabilities and activations of the same pass (the model is loaded in eval mode)."""
        logits, acts = self.model.trace(torch.from_numpy(image_batch(images)).to(self.device))
        proba = torch.softmax(logits.float(), 1).cpu().numpy()
        return proba, {k: v.float().cpu().numpy() for k, v in acts.items()}
