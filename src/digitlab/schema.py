"""The types of what digitlab reads back from disk: config.json, a checkpoint's state.json, ONNX metadata.

One pydantic schema per document, checked strictly (no ``"5"`` for 5, no ``true`` for 1) before any
value is used, so a tampered or damaged file is one line naming the file and the field, not a
traceback. Values (ranges, finiteness, known names) are checked afterwards by the config itself.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class FitSchema(_Strict):
    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    momentum: float | None = None
    nesterov: bool = False
    schedule: str = "constant"
    augment: bool = False
    label_smoothing: float = 0.0
    early_stopping: int = 0
    monitor: str = "val_loss"
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    compile: bool = False
    threads: int | None = None
    fast: bool = True
    engine: str = "auto"


class ModelSchema(_Strict):
    name: str
    num_classes: int | None = Field(None, ge=1)


class RunConfigSchema(_Strict):
    """config.json of a run folder (and the ``config`` metadata of an exported ONNX file)."""

    model: ModelSchema
    dataset: str = "mnist"
    labels: list[str] | None = None
    val_split: float = 0.2
    split_seed: int = 42
    preset: str = "tutorial"
    fit: FitSchema = Field(default_factory=FitSchema)

    @model_validator(mode="after")
    def _labels_cover_the_classes(self) -> RunConfigSchema:
        if self.labels is not None and self.model is not None and self.model.num_classes is not None \
                and len(self.labels) != self.model.num_classes:
            raise ValueError(f"labels names {len(self.labels)} classes but the model has {self.model.num_classes}")
        return self


class OnnxConfigSchema(RunConfigSchema):
    """The ``config`` metadata of an exported ONNX file: a run's config, whose sections may be left out."""

    model: ModelSchema | None = None  # type: ignore[assignment]


class CheckpointStateSchema(_Strict):
    """A checkpoint's state.json."""

    epoch: int = Field(ge=0)
    has_best: bool = False
    optimizer: dict[str, Any]
    history: list[dict[str, Any]] = []
    best_value: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0


def check(schema: type[BaseModel], data: Any, source: str | os.PathLike, error: type[Exception]) -> None:
    """Raise ``error`` with one line (file, field, problem) unless ``data`` fits ``schema``."""
    try:
        schema.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "the document"
        msg = first.get("msg", "invalid").removeprefix("Value error, ")
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        if not isinstance(data, dict):
            raise error(f"{source}: must hold a JSON object, got {type(data).__name__}") from None
        raise error(f"{source}: {where}: {msg}{more}") from None
