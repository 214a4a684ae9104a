"""Checking the types of what digitlab reads back from disk: config.json, a checkpoint's state.json,
ONNX metadata.

One pydantic schema per document (the run config's lives beside its dataclasses in
:mod:`digitlab.config`, made from them by :func:`schema_of`), checked strictly (no ``"5"`` for 5, no
``true`` for 1) before any value is used, so a tampered or damaged file is one line naming the file
and the field, not a traceback. Values (ranges, finiteness, known names) are checked afterwards by the config itself.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, fields
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model


class Strict(BaseModel):
    """A document's schema: strict types; keys it does not know are let through."""

    model_config = ConfigDict(strict=True, extra="allow")


def schema_of(cls: type) -> type[BaseModel]:
    """The strict schema of a dataclass's fields, their types and defaults taken from the class itself,
    so a document and the dataclass it becomes never disagree."""
    hints = get_type_hints(cls)
    spec: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            default: Any = f.default
        elif f.default_factory is not MISSING:
            default = Field(default_factory=f.default_factory)
        else:
            default = ...
        spec[f.name] = (hints[f.name], default)
    return create_model(f"{cls.__name__}Schema", __base__=Strict, __doc__=cls.__doc__, **spec)


class CheckpointStateSchema(Strict):
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
