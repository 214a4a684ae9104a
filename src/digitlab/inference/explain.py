"""Why did the model say that: maps of the pixels that pushed a class's score up or down.

Two methods, both on the model's log-probabilities:

- ``occlusion`` (default; any predictor, run folder or ``.onnx``: only ``predict_proba`` is needed):
  every ``patch`` x ``patch`` square of the input is blanked in turn, all at once in one batch, and
  the drop of log p(class) is shared among the square's inked pixels by their ink. A pixel is red
  when blanking it lowers the class's probability (it spoke for the class), blue when blanking it
  raises it (it spoke against).
- ``gradient`` (run folders: needs the torch model): integrated gradients from a black image, the
  exact share of each pixel in log p(class) between black and the input.

Both give zero to paper (black) pixels, since blanking them changes nothing: a map shows what the
ink does, not which missing stroke would have changed the answer.

    import digitlab as dl
    e = dl.explain("runs/mlp", "digit.png", output="why.png")
    e.label, e.runner_up, e.maps[e.label]   # (28, 28) floats in [-1, 1]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.data.pictures import load_digit
from digitlab.errors import ConfigError
from digitlab.inference.predictor import load_predictor, predict_proba

METHODS = ("occlusion", "gradient")
METHOD_NAMES = {"en": {"occlusion": "Occlusion", "gradient": "Integrated gradients"},
                "zh": {"occlusion": "遮挡法", "gradient": "积分梯度"}}


@dataclass
class Explanation:
    """The answer, the runner-up, and one map per explained class (normalised to [-1, 1] by ``scale``)."""

    image: np.ndarray  # (28, 28) uint8, what the model saw
    probabilities: np.ndarray  # (K,)
    labels: list[str]
    label: int
    runner_up: int
    method: str
    maps: dict[int, np.ndarray] = field(default_factory=dict)  # class -> (28, 28) float32 in [-1, 1]
    scales: dict[int, float] = field(default_factory=dict)  # class -> max |raw map| (log-probability units)
    figure: Path | None = None

    @property
    def name(self) -> str:
        return self.labels[self.label]

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.label])

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``POST /api/explain``: maps as 28 rows of 28 floats in [-1, 1]."""
        def rows(a: np.ndarray) -> list[list[float]]:
            return np.round(a.astype(np.float64), 4).tolist()

        ru = self.runner_up
        return {
            "label": self.label, "name": self.name, "confidence": self.confidence,
            "runner_up": ru, "runner_up_name": self.labels[ru], "runner_up_confidence": float(self.probabilities[ru]),
            "probabilities": self.probabilities.astype(np.float64).tolist(),
            "method": self.method,
            "meaning": "positive (red): the pixel pushed that class's probability up; negative (blue): down; "
                       "each map is scaled by its largest magnitude (scale, in log-probability units)",
            "maps": {"label": rows(self.maps[self.label]), "runner_up": rows(self.maps[ru])},
            "scale": {"label": self.scales[self.label], "runner_up": self.scales[ru]},
            "input": self.image.astype(int).tolist(),
        }


def _as_input(picture: Any) -> np.ndarray:
    """A picture (path, bytes) through load_digit, or a (28, 28) array as the model's input."""
    if isinstance(picture, np.ndarray):
        a = np.asarray(picture)
        if a.shape != (28, 28):
            raise ConfigError(f"an array to explain must be 28x28, got {a.shape}")
        if a.dtype == np.uint8:
            return a
        a = a.astype(np.float32)
        return np.clip(a * 255.0 if a.max() <= 1.0 else a, 0, 255).round().astype(np.uint8)
    return np.asarray(load_digit(picture), dtype=np.uint8).reshape(28, 28)


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1.0))


def occlusion_maps(predictor: Any, image: np.ndarray, classes: list[int], patch: int = 3) -> dict[int, np.ndarray]:
    """Raw occlusion maps (log-probability units) of ``classes`` for one (28, 28) uint8 image."""
    x = image.astype(np.float32) / 255.0
    side = 28 - patch + 1
    batch = np.repeat(x[None], side * side, axis=0)
    for i in range(side):
        for j in range(side):
            batch[i * side + j, i:i + patch, j:j + patch] = 0.0
    base = _log(predict_proba(predictor, x[None]))[0]
    occluded = _log(predict_proba(predictor, batch))  # (side*side, K)
    maps = {}
    for c in classes:
        drop = (base[c] - occluded[:, c]).reshape(side, side)  # > 0: the square spoke for class c
        m = np.zeros((28, 28), np.float64)
        for i in range(side):
            for j in range(side):
                ink = x[i:i + patch, j:j + patch]
                total = float(ink.sum())
                if total > 0:
                    m[i:i + patch, j:j + patch] += drop[i, j] * ink / total
        maps[c] = (m / (patch * patch)).astype(np.float32)
    return maps


def gradient_maps(predictor: Any, image: np.ndarray, classes: list[int], steps: int = 32) -> dict[int, np.ndarray]:
    """Integrated gradients of log p(class) from a black image (needs a torch model: a run folder)."""
    model = getattr(predictor, "model", None)
    if model is None or not hasattr(model, "parameters"):
        raise ConfigError("the gradient method needs a run folder (a torch model); use --method occlusion "
                          "for ONNX files")
    import torch

    device = next(model.parameters()).device
    x = torch.from_numpy(image.astype(np.float32) / 255.0).to(device)
    alphas = (torch.arange(steps, dtype=torch.float32, device=device) + 0.5) / steps
    path = (alphas[:, None, None] * x[None]).requires_grad_(True)
    was_training = model.training
    model.eval()
    maps = {}
    try:
        with torch.enable_grad():
            logp = torch.log_softmax(model(path).float(), dim=1)
            for c in classes:
                (grad,) = torch.autograd.grad(logp[:, c].sum(), path, retain_graph=True)
                maps[c] = (grad.mean(dim=0) * x).detach().cpu().numpy().astype(np.float32)
    finally:
        model.train(was_training)
    return maps


def explain(
    model: Any,
    picture: Any,
    *,
    method: str = "occlusion",
    classes: list[int] | None = None,
    output: str | os.PathLike | None = None,
    lang: str = "en",
    patch: int = 3,
) -> Explanation:
    """Explain the model's answer for ``picture``: maps for the predicted class and the runner-up
    (or ``classes``), each scaled to [-1, 1]; with ``output``, the figure is saved there.

    ``model`` is a run folder, an ``.onnx`` file or a loaded predictor; ``picture`` a picture file,
    its bytes, or a (28, 28) array (uint8, or floats in [0, 1]) given to the model as it is."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if not 1 <= patch <= 14:
        raise ConfigError(f"patch must be between 1 and 14 pixels, got {patch}")
    if isinstance(model, (str, os.PathLike)):
        predictor = load_predictor(model)
    else:
        predictor = model
    image = _as_input(picture)
    probs = predict_proba(predictor, image[None])[0]
    order = [int(k) for k in np.argsort(-probs, kind="stable")]
    label, runner_up = order[0], order[1]
    wanted = list(dict.fromkeys([label, runner_up, *(classes or [])]))
    raw = occlusion_maps(predictor, image, wanted, patch) if method == "occlusion" \
        else gradient_maps(predictor, image, wanted)
    labels = [str(s) for s in predictor.labels]
    result = Explanation(image=image, probabilities=probs, labels=labels, label=label, runner_up=runner_up,
                         method=method)
    for c, m in raw.items():
        scale = float(np.abs(m).max())
        result.scales[c] = scale
        result.maps[c] = (m / scale if scale > 0 else m).astype(np.float32)
    if output is not None:
        result.figure = save_explanation(result, output, lang=lang)
    return result


def save_explanation(result: Explanation, output: str | os.PathLike, lang: str = "en") -> Path:
    from digitlab.plots import explain_figure, save_figure

    shown = [result.label, result.runner_up]
    fig = explain_figure(result.image, [result.maps[c] for c in shown], [result.labels[c] for c in shown],
                         [float(result.probabilities[c]) for c in shown],
                         METHOD_NAMES.get(lang, METHOD_NAMES["en"])[result.method], lang=lang)
    return save_figure(fig, output)
