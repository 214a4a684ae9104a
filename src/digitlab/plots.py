"""Every figure digitlab draws. Each function returns a :class:`matplotlib.figure.Figure`.

Figures are created directly (``Figure(...)``, never ``pyplot``), so there is no global figure
state, no backend to select and nothing needs a display: :func:`save_figure` renders PNG bytes
with the Agg renderer and writes them atomically.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from digitlab.formats import atomic_write_bytes

DEFAULT_DPI = 100


def _class_name(label: int, class_names: Sequence[str] | None) -> str:
    label = int(label)
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def _no_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def samples_grid(
    images: np.ndarray,
    labels: np.ndarray,
    rows: int = 2,
    cols: int = 5,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """The first ``rows * cols`` images in a grid, each titled with its label (the tutorial's step 2)."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W), got {images.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols must be positive, got {rows}x{cols}")
    fig = Figure(figsize=(2.0 * cols, 2.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        _no_ticks(ax)
        if i >= len(images):
            ax.set_axis_off()
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255 if images.dtype == np.uint8 else None)
        ax.set_title(f"Label: {_class_name(labels[i], class_names)}")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = DEFAULT_DPI) -> Path:
    """Render ``fig`` as PNG and write it atomically to ``path``; the figure is closed afterwards."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        _close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _close(fig: Figure) -> None:
    """Release a figure's memory; also drop it from pyplot's registry if pyplot made it."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    fig.clear()
