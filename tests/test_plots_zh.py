"""``lang="zh"`` figures: Chinese words, drawn with an installed CJK font (no missing-glyph boxes)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from matplotlib import font_manager
from matplotlib.figure import Figure

from digitlab import plots
from digitlab.errors import ConfigError

CJK = re.compile(r"[\u4e00-\u9fff]")
HISTORY = [{"epoch": e, "loss": 1 / e, "accuracy": 1 - 0.1 / e, "val_loss": 1.1 / e, "val_accuracy": 1 - 0.12 / e,
            "lr": 1e-3} for e in range(1, 6)]


def _needs_font() -> list[str]:
    try:
        return plots.font_for("zh")
    except ConfigError as e:
        pytest.skip(str(e))


def _texts(fig: Figure):
    return [t for t in fig.findobj(lambda o: hasattr(o, "get_text") and hasattr(o, "get_fontproperties"))
            if CJK.search(t.get_text() or "")]


def _check(fig: Figure) -> list[str]:
    """Every Chinese text of ``fig`` resolves to a CJK font file, and rendering warns of no missing glyph."""
    texts = _texts(fig)
    assert texts, "the figure has no Chinese text"
    for t in texts:
        path = font_manager.findfont(t.get_fontproperties(), fallback_to_default=False)
        assert "cjk" in path.lower() or "han" in path.lower() or "hei" in path.lower(), (t.get_text(), path)
    assert plots.missing_glyphs(fig) == []
    return [t.get_text() for t in texts]


def _compare_variants():
    curve = {"mean": [0.3, 0.2, 0.25], "min": [0.28, 0.19, 0.22], "max": [0.32, 0.21, 0.27]}
    acc = {"mean": [0.9, 0.95, 0.94], "min": [0.89, 0.94, 0.93], "max": [0.91, 0.96, 0.95]}
    return [{"name": n, "curves": {"val_loss": curve, "val_accuracy": acc}, "best_epoch": 2, "runs": [{}, {}]}
            for n in ("adam", "sgd")]


def test_the_resolved_font_is_a_cjk_font():
    family = _needs_font()
    path = font_manager.findfont(font_manager.FontProperties(family=family[0]), fallback_to_default=False)
    font = font_manager.get_font(path)
    assert all(font.get_char_index(ord(c)) for c in "标签训练损失准确率"), path


def test_samples_grid_says_label_as_the_tutorial_does():
    _needs_font()
    images = np.zeros((10, 28, 28), np.uint8)
    fig = plots.samples_grid(images, np.arange(10) % 10, 2, 5, lang="zh")
    words = _check(fig)
    assert "标签: 5" in words


@pytest.mark.parametrize("name", ["curves", "confusion", "misclassified", "weights", "compare", "explain"])
def test_every_zh_figure_renders_its_chinese(name):
    _needs_font()
    rng = np.random.default_rng(0)
    if name == "curves":
        fig = plots.training_curves(HISTORY, lang="zh")
    elif name == "confusion":
        fig = plots.confusion_matrix_figure(rng.integers(0, 50, (10, 10)), lang="zh")
    elif name == "misclassified":
        fig = plots.misclassified_gallery(np.zeros((3, 28, 28), np.uint8), np.array([1, 2, 3]),
                                          np.array([7, 5, 8]), np.array([0.9, 0.8, 0.7]), lang="zh")
    elif name == "weights":
        fig = plots.first_layer_weights(rng.normal(size=(16, 784)).astype(np.float32), lang="zh")
    elif name == "compare":
        fig = plots.compare_figure(_compare_variants(), lang="zh")
    else:
        m = rng.uniform(-1, 1, (28, 28))
        fig = plots.explain_figure(np.zeros((28, 28), np.uint8), [m, -m], ["7", "1"], [0.9, 0.05], "遮挡法",
                                   lang="zh")
    _check(fig)


def test_the_check_catches_missing_glyphs():
    """Control: Chinese in matplotlib's default font warns of missing glyphs, which _check looks for."""
    fig = Figure()
    fig.add_subplot().set_title("标签")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert plots.missing_glyphs(fig)


def test_english_stays_english():
    fig = plots.samples_grid(np.zeros((2, 28, 28), np.uint8), np.array([5, 0]), 1, 2)
    assert [a.get_title() for a in fig.axes] == ["Label: 5", "Label: 0"]
    assert plots.missing_glyphs(fig) == []


def test_no_cjk_font_says_how_to_install_one(monkeypatch):
    monkeypatch.setattr(plots, "_cjk_family", lambda: None)
    with pytest.raises(ConfigError, match="apt-get install fonts-noto-cjk"):
        plots.samples_grid(np.zeros((1, 28, 28), np.uint8), np.array([1]), 1, 1, lang="zh")
    with pytest.raises(ConfigError, match="unknown language"):
        plots.font_for("fr")
