"""What a training job asks of an engine (:class:`Engine`) and the data it hands over (:class:`Split`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from digitlab.training.driver import EpochHook, Resume
from digitlab.training.loop import EpochState, History


@dataclass
class Split:
    """The run's data: uint8 images (N, 28, 28) and int64 labels; no validation part when val_split is 0."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray


class Engine(Protocol):
    """A training engine: builds the model, trains it through the epoch driver, saves what it learnt."""

    name: str

    def build(self) -> None: ...
    def resume(self, run_path: Path) -> Resume: ...
    def fit(self, split: Split, quiet: bool, on_epoch_end: EpochHook | None, resume: Resume | None,
            busy: Callable[[], bool] | None = None) -> History: ...
    def checkpoint(self, run_path: Path, state: EpochState, best: Any) -> None: ...
    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]: ...
    def save_weights(self, run_path: Path) -> None: ...
    def info(self) -> dict[str, Any]: ...
    def torch_model(self) -> Any: ...
