"""The PyTorch side of :mod:`digitlab.inference.predictor` (kept apart so ONNX inference never imports torch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from digitlab.data.datasets import DATASETS
from digitlab.data.preprocess import image_batch
from digitlab.errors import RunError
from digitlab.runs import load_model, read_metrics


class TorchPredictor:
    """A run folder's model behind the :class:`digitlab.inference.predictor.Predictor` protocol."""

    def __init__(self, run_dir: str | os.PathLike, device: str = "cpu", batch_size: int = 1024):
        self.run_dir = Path(run_dir)
        self.model, self.config = load_model(self.run_dir)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.name = self.model.name
        self.metrics = read_metrics(self.run_dir)
        ds = DATASETS.get(self.config.get("dataset", "mnist"))
        self.labels = list(self.config.get("labels") or (ds.classes if ds else [str(i) for i in range(10)]))
        self.batch_size = batch_size
        classes = self.predict_proba(np.zeros((1, 28, 28), np.uint8)).shape[1]
        if len(self.labels) != classes:
            raise RunError(f"{self.run_dir / 'config.json'}: 'labels' names {len(self.labels)} classes, "
                           f"the model has {classes}")

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image_batch(images)).to(self.device)

    @torch.inference_mode()
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        x = self._tensor(images)
        out = [torch.softmax(self.model(x[i : i + self.batch_size]).float(), dim=1)
               for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, 10), np.float32)

    @torch.inference_mode()
    def activations(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.float().cpu().numpy() for k, v in self.model.activations(self._tensor(images)).items()}
