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

from digitlab.data.formats import atomic_write_bytes

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


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def training_curves(history: Sequence[dict]) -> Figure:
    """Loss and accuracy per epoch, training vs validation, in two panels.

    ``history`` rows are a run's ``history.json`` rows: ``epoch, loss, accuracy`` and, when the run
    held out a validation set, ``val_loss, val_accuracy`` (other keys are ignored).
    """
    rows = [r for r in history if isinstance(r, dict)]
    if not rows:
        raise ValueError("history is empty: nothing to plot")
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    # fixed margins: constrained layout would double the drawing time of this simple figure
    fig = Figure(figsize=(11, 4.2))
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.12, top=0.84, wspace=0.22)
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        for prefix, label, style in (("", "train", "o-"), ("val_", "validation", "s--")):
            pts = [(e, r[prefix + key]) for e, r in zip(epochs, rows, strict=True)
                   if r.get(prefix + key) is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, label=label, markersize=4)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        _integer_epochs(ax)
        if ax.lines:
            ax.legend()
    fig.suptitle("Training curves")
    return fig


def confusion_matrix_figure(
    cm: np.ndarray, class_names: Sequence[str] | None = None, title: str | None = None
) -> Figure:
    """A confusion matrix as a heat map with the count in every cell (rows: true, columns: predicted)."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    k = cm.shape[0]
    names = [_class_name(i, class_names) for i in range(k)]
    long_names = max(len(n) for n in names) > 2
    fig = Figure(figsize=(8, 7) if long_names else (7, 6), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="images")
    ax.set_xticks(range(k), names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    total = int(cm.sum())
    if title is None:
        acc = np.trace(cm) / total if total else 0.0
        title = f"Confusion matrix ({total:,} images, accuracy {acc:.4f})"
    ax.set_title(title)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]:d}" if np.issubdtype(cm.dtype, np.integer) else f"{cm[i, j]:.2f}",
                    ha="center", va="center", fontsize=8 if k <= 10 else 6,
                    color="white" if cm[i, j] > threshold else "black")
    return fig


def prediction_grid(
    images: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    rows: int = 5,
    cols: int = 3,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """The tutorial's prediction figure: ``rows x cols`` pairs of (image, probability bars).

    Each image (binary colour map) is captioned ``"{pred} {conf:2.0f}% ({true})"``, blue when the
    prediction is right and red when wrong; beside it the class probabilities as grey bars with
    the predicted class red and the true class blue, y from 0 to 1.
    """
    images, probs, labels = np.asarray(images), np.asarray(probs), np.asarray(labels)
    n = rows * cols
    if len(images) < n or len(probs) < n or len(labels) < n:
        raise ValueError(f"a {rows}x{cols} grid needs {n} images, probabilities and labels; "
                         f"got {len(images)}, {len(probs)}, {len(labels)}")
    k = probs.shape[1]
    fig = Figure(figsize=(2 * 2 * cols, 2 * rows), layout="tight")
    for i in range(n):
        p = probs[i]
        pred, true = int(np.argmax(p)), int(labels[i])
        color = "blue" if pred == true else "red"
        ax = fig.add_subplot(rows, 2 * cols, 2 * i + 1)
        ax.grid(False)
        _no_ticks(ax)
        ax.imshow(images[i], cmap="binary")
        ax.set_xlabel(f"{_class_name(pred, class_names)} {100 * p[pred]:2.0f}% "
                      f"({_class_name(true, class_names)})", color=color)
        bx = fig.add_subplot(rows, 2 * cols, 2 * i + 2)
        bx.grid(False)
        bx.set_xticks(range(k))
        bx.set_yticks([])
        bars = bx.bar(range(k), p, color="#777777")
        bx.set_ylim(0, 1)
        bars[pred].set_color("red")
        if 0 <= true < k:
            bars[true].set_color("blue")
    return fig


def misclassified_gallery(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    class_names: Sequence[str] | None = None,
    cols: int = 8,
) -> Figure:
    """Misclassified images (already chosen, e.g. the most confidently wrong), each titled with the
    predicted label, the true label and the model's confidence in its (wrong) answer."""
    images, true, pred, confidence = (np.asarray(a) for a in (images, true, pred, confidence))
    n = len(images)
    if not len(true) == len(pred) == len(confidence) == n:
        raise ValueError(f"lengths differ: {n} images, {len(true)} true, {len(pred)} pred, "
                         f"{len(confidence)} confidences")
    if n == 0:
        fig = Figure(figsize=(6, 2), layout="constrained")
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No misclassified images", ha="center", va="center", fontsize=14)
        return fig
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig = Figure(figsize=(1.6 * cols, 1.9 * rows + 0.5), layout="constrained")
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        _no_ticks(ax)
        ax.imshow(images[i], cmap="binary")
        ax.set_title(f"pred {_class_name(pred[i], class_names)} ({100 * float(confidence[i]):.0f}%)\n"
                     f"true {_class_name(true[i], class_names)}", fontsize=9, color="red")
    fig.suptitle("Most confidently wrong predictions")
    return fig


def _first_layer_kernels(model) -> tuple[np.ndarray, str]:
    """The first weight matrix/kernel of ``model`` as (K, H, W) images, and a description."""
    if isinstance(model, np.ndarray):
        name, w = "weights", model
    else:
        found = next(((n, p) for n, p in model.named_parameters() if p.ndim in (2, 4)), None)
        if found is None:
            raise ValueError("model has no dense or convolution weights")
        name, w = found[0].removesuffix(".weight"), found[1].detach().float().cpu().numpy()
    if w.ndim == 4:  # conv: (out, in, kh, kw) -> one image per output filter
        kernels = w.mean(axis=1) if w.shape[1] > 1 else w[:, 0]
        return kernels, f"{name}: {w.shape[0]} filters of {w.shape[2]}x{w.shape[3]}"
    if w.ndim == 2:  # dense: (units, inputs) -> one 28x28 image per unit
        side = int(round(np.sqrt(w.shape[1])))
        if side * side != w.shape[1]:
            raise ValueError(f"first dense layer has {w.shape[1]} inputs, not a square image")
        return w.reshape(w.shape[0], side, side), f"{name}: {w.shape[0]} units x {side}x{side} inputs"
    raise ValueError(f"cannot draw weights of shape {w.shape}")


def first_layer_weights(model) -> Figure:
    """The first layer's weights as images, on a diverging colour map centred at 0.

    For an MLP each unit of the first dense layer becomes a 28x28 picture of its 784 input weights
    (128 tiles for the tutorial MLP); for a CNN each filter of the first convolution is one tile
    (32 3x3 filters for the tutorial CNN). ``model`` is a torch module (or a numpy weight array).
    All tiles share one colour scale (red positive, blue negative), shown by the colour bar.
    """
    kernels, what = _first_layer_kernels(model)
    n = len(kernels)
    cols = int(np.ceil(np.sqrt(2 * n)))
    rows = -(-n // cols)
    vmax = float(np.abs(kernels).max()) or 1.0
    # Up to a few hundred tiles: placed by hand (a layout engine would take seconds to solve this).
    tile, gap, margin, top, bar = (0.75 if kernels.shape[-1] > 8 else 0.9), 0.07, 0.15, 0.45, 1.35
    width = 2 * margin + cols * tile + (cols - 1) * gap + bar
    height = 2 * margin + top + rows * tile + (rows - 1) * gap
    fig = Figure(figsize=(width, height))
    im = None
    for i in range(n):
        r, c = divmod(i, cols)
        x0 = margin + c * (tile + gap)
        y0 = height - margin - top - (r + 1) * tile - r * gap
        ax = fig.add_axes((x0 / width, y0 / height, tile / width, tile / height))
        ax.xaxis.set_visible(False)
        ax.yaxis.set_visible(False)
        im = ax.imshow(kernels[i], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    grid_bottom, grid_height = margin, rows * tile + (rows - 1) * gap
    cax = fig.add_axes(((width - bar + 0.25) / width, (grid_bottom + 0.1 * grid_height) / height,
                        0.18 / width, 0.8 * grid_height / height))
    fig.colorbar(im, cax=cax, label="weight")
    fig.suptitle(f"First layer weights ({what})", y=1 - 0.5 * (margin + top) / height, va="center")
    return fig
