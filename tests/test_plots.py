"""Every figure renders headless to a PNG of the expected size, with the expected panels and labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from matplotlib.colors import to_hex
from PIL import Image

from digitlab import plots

HISTORY = [
    {"epoch": e, "loss": 0.5 / e, "accuracy": 0.9 + e / 100, "val_loss": 0.6 / e,
     "val_accuracy": 0.89 + e / 100, "lr": 0.001, "time": 1.5}
    for e in range(1, 6)
]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.load()  # decodes every pixel: a truncated file fails here
        assert im.format == "PNG"
        return im.size


def digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28)).astype(np.uint8)


def test_samples_grid_titles_and_size(tmp_path):
    images, labels = digits(12), np.array([5, 0, 4, 1, 9, 2, 1, 3, 1, 4, 3, 5])
    fig = plots.samples_grid(images, labels)
    assert len(fig.axes) == 10
    assert [ax.get_title() for ax in fig.axes] == [f"Label: {y}" for y in labels[:10]]
    ax = fig.axes[0]
    assert ax.get_xticks().size == 0 and ax.get_yticks().size == 0
    np.testing.assert_array_equal(ax.images[0].get_array(), images[0])
    assert ax.images[0].get_cmap().name == "gray"
    path = plots.save_figure(fig, tmp_path / "mnist_samples.png")
    assert path == tmp_path / "mnist_samples.png"
    assert png_size(path) == (1000, 440)


def test_samples_grid_class_names_and_other_shapes():
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    fig = plots.samples_grid(digits(3), np.array([9, 0, 7]), rows=1, cols=4, class_names=names)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Label: Ankle boot", "Label: T-shirt/top", "Label: Sneaker", ""]
    assert not fig.axes[3].axison  # no image for the fourth cell
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        plots.samples_grid(digits(3), np.array([1, 2]))


def test_save_figure_is_atomic_and_closes_the_figure(tmp_path):
    target = tmp_path / "sub" / "fig.png"
    target.parent.mkdir()
    target.write_bytes(b"old")
    fig = plots.samples_grid(digits(10), np.arange(10))
    plots.save_figure(fig, target, dpi=50)
    assert png_size(target) == (500, 220)
    assert sorted(p.name for p in target.parent.iterdir()) == ["fig.png"]  # no temporary file left
    assert fig.axes == []  # closed: its memory released


def test_training_curves_two_panels_train_and_val(tmp_path):
    fig = plots.training_curves(HISTORY)
    loss_ax, acc_ax = fig.axes
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("Loss", "Accuracy")
    assert loss_ax.get_xlabel() == "epoch" and acc_ax.get_ylabel() == "accuracy"
    assert [line.get_label() for line in loss_ax.lines] == ["train", "validation"]
    np.testing.assert_allclose(loss_ax.lines[1].get_ydata(), [0.6 / e for e in range(1, 6)])
    np.testing.assert_allclose(acc_ax.lines[0].get_xdata(), [1, 2, 3, 4, 5])
    assert png_size(plots.save_figure(fig, tmp_path / "curves.png")) == (1100, 420)


def test_training_curves_without_validation():
    rows = [{k: v for k, v in r.items() if not k.startswith("val_")} for r in HISTORY]
    fig = plots.training_curves(rows)
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]
    with pytest.raises(ValueError, match="history is empty"):
        plots.training_curves([])


def test_confusion_matrix_figure_counts_in_cells(tmp_path):
    cm = np.arange(100).reshape(10, 10)
    fig = plots.confusion_matrix_figure(cm, [str(i) for i in range(10)])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Predicted label" and ax.get_ylabel() == "True label"
    texts = [t.get_text() for t in ax.texts]
    assert texts == [str(v) for v in range(100)]
    accuracy = sum(11 * i for i in range(10)) / 4950
    assert ax.get_title() == f"Confusion matrix (4,950 images, accuracy {accuracy:.4f})"
    assert png_size(plots.save_figure(fig, tmp_path / "cm.png")) == (700, 600)
    with pytest.raises(ValueError, match="square"):
        plots.confusion_matrix_figure(np.zeros((2, 3), np.int64))


def test_prediction_grid_is_five_rows_of_three_pairs(tmp_path):
    images = digits(16)
    labels = np.array([7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5])
    probs = np.full((16, 10), 0.01, np.float32)
    pred = labels.copy()
    pred[1] = 3  # one wrong answer
    probs[np.arange(16), pred] = 0.91
    fig = plots.prediction_grid(images, probs, labels)
    assert len(fig.axes) == 30  # 5 rows x 3 (image, bars) pairs
    image_axes, bar_axes = fig.axes[0::2], fig.axes[1::2]
    assert all(ax.images and not ax.patches for ax in image_axes)
    assert all(len(ax.patches) == 10 and not ax.images for ax in bar_axes)
    right, wrong = image_axes[0].xaxis.label, image_axes[1].xaxis.label
    assert (right.get_text(), to_hex(right.get_color())) == ("7 91% (7)", "#0000ff")
    assert (wrong.get_text(), to_hex(wrong.get_color())) == ("3 91% (2)", "#ff0000")
    assert image_axes[0].images[0].get_cmap().name == "binary"
    colours = [to_hex(p.get_facecolor()) for p in bar_axes[1].patches]
    assert colours[3] == "#ff0000" and colours[2] == "#0000ff"
    assert set(colours[:2] + colours[4:]) == {"#777777"}
    assert to_hex(bar_axes[0].patches[7].get_facecolor()) == "#0000ff"  # right: the true colour wins
    assert bar_axes[0].get_ylim() == (0.0, 1.0)
    assert [p.get_height() for p in bar_axes[0].patches] == pytest.approx(probs[0].tolist())
    assert png_size(plots.save_figure(fig, tmp_path / "predictions.png")) == (1200, 1000)
    with pytest.raises(ValueError, match="needs 15 images"):
        plots.prediction_grid(images[:14], probs[:14], labels[:14])


def test_misclassified_gallery_titles(tmp_path):
    fig = plots.misclassified_gallery(digits(10), np.arange(10), (np.arange(10) + 1) % 10,
                                      np.linspace(0.99, 0.5, 10))
    assert len(fig.axes) == 10
    assert fig.axes[0].get_title() == "pred 1 (99%)\ntrue 0"
    assert fig.axes[9].get_title() == "pred 0 (50%)\ntrue 9"
    assert png_size(plots.save_figure(fig, tmp_path / "mis.png")) == (1280, 430)
    empty = plots.misclassified_gallery(np.zeros((0, 28, 28), np.uint8), [], [], [])
    assert empty.axes[0].texts[0].get_text() == "No misclassified images"


def test_first_layer_weights_mlp_has_128_tiles(mlp_run, tmp_path):
    from digitlab.models import load_model

    model, _ = load_model(mlp_run)
    fig = plots.first_layer_weights(model)
    tiles = [ax for ax in fig.axes if ax.images]
    assert len(tiles) == 128 and len(fig.axes) == 129  # plus the colour bar
    w = model.dense.weight.detach().numpy()
    np.testing.assert_array_equal(tiles[5].images[0].get_array(), w[5].reshape(28, 28))
    vmin, vmax = tiles[0].images[0].get_clim()
    assert vmin == -vmax == -float(np.abs(w).max())  # one scale, centred at 0
    assert tiles[0].images[0].get_cmap().name == "RdBu_r"
    assert png_size(plots.save_figure(fig, tmp_path / "w.png")) == (1470, 724)


def test_first_layer_weights_cnn_has_32_filters(tmp_path):
    from digitlab.models import build_model

    model = build_model("cnn")
    fig = plots.first_layer_weights(model)
    tiles = [ax for ax in fig.axes if ax.images]
    assert len(tiles) == 32
    w = model.conv2d.weight.detach().numpy()
    np.testing.assert_array_equal(tiles[31].images[0].get_array(), w[31, 0])
    assert "32 filters of 3x3" in fig.get_suptitle()
    assert png_size(plots.save_figure(fig, tmp_path / "w.png")) == (934, 456)


def test_cli_plot_weights_and_curves(tmp_path, capsys):
    from conftest import make_run

    run = make_run(tmp_path / "run", "mlp", steps=1, hidden=[16, 8])  # 16 tiles: quick to draw
    code, out, err = cli(capsys, "plot", "weights", str(run))
    assert (code, out.strip()) == (0, f"saved {run / 'weights.png'}")
    assert png_size(run / "weights.png") == (650, 314)

    code, out, err = cli(capsys, "plot", "curves", str(run))
    assert code == 1 and out == ""
    assert err.strip() == f"error: {run / 'history.json'}: no training history to plot (missing or empty)"

    (run / "history.json").write_text(json.dumps(HISTORY))
    code, out, _ = cli(capsys, "plot", "curves", str(run), "-o", str(tmp_path / "c.png"), "--quiet")
    assert (code, out) == (0, "")
    assert png_size(tmp_path / "c.png") == (1100, 420)
    assert not (run / "curves.png").exists()


def test_cli_plot_errors_are_one_line(tmp_path, capsys):
    code, out, err = cli(capsys, "plot", "weights", str(tmp_path / "nope"))
    assert (code, out) == (1, "")
    assert err == f"error: {tmp_path / 'nope'}: no such run folder\n"
    code, _, err = cli(capsys, "plot", "curves", str(tmp_path))
    assert code == 1
    assert err == f"error: {tmp_path}: not a digitlab run (no config.json); train one with 'digitlab train'\n"


def test_curves_helper_warms_up_says_ready_then_draws(tmp_path):
    """The helper process imports matplotlib and draws once before the history comes (busy until
    then), and then writes the real figure."""
    import time

    from digitlab.curves_worker import CurvesRenderer

    history = [{"epoch": e, "loss": 1 / e, "accuracy": 1 - 0.1 / e, "val_loss": 1.2 / e, "val_accuracy": 0.9}
               for e in (1, 2, 3)]
    renderer = CurvesRenderer(tmp_path / "curves.png", background=True)
    deadline = time.monotonic() + 120
    while renderer.busy() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not renderer.busy()
    assert renderer.proc is not None and renderer.proc.poll() is None  # ready, waiting for the history
    path = renderer.render(history)
    assert renderer.proc.returncode == 0
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (1100, 420)
