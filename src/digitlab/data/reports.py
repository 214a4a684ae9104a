"""What the ``digitlab data`` commands report: shapes, class counts and sources, the first samples
as PNG files, and the shapes after the validation split."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.data.datasets import load_data, load_dataset
from digitlab.data.formats import write_png
from digitlab.data.locate import Source
from digitlab.data.preprocess import to_float, train_val_split
from digitlab.data.registry import Arrays, get_dataset
from digitlab.errors import ConfigError


@dataclass
class DataInfo:
    """Shapes, dtypes, class counts and pixel range of a loaded dataset, and where it came from."""

    dataset: str
    classes: tuple[str, ...]
    source: Source
    arrays: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    class_counts: dict[str, list[int]] = field(default_factory=dict)
    pixel_range: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "classes": list(self.classes),
            "arrays": {k: {"shape": list(s), "dtype": d} for k, (s, d) in self.arrays.items()},
            "class_counts": self.class_counts,
            "pixel_range": {k: list(v) for k, v in self.pixel_range.items()},
            "source": self.source.to_dict(),
        }


def describe_arrays(name: str, arrays: Arrays, source: Source) -> DataInfo:
    ds = get_dataset(name)
    (x_train, y_train), (x_test, y_test) = arrays
    info = DataInfo(ds.name, ds.classes, source)
    for key, a in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
        info.arrays[key] = (tuple(int(d) for d in a.shape), str(a.dtype))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        info.class_counts[split] = np.bincount(y, minlength=len(ds.classes)).astype(int).tolist()
        info.pixel_range[split] = (int(x.min()), int(x.max()))
    return info


def data_info(
    name: str = "mnist", data_dir: str | os.PathLike | None = None, **load_options: Any
) -> DataInfo:
    """Load a dataset and describe it (for ``digitlab data info``)."""
    arrays, source = load_dataset(name, data_dir, **load_options)
    return describe_arrays(name, arrays, source)


def _split_arrays(arrays: Arrays, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; choose train or test")
    return arrays[0] if split == "train" else arrays[1]


def first_samples(
    name: str = "mnist", split: str = "train", count: int = 10, data_dir: str | os.PathLike | None = None,
    **load_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` images and labels of a split."""
    if count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    x, y = _split_arrays(load_data(name, data_dir, **load_options), split)
    if count > len(x):
        raise ConfigError(f"--count {count} is more than the {len(x):,} images of the {split} split")
    return x[:count], y[:count]


def extract_pngs(
    images: np.ndarray, labels: np.ndarray, out_dir: str | os.PathLike, prefix: str = "train"
) -> list[Path]:
    """Write each image as ``{prefix}_{i}_label_{y}.png`` (8-bit grayscale, same size as the array,
    decoding it gives back the array byte for byte). Returns the paths in order."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    pairs = enumerate(zip(images, labels, strict=True))
    return [write_png(out / f"{prefix}_{i}_label_{int(y)}.png", x) for i, (x, y) in pairs]


@dataclass
class SplitInfo:
    """Shapes/dtypes after preprocessing: train, validation and test parts."""

    dataset: str
    val_fraction: float
    seed: int
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "val_split": self.val_fraction, "split_seed": self.seed,
                "parts": self.parts}


def split_info(
    name: str = "mnist", data_dir: str | os.PathLike | None = None, val_fraction: float = 0.2, seed: int = 42,
    **load_options: Any,
) -> SplitInfo:
    """Load, scale to float32 [0, 1] and hold out ``val_fraction`` of the training set exactly as
    sklearn's ``train_test_split(test_size=val_fraction, random_state=seed)`` would; report shapes."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    (x_train, y_train), (x_test, y_test) = load_data(name, data_dir, **load_options)
    (xt, yt), (xv, yv) = train_val_split(x_train, y_train, val_fraction, seed)
    info = SplitInfo(get_dataset(name).name, val_fraction, seed)
    for part, x, y in (("train", xt, yt), ("validation", xv, yv), ("test", x_test, y_test)):
        xf = to_float(x)
        info.parts[part] = {
            "x_shape": list(xf.shape), "x_dtype": str(xf.dtype),
            "y_shape": list(y.shape), "y_dtype": str(y.dtype),
            "min": float(xf.min()), "max": float(xf.max()),
        }
    return info
