"""Model builders chosen by name from one registry, a Keras-like summary table, a run's model
rebuilt from its folder, and tensor evaluate/predict (no training here: see :mod:`digitlab.training`).

Every model takes float32 images ``(N, 28, 28)`` in [0, 1] and returns logits ``(N, 10)``: the
softmax lives in inference, the loss works on logits. Layers carry Keras-style names so the summary
reads like ``model.summary()``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab import runs
from digitlab.config import ACTIVATIONS, cnn_bn_options, cnn_options, mlp_options, model_options
from digitlab.data.preprocess import to_float
from digitlab.errors import ConfigError, RunError


class Net(nn.Sequential):
    """A sequential network over (N, 28, 28) images; knows its registry name and options."""

    def __init__(self, layers: OrderedDict[str, nn.Module], name: str, options: dict, image_input: bool):
        super().__init__(layers)
        self.name = name
        self.options = options
        self.image_input = image_input  # True: reshape to (N, 1, 28, 28) before the first layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.image_input:
            x = x.reshape(x.shape[0], 1, 28, 28)
        return super().forward(x)

    # Keras-style conveniences: numpy in (uint8 images or floats in [0, 1]), numpy out. Training
    # lives in digitlab.training (``dl.build_model`` gives a model with ``fit`` too).
    def evaluate(self, x, y, batch_size: int = 2000) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on images ``x`` and labels ``y``."""
        return evaluate_arrays(self, x, y, batch_size)

    def predict(self, x, batch_size: int = 2000) -> np.ndarray:
        """(N, 10) probabilities (softmax of the logits) as a numpy array."""
        return predict_arrays(self, x, batch_size)

    def activations(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Output of every hidden activation layer (the ones a learner wants to see), in order."""
        return self.trace(x)[1]

    def trace(self, x: torch.Tensor) -> tuple[torch.Tensor, OrderedDict[str, torch.Tensor]]:
        """``(logits, activations)`` in one pass.

        Where a ReLU follows a pooling layer, the activation reported is the rectified map before
        pooling (e.g. the CNN's 32 feature maps of 26x26), as a Conv2D(activation="relu") layer
        produces it.
        """
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        if self.image_input:
            x = x.reshape(x.shape[0], 1, 28, 28)
        before_pool = None
        for lname, layer in self.named_children():
            if isinstance(layer, nn.MaxPool2d):
                before_pool = x
            x = layer(x)
            if lname.startswith("act"):
                out[lname] = torch.relu(before_pool) if before_pool is not None else x
                before_pool = None
            elif not isinstance(layer, nn.MaxPool2d):
                before_pool = None
        return x, out


def _keras_init(model: nn.Module) -> None:
    """Keras defaults: Glorot-uniform kernels, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _activation(name: str) -> nn.Module:
    return getattr(nn, ACTIVATIONS[name])()  # the name was checked by the model's option schema


def mlp(hidden: Sequence[int] = (128, 64), activation: str = "relu", dropout: float = 0.0,
        num_classes: int = 10) -> Net:
    """The tutorial's network: Flatten -> Dense(128, relu) -> Dense(64, relu) -> Dense(10)."""
    options = mlp_options(hidden, activation, dropout, num_classes)
    hidden, dropout = options["hidden"], options["dropout"]
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = 28 * 28
    for i, h in enumerate(hidden):
        suffix = "" if i == 0 else f"_{i}"
        layers[f"dense{suffix}"] = nn.Linear(width, h)
        layers[f"act{suffix}"] = _activation(activation)
        if dropout:
            layers[f"dropout{suffix}"] = nn.Dropout(dropout)
        width = h
    layers[f"dense_{len(hidden)}"] = nn.Linear(width, num_classes)
    net = Net(layers, "mlp", options, False)
    _keras_init(net)
    return net


def cnn(num_classes: int = 10) -> Net:
    """The tutorial's CNN: Conv(32) -> Pool -> Conv(64) -> Pool -> Flatten -> Dense(128) -> Dense(10)."""
    # ReLU and 2x2 max-pooling commute, so each ReLU runs after its pooling: the same function as
    # Keras's Conv2D(activation="relu") -> MaxPooling2D, with a quarter of the ReLU work.
    layers = OrderedDict(
        conv2d=nn.Conv2d(1, 32, 3),
        max_pooling2d=nn.MaxPool2d(2),
        act=nn.ReLU(),
        conv2d_1=nn.Conv2d(32, 64, 3),
        max_pooling2d_1=nn.MaxPool2d(2),
        act_1=nn.ReLU(),
        flatten=nn.Flatten(),
        dense=nn.Linear(64 * 5 * 5, 128),
        act_2=nn.ReLU(),
        dense_1=nn.Linear(128, num_classes),
    )
    net = Net(layers, "cnn", cnn_options(num_classes), True)
    _keras_init(net)
    return net


def _conv_bn(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]


def cnn_bn(dropout: float = 0.25, num_classes: int = 10) -> Net:
    """The model behind ``--preset best``: three batch-normalised conv stages, dropout, a small head."""
    options = cnn_bn_options(dropout, num_classes)
    conv1, bn1 = _conv_bn(1, 32, 5)
    conv2, bn2 = _conv_bn(32, 64, 3)
    conv3, bn3 = _conv_bn(64, 128, 3)
    layers = OrderedDict(
        conv2d=conv1, batch_normalization=bn1, max_pooling2d=nn.MaxPool2d(2), act=nn.ReLU(),
        conv2d_1=conv2, batch_normalization_1=bn2, max_pooling2d_1=nn.MaxPool2d(2), act_1=nn.ReLU(),
        conv2d_2=conv3, batch_normalization_2=bn3, max_pooling2d_2=nn.MaxPool2d(2), act_2=nn.ReLU(),
        flatten=nn.Flatten(),
        dropout=nn.Dropout(dropout),
        dense=nn.Linear(128 * 3 * 3, 128, bias=False),
        batch_normalization_3=nn.BatchNorm1d(128),
        act_3=nn.ReLU(),
        dropout_1=nn.Dropout(dropout),
        dense_1=nn.Linear(128, num_classes),
    )
    net = Net(layers, "cnn_bn", options, True)
    _keras_init(net)
    return net


MODELS: dict[str, Callable[..., Net]] = {"mlp": mlp, "cnn": cnn, "cnn_bn": cnn_bn}


def build_model(name: str, **options) -> Net:
    """Build a model from the registry by name, e.g. ``build_model("mlp", hidden=[256, 128])``."""
    resolved = model_options(name, **options)  # ConfigError for an unknown name or a bad option
    return MODELS[name](**resolved)


def model_from_config(config: dict) -> Net:
    """The (untrained) model a run's ``config.json`` describes."""
    spec = dict(config["model"])
    name = spec.pop("name", None)
    try:
        return build_model(name, **spec)
    except ConfigError as e:
        raise RunError(f"config.json describes a model digitlab cannot build: {e}") from None


def load_model(run_dir: str | os.PathLike) -> tuple[Net, dict]:
    """Rebuild a run's model from config.json, load its weights, and return ``(model.eval(), config)``."""
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    model = model_from_config(config)
    runs.load_state(model, runs.load_tensors(run_dir / runs.WEIGHTS), run_dir / runs.WEIGHTS)
    return model.eval(), config


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int | None, ...]
    params: int


def summary_rows(model: Net) -> list[LayerRow]:
    """One row per layer with its output shape (batch as None, channels last like Keras) and parameters."""
    rows: list[LayerRow] = []
    x = torch.zeros(2, 28, 28)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        if model.image_input:
            x = x.reshape(2, 1, 28, 28)
        for lname, layer in model.named_children():
            x = layer(x)
            shape = tuple(x.shape[1:])
            if x.ndim == 4:  # report NHWC like Keras
                shape = (shape[1], shape[2], shape[0])
            rows.append(LayerRow(lname, type(layer).__name__, (None, *shape),
                                 sum(p.numel() for p in layer.parameters())))
    model.train(was_training)
    return rows


def architecture(model: Net) -> list[dict]:
    """:func:`summary_rows` as JSON-ready dicts (``name``, ``kind``, ``output_shape``, ``params``), as
    ONNX metadata and ``/api/model`` carry them."""
    return [{"name": r.name, "kind": r.kind, "output_shape": list(r.output_shape), "params": int(r.params)}
            for r in summary_rows(model)]


def summary_text(model: Net) -> str:
    """A plain-text Keras-like summary (the CLI renders the same rows with rich)."""
    rows = summary_rows(model)
    lines = [f'Model: "{model.name}"', f"{'Layer (type)':<36}{'Output Shape':<24}{'Param #':>10}"]
    for r in rows:
        lines.append(f"{r.name + ' (' + r.kind + ')':<36}{str(r.output_shape):<24}{r.params:>10,}")
    total = count_params(model)
    trainable = count_params(model, trainable_only=True)
    lines += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}"]
    return "\n".join(lines)


# --- tensor evaluate / predict ---------------------------------------------------------------

def as_tensor(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Arrays to tensors; uint8 images become floats in [0, 1] through ``preprocess.to_float``."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    x = np.asarray(x)
    if dtype.is_floating_point and x.dtype == np.uint8:
        x = to_float(x)
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


@torch.no_grad()
def evaluate_tensors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000,
                     bf16: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on float images ``x`` and labels ``y``."""
    was = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double().cpu()
        correct += (logits.argmax(1) == yb).sum().cpu()
    model.train(was)
    n = max(1, len(x))
    return float(loss_sum) / n, int(correct) / n


def evaluate_arrays(model: nn.Module, x, y, batch_size: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy for numpy (or tensor) images and labels."""
    device = next(model.parameters()).device
    return evaluate_tensors(model, as_tensor(x, torch.float32).to(device), as_tensor(y, torch.int64).to(device),
                            batch_size)


@torch.no_grad()
def predict_arrays(model: nn.Module, x, batch_size: int = 2000) -> np.ndarray:
    """(N, 10) float32 probabilities for (N, 28, 28) images (uint8, or floats in [0, 1])."""
    was = model.training
    model.eval()
    xt = as_tensor(x, torch.float32).to(next(model.parameters()).device)
    if xt.ndim == 2:
        xt = xt[None]
    out = softmax_batches(model, xt, batch_size)
    model.train(was)
    return out


def softmax_batches(forward: Callable[[torch.Tensor], torch.Tensor], xt: torch.Tensor, batch_size: int,
                    classes: int = 10) -> np.ndarray:
    """(N, classes) float32 probabilities: ``forward``'s logits, ``batch_size`` images at a time."""
    out = [torch.softmax(forward(xt[i : i + batch_size]).float(), 1) for i in range(0, len(xt), batch_size)]
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, classes), np.float32)
