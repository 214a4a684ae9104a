"""The PyTorch side of :mod:`digitlab.inference.predictor` (kept apart so ONNX inference never imports torch)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digitlab.data.preprocess import image_batch
from digitlab.errors import RunError
from digitlab.models import architecture, count_params, load_model, predict_arrays, softmax_batches
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
        self._fast = inference_module(self.model) if self.device.type == "cpu" else None
        classes = self.predict_proba(np.zeros((1, 28, 28), np.uint8)).shape[1]
        if len(self.labels) != classes:
            raise RunError(f"{self.run_dir / 'config.json'}: 'labels' names {len(self.labels)} classes, "
                           f"the model has {classes}")

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        if self._fast is None:
            return predict_arrays(self.model, image_batch(images), self.batch_size)
        with torch.inference_mode():
            return softmax_batches(self._fast, torch.from_numpy(image_batch(images)), self.batch_size,
                                   len(self.labels))

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


def inference_module(model: nn.Module, check: int = 8):
    """``model`` traced and frozen for inference on the CPU, or None where that cannot be done.

    Freezing folds batch normalisation into the layers before it and keeps the weights packed for
    oneDNN between calls: the same probabilities (to float rounding, checked here on random
    images) at 2-3 times the speed on the small batches a picture gives (a served CNN reads one
    picture in about 0.35 ms instead of 0.9 ms on 2 cores). ``model`` itself is left as it is
    (training, activations and the explanations use it).
    """
    was = model.training
    model.eval()
    try:
        example = torch.rand((check, 28, 28), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's notices (maintenance mode); checked below
            fast = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example[:2])))
            for n in (1, check, 3):  # the first calls compile; their answers are checked
                want = torch.softmax(model(example[:n]).float(), 1)
                got = torch.softmax(fast(example[:n]).float(), 1)
                if got.shape != want.shape or float((got - want).abs().max()) > 1e-4:
                    return None
    except Exception:  # noqa: BLE001 - a model TorchScript cannot trace is served as it is
        return None
    finally:
        model.train(was)
    return fast
