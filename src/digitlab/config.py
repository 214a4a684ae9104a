"""What a training run is asked to do: each model's option schema, fit options, presets, the whole
run's config (no torch here).

The CLI builds and checks a :class:`TrainConfig` before choosing an engine, so a bad option is
reported before anything heavy is imported or any file is written.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import Field, model_validator

from digitlab import __version__
from digitlab.data.registry import get_dataset
from digitlab.errors import ConfigError
from digitlab.schema import Strict, check, schema_of

# Keras's default hyper-parameters for each optimizer the tutorial names.
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7},
    "adamw": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7},
    "sgd": {"lr": 1e-2, "momentum": 0.0, "nesterov": False},
    "adagrad": {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7},
    "rmsprop": {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7, "momentum": 0.0},
    "adadelta": {"lr": 1e-3, "rho": 0.95, "eps": 1e-7},
}
SCHEDULES = ("constant", "cosine", "onecycle", "plateau")
MAX_EPOCHS = 100_000
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")


@dataclass
class FitOptions:
    """Everything :func:`fit` needs besides the model and the data (all JSON-serialisable)."""

    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None  # None: the optimizer's Keras default
    weight_decay: float = 0.0
    momentum: float | None = None  # sgd / rmsprop
    nesterov: bool = False
    schedule: str = "constant"
    augment: bool = False
    degrade: bool = False  # blur, low resolution, stroke width, gamma (torch engine)
    label_smoothing: float = 0.0
    early_stopping: int = 0  # patience in epochs; 0 = off
    monitor: str = "val_loss"
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    compile: bool = False
    threads: int | None = None
    fast: bool = True  # allow the hand-written MLP step
    engine: str = "auto"  # auto: native where it can run the config, torch otherwise

    def validate(self) -> None:
        check(FitSchema, asdict(self), "training options", ConfigError)
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.epochs > MAX_EPOCHS:
            raise ConfigError(f"epochs must be at most {MAX_EPOCHS:,}, got {self.epochs:,}")
        for name in ("lr", "weight_decay", "momentum", "label_smoothing"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{name.replace('_', ' ')} must be a finite number, got {value}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be between 0 and {2**32 - 1}, got {self.seed}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZER_DEFAULTS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZER_DEFAULTS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.monitor not in MONITORS:
            raise ConfigError(f"unknown monitor {self.monitor!r}; choose one of: {', '.join(MONITORS)}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.early_stopping < 0:
            raise ConfigError(f"early-stopping patience must be >= 0, got {self.early_stopping}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        check_device_name(self.device)
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; choose one of: {', '.join(ENGINES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FitSchema = schema_of(FitOptions)


class ModelSchema(Strict):
    name: str
    num_classes: int | None = Field(None, ge=1)


class RunConfigSchema(Strict):
    """config.json of a run folder (and the ``config`` metadata of an exported ONNX file)."""

    model: ModelSchema
    dataset: str = "mnist"
    labels: list[str] | None = None
    val_split: float = 0.2
    split_seed: int = 42
    preset: str = "tutorial"
    fit: FitSchema = Field(default_factory=FitSchema)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _labels_cover_the_classes(self) -> RunConfigSchema:
        if self.labels is not None and self.model is not None and self.model.num_classes is not None \
                and len(self.labels) != self.model.num_classes:
            raise ValueError(f"labels names {len(self.labels)} classes but the model has {self.model.num_classes}")
        return self


class OnnxConfigSchema(RunConfigSchema):
    """The ``config`` metadata of an exported ONNX file: a run's config, whose sections may be left out."""

    model: ModelSchema | None = None  # type: ignore[assignment]


ENGINES = ("auto", "native", "torch")

# Activation names, each with the torch.nn layer that computes it (models builds it by that name).
ACTIVATIONS: dict[str, str] = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "gelu": "GELU"}
ACTIVATION_NAMES = tuple(ACTIVATIONS)


def cpu_cores() -> int:
    """CPU cores this process may run on (the default number of training threads)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_rank(local_world_size: int) -> int:
    """CPU threads for each of ``local_world_size`` processes sharing this machine (at least 1)."""
    return max(1, cpu_cores() // max(1, local_world_size))


def check_device_name(name: str) -> None:
    """A device name's spelling; whether that device exists is the torch engine's question."""
    if name in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", name):
        return
    raise ConfigError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")


# --- each model's options: checked, defaults filled in (what config.json records) --------

def _classes(options: dict[str, Any], num_classes: int) -> dict[str, Any]:
    if num_classes != 10:
        options["num_classes"] = num_classes
    return options


def _dropout(dropout: float) -> float:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    return dropout


def mlp_options(hidden: Sequence[int] = (128, 64), activation: str = "relu", dropout: float = 0.0,
                num_classes: int = 10) -> dict[str, Any]:
    """The MLP: Flatten -> Dense(h, activation) for each h in ``hidden`` -> Dense(num_classes)."""
    try:
        hidden = [int(h) for h in hidden]
    except (TypeError, ValueError):
        raise ConfigError(f"hidden sizes must be positive integers, got {hidden}") from None
    if not hidden or any(h <= 0 for h in hidden):
        raise ConfigError(f"hidden sizes must be positive integers, got {hidden}")
    dropout = _dropout(dropout)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return _classes({"hidden": hidden, "activation": activation, "dropout": dropout}, num_classes)


def cnn_options(num_classes: int = 10) -> dict[str, Any]:
    """The tutorial's CNN has no options besides its number of classes."""
    return _classes({}, num_classes)


def cnn_bn_options(dropout: float = 0.25, num_classes: int = 10) -> dict[str, Any]:
    """The batch-normalised CNN of ``--preset best``: its dropout rate."""
    return _classes({"dropout": _dropout(dropout)}, num_classes)


MODEL_OPTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "mlp": mlp_options, "cnn": cnn_options, "cnn_bn": cnn_bn_options,
}


def model_options(name: str, **options: Any) -> dict[str, Any]:
    """A model's options checked against its schema, defaults filled in; ConfigError when they do not fit."""
    try:
        schema = MODEL_OPTIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_OPTIONS)}") from None
    try:
        return schema(**options)
    except TypeError as e:
        raise ConfigError(f"bad options for model {name!r}: {e}") from None


# --- a whole training run: data -> model -> fit -> test -> run folder --------------------

PRESETS: dict[str, dict[str, Any]] = {
    # The tutorial's protocol: MLP, sklearn-identical 80/20 split, 5 epochs, batch 32, Adam.
    "tutorial": {},
    # Top accuracy: the batch-normalised CNN, augmentation (geometry, and blur, resolution, stroke
    # width, gamma for real pictures), one-cycle AdamW, all 60,000 images.
    "best": {
        "model": "cnn_bn", "val_split": 0.0,
        "fit": {"epochs": 20, "batch_size": 128, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 5e-4,
                "schedule": "onecycle", "augment": True, "degrade": True, "label_smoothing": 0.05},
    },
}


@dataclass
class TrainConfig:
    """Everything needed to rebuild the model and repeat the run (saved as config.json)."""

    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    val_split: float = 0.2
    split_seed: int = 42
    fit: FitOptions = field(default_factory=FitOptions)
    preset: str = "tutorial"

    @classmethod
    def from_preset(cls, name: str = "tutorial", **overrides: Any) -> TrainConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        p = PRESETS[name]
        cfg = cls(preset=name, fit=FitOptions(**p.get("fit", {})),
                  **{k: v for k, v in p.items() if k != "fit"})
        for k, v in overrides.items():
            if v is None:
                continue
            if hasattr(cfg, k) and k != "fit":
                setattr(cfg, k, v)
            elif hasattr(cfg.fit, k):
                setattr(cfg.fit, k, v)
            else:
                raise ConfigError(f"unknown training option {k!r}")
        return cfg

    def validate(self) -> None:
        get_dataset(self.dataset)
        self.model_options = model_options(self.model, **self.model_options)  # defaults filled in
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"validation split must be in [0, 1), got {self.val_split}")
        self.fit.validate()

    def to_json(self) -> dict[str, Any]:
        return {
            "digitlab_version": __version__,
            "preset": self.preset,
            "model": {"name": self.model, **self.model_options},
            "dataset": self.dataset,
            "labels": list(get_dataset(self.dataset).classes),
            "input": {"shape": [28, 28], "dtype": "uint8", "normalisation": "x / 255",
                      "polarity": "white ink on black", "output": "logits; softmax for probabilities"},
            "val_split": self.val_split,
            "split_seed": self.split_seed,
            "fit": self.fit.to_dict(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        model = dict(data["model"])
        name = model.pop("name")
        fit_opts = FitOptions(**{k: v for k, v in data.get("fit", {}).items() if k in FitOptions.__dataclass_fields__})
        return cls(model=name, model_options=model, dataset=data.get("dataset", "mnist"),
                   val_split=data.get("val_split", 0.2), split_seed=data.get("split_seed", 42),
                   fit=fit_opts, preset=data.get("preset", "tutorial"))


def default_run_dir(model: str, root: str | os.PathLike = "runs") -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(root, f"{model}-{stamp}")
    k = 1
    while os.path.exists(path):
        k += 1
        path = os.path.join(root, f"{model}-{stamp}-{k}")
    return path
