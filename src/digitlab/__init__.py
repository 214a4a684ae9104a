"""digitlab: train, evaluate, explain and serve handwritten-digit recognisers.

The names below load their module on first use, so ``import digitlab`` stays light (and works
without PyTorch for ONNX inference)::

    import digitlab as dl
    (x_train, y_train), (x_test, y_test) = dl.load_data("mnist")
    model = dl.build_model("mlp")
    history = model.fit(x_train, y_train, epochs=5, batch_size=32)
    loss, acc = model.evaluate(x_test, y_test)
"""

from __future__ import annotations

import importlib
from typing import Any

from digitlab.errors import DigitlabError

__version__ = "0.1.0"

_LAZY = {
    "load_data": "digitlab.data.datasets",
    "train_val_split": "digitlab.data.preprocess",
    "to_float": "digitlab.data.preprocess",
    "build_model": "digitlab.training.keras_model",
    "summary_text": "digitlab.models",
    "count_params": "digitlab.models",
    "fit": "digitlab.training.torch_engine",
    "train": "digitlab.training.job",
    "compare": "digitlab.training.compare",
    "explain": "digitlab.inference.explain",
    "TrainConfig": "digitlab.config",
    "FitOptions": "digitlab.config",
    "load_model": "digitlab.models",
    "load_predictor": "digitlab.inference.predictor",
    "load_digit": "digitlab.data.pictures",
    "read_number": "digitlab.inference.numbers",
    "read_digit": "digitlab.inference.predictor",
    "to_mnist": "digitlab.data.pictures",
}

__all__ = ["DigitlabError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
