"""Every figure digitlab draws. Each function returns a :class:`matplotlib.figure.Figure`.

Figures are created directly (``Figure(...)``, never ``pyplot``), so there is no global figure
state, no backend to select and nothing needs a display: :func:`save_figure` renders PNG bytes
with the Agg renderer and writes them atomically.
"""

from __future__ import annotations

import functools
import io
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from digitlab.data.formats import atomic_write_bytes
from digitlab.errors import ConfigError

DEFAULT_DPI = 100
LANGS = ("en", "zh")

# Figure words in Chinese, keyed by the English (the tutorial's words where it has them: "标签: 5").
ZH = {
    "Label": "标签", "Loss": "损失", "Accuracy": "准确率", "epoch": "轮次 (epoch)", "loss": "损失",
    "accuracy": "准确率", "train": "训练集", "validation": "验证集", "Training curves": "训练曲线",
    "Predicted label": "预测标签", "True label": "真实标签", "images": "图像数",
    "Confusion matrix": "混淆矩阵", "test set": "测试集", "validation set": "验证集",
    "accuracy {acc}": "准确率 {acc}", "{n} images": "{n} 张图像",
    "No misclassified images": "没有分错的图像", "Most confidently wrong predictions": "最有把握却分错的预测",
    "pred": "预测", "true": "真实", "First layer weights": "第一层权重", "weight": "权重",
    "Validation loss": "验证集损失", "Validation accuracy": "验证集准确率", "best epoch": "最佳轮次",
    "Comparison": "对比实验", "seeds": "个种子",
    "band: min to max over seeds; ring: best epoch (lowest mean validation loss)":
        "色带：各种子的最小值到最大值；圆圈：最佳轮次（平均验证集损失最低）",
    "Input": "输入", "up": "升高", "down": "降低",
    "Why {label}": "为什么是 {label}", "Why not {label}": "为什么不是 {label}",
    "runner-up {label}": "第二名 {label}",
}

# CJK fonts matplotlib may find, most wanted first (Debian's fonts-noto-cjk gives the first).
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Source Han Sans SC", "Source Han Sans CN",
             "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei", "PingFang SC",
             "Heiti SC", "Hiragino Sans GB", "AR PL UMing CN", "Noto Serif CJK SC")
NO_CJK_FONT = ("--lang zh needs a font with Chinese characters, and matplotlib finds none. Install one, e.g. "
               "'sudo apt-get install fonts-noto-cjk' (Debian/Ubuntu), 'sudo dnf install google-noto-sans-cjk-fonts' "
               "(Fedora) or 'brew install --cask font-noto-sans-cjk' (macOS), or point DIGITLAB_CJK_FONT at a "
               ".ttf/.otf/.ttc file; then delete matplotlib's font cache (~/.cache/matplotlib) if it was built "
               "before the font was installed.")


def tr(text: str, lang: str = "en") -> str:
    """A figure's words in ``lang`` (English is the key; words without a translation stay English)."""
    return ZH.get(text, text) if lang == "zh" else text


@functools.cache
def _cjk_family() -> str | None:
    wanted = os.environ.get("DIGITLAB_CJK_FONT")
    if wanted:
        if os.path.isfile(wanted):
            font_manager.fontManager.addfont(wanted)
            return font_manager.FontProperties(fname=wanted).get_name()
        return wanted
    names = {f.name for f in font_manager.fontManager.ttflist}
    found = next((n for n in CJK_FONTS if n in names), None)
    if found is None:  # matplotlib's cached font list may predate the font: look at the system's fonts again
        known = {f.fname for f in font_manager.fontManager.ttflist}
        for path in font_manager.findSystemFonts():
            if path not in known and "cjk" in os.path.basename(path).lower():
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        names = {f.name for f in font_manager.fontManager.ttflist}
        found = next((n for n in CJK_FONTS if n in names), None)
    return found


def font_for(lang: str = "en") -> list[str] | None:
    """The font family list figures in ``lang`` use (None: matplotlib's default). For ``zh`` an
    installed CJK font, then DejaVu Sans for the glyphs it lacks; a ConfigError says how to install
    one when there is none."""
    if lang not in LANGS:
        raise ConfigError(f"unknown language {lang!r}; choose one of: {', '.join(LANGS)}")
    if lang == "en":
        return None
    family = _cjk_family()
    if family is None:
        raise ConfigError(NO_CJK_FONT)
    return [family, "DejaVu Sans"]


def localised(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Give a figure function a ``lang`` keyword: its texts are made with ``lang``'s font."""

    @functools.wraps(fn)
    def wrapper(*args: Any, lang: str = "en", **kwargs: Any) -> Figure:
        family = font_for(lang)
        if family is None:
            return fn(*args, lang=lang, **kwargs)
        with matplotlib.rc_context({"font.family": family, "axes.unicode_minus": False}):
            fig = fn(*args, lang=lang, **kwargs)
        fig._digitlab_font = family  # save_figure draws with the same font (ticks are made at drawing time)
        return fig

    return wrapper


def missing_glyphs(fig: Figure) -> list[str]:
    """Render ``fig`` and return matplotlib's "Glyph ... missing from font" warnings (empty: all drawn)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _render(fig, io.BytesIO(), DEFAULT_DPI)
    return [str(w.message) for w in caught if "missing from" in str(w.message)]


def _render(fig: Figure, buf: Any, dpi: int) -> None:
    family = getattr(fig, "_digitlab_font", None)
    if family is None:
        fig.savefig(buf, format="png", dpi=dpi)
        return
    with matplotlib.rc_context({"font.family": family, "axes.unicode_minus": False}):
        fig.savefig(buf, format="png", dpi=dpi)


def _class_name(label: int, class_names: Sequence[str] | None) -> str:
    label = int(label)
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def _no_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


@localised
def samples_grid(
    images: np.ndarray,
    labels: np.ndarray,
    rows: int = 2,
    cols: int = 5,
    class_names: Sequence[str] | None = None,
    lang: str = "en",
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
        ax.set_title(f"{tr('Label', lang)}: {_class_name(labels[i], class_names)}")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = DEFAULT_DPI) -> Path:
    """Render ``fig`` as PNG and write it atomically to ``path``; the figure is closed afterwards."""
    buf = io.BytesIO()
    try:
        _render(fig, buf, dpi)
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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


@localised
def training_curves(history: Sequence[dict], lang: str = "en") -> Figure:
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
                ax.plot(xs, ys, style, label=tr(label, lang), markersize=4)
        ax.set_title(tr(title, lang))
        ax.set_xlabel(tr("epoch", lang))
        ax.set_ylabel(tr(key, lang))
        ax.grid(True, alpha=0.3)
        _integer_epochs(ax)
        if ax.lines:
            ax.legend()
    fig.suptitle(tr("Training curves", lang))
    return fig


@localised
def confusion_matrix_figure(
    cm: np.ndarray, class_names: Sequence[str] | None = None, title: str | None = None, lang: str = "en"
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
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=tr("images", lang))
    ax.set_xticks(range(k), names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel(tr("Predicted label", lang))
    ax.set_ylabel(tr("True label", lang))
    total = int(cm.sum())
    if title is None:
        acc = np.trace(cm) / total if total else 0.0
        title = (f"{tr('Confusion matrix', lang)} ({tr('{n} images', lang).format(n=f'{total:,}')}, "
                 f"{tr('accuracy {acc}', lang).format(acc=f'{acc:.4f}')})")
    ax.set_title(title)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]:d}" if np.issubdtype(cm.dtype, np.integer) else f"{cm[i, j]:.2f}",
                    ha="center", va="center", fontsize=8 if k <= 10 else 6,
                    color="white" if cm[i, j] > threshold else "black")
    return fig


@localised
def prediction_grid(
    images: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    rows: int = 5,
    cols: int = 3,
    class_names: Sequence[str] | None = None,
    lang: str = "en",
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


@localised
def misclassified_gallery(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    class_names: Sequence[str] | None = None,
    cols: int = 8,
    lang: str = "en",
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
        ax.text(0.5, 0.5, tr("No misclassified images", lang), ha="center", va="center", fontsize=14)
        return fig
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig = Figure(figsize=(1.6 * cols, 1.9 * rows + 0.5), layout="constrained")
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        _no_ticks(ax)
        ax.imshow(images[i], cmap="binary")
        ax.set_title(f"{tr('pred', lang)} {_class_name(pred[i], class_names)} ({100 * float(confidence[i]):.0f}%)\n"
                     f"{tr('true', lang)} {_class_name(true[i], class_names)}", fontsize=9, color="red")
    fig.suptitle(tr("Most confidently wrong predictions", lang))
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


@localised
def first_layer_weights(model, lang: str = "en") -> Figure:
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
    fig.colorbar(im, cax=cax, label=tr("weight", lang))
    fig.suptitle(f"{tr('First layer weights', lang)} ({what})", y=1 - 0.5 * (margin + top) / height, va="center")
    return fig


@localised
def compare_figure(variants: Sequence[dict], lang: str = "en") -> Figure:
    """Validation loss and accuracy per epoch of every variant of a comparison on shared axes: the mean
    over seeds as a line, the range over seeds as a band, the best epoch (lowest mean validation
    loss) as a dot. ``variants`` are ``compare.json``'s variants (``name``, ``curves``, ``best_epoch``,
    ``runs``); runs without validation data show the training curves instead."""
    variants = [v for v in variants if v.get("curves")]
    if not variants:
        raise ValueError("no finished variant to plot")
    val = all("val_loss" in v["curves"] for v in variants)
    keys = (("val_loss", "Validation loss", "loss"), ("val_accuracy", "Validation accuracy", "accuracy")) if val \
        else (("loss", "Loss", "loss"), ("accuracy", "Accuracy", "accuracy"))
    fig = Figure(figsize=(12, 4.8))
    fig.subplots_adjust(left=0.065, right=0.985, bottom=0.2, top=0.86, wspace=0.2)
    axes = fig.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(variants))]
    for ax, (key, title, ylabel) in zip(axes, keys, strict=True):
        for v, color in zip(variants, colors, strict=True):
            c = v["curves"][key]
            xs = list(range(1, len(c["mean"]) + 1))
            seeds = len(v.get("runs", [])) or 1
            ax.plot(xs, c["mean"], "-", color=color, marker="o" if len(xs) <= 12 else None, markersize=3,
                    label=f"{v['name']} ({seeds} {tr('seeds', lang)})" if lang == "zh" else
                    f"{v['name']} ({seeds} seed{'s' if seeds != 1 else ''})")
            if seeds > 1:
                ax.fill_between(xs, c["min"], c["max"], color=color, alpha=0.2, linewidth=0)
            best = v.get("best_epoch")
            if val and best is not None and best <= len(xs):
                ax.plot([best], [c["mean"][best - 1]], "o", color=color, markersize=9, markerfacecolor="none",
                        markeredgewidth=2)
        ax.set_title(tr(title, lang))
        ax.set_xlabel(tr("epoch", lang))
        ax.set_ylabel(tr(ylabel, lang))
        ax.grid(True, alpha=0.3)
        n = max(len(v["curves"][key]["mean"]) for v in variants)
        ax.set_xlim(0.5, n + 0.5)
        if n <= 20:
            ax.set_xticks(range(1, n + 1))
        else:
            _integer_epochs(ax)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(tr("Comparison", lang))
    fig.text(0.5, 0.03, tr("band: min to max over seeds; ring: best epoch (lowest mean validation loss)", lang),
             ha="center", fontsize=9, color="#444444")
    return fig


@localised
def explain_figure(image: np.ndarray, maps: Sequence[np.ndarray], labels: Sequence[str],
                   probabilities: Sequence[float], method: str, lang: str = "en") -> Figure:
    """The 28x28 input beside one map per class (the answer, then the runner-up): red pixels pushed
    that class's score up, blue ones pushed it down; one sentence under the figure says so."""
    n = 1 + len(maps)
    fig = Figure(figsize=(3.1 * n, 3.9))
    fig.subplots_adjust(left=0.02, right=0.93, bottom=0.17, top=0.84, wspace=0.08)
    axes = fig.subplots(1, n)
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255 if np.asarray(image).dtype == np.uint8 else None)
    axes[0].set_title(tr("Input", lang))
    _no_ticks(axes[0])
    im = None
    for k, (ax, m, label, p) in enumerate(zip(axes[1:], maps, labels, probabilities, strict=True)):
        m = np.asarray(m, dtype=np.float32)
        vmax = float(np.abs(m).max()) or 1.0
        ax.imshow(image, cmap="gray_r", alpha=0.25)
        im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, alpha=0.85)
        what = "Why {label}" if k == 0 else "runner-up {label}"
        ax.set_title(f"{tr(what, lang).format(label=label)} ({100 * float(p):.1f}%)")
        _no_ticks(ax)
    if im is not None:
        bar = fig.colorbar(im, ax=list(axes[1:]), fraction=0.03, pad=0.02)
        top = im.get_clim()[1]
        bar.set_ticks([-top, 0, top], labels=[tr("down", lang), "0", tr("up", lang)])
    sentence = (f"{method}: 红色像素使该类别的得分升高，蓝色像素使其降低；颜色越深，影响越大。" if lang == "zh" else
                f"{method}: red pixels pushed that class's score up, blue pixels pushed it down; "
                "the stronger the colour, the larger the effect.")
    fig.text(0.5, 0.05, sentence, ha="center", fontsize=10)
    return fig
