"""``digitlab data info | samples | extract | split`` on the real files and on a tiny synthetic set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from digitlab.cli import app, main
from digitlab.data.formats import write_idx
from digitlab.data.registry import DATASETS, FILES, Dataset

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    for var in ("DIGITLAB_MIRRORS", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("DIGITLAB_OFFLINE", "1")  # never download from a CLI test


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture
def tiny_dir(tmp_path, monkeypatch):
    """A folder holding tiny/ (12 train, 6 test images) with a registered 'tiny' dataset."""
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 200, (12, 28, 28), dtype=np.uint8), (np.arange(12) % 10).astype(np.uint8),
              rng.integers(0, 200, (6, 28, 28), dtype=np.uint8), np.array([3, 3, 1, 0, 9, 9], np.uint8))
    for f, a in zip(FILES, arrays, strict=True):
        write_idx(tmp_path / "data" / "tiny" / f, a)
    monkeypatch.setitem(DATASETS, "tiny", Dataset("tiny", tuple(str(i) for i in range(10)),
                                                  dict.fromkeys(FILES, "0" * 64), ()))
    return tmp_path / "data", arrays


# ---------------------------------------------------------------- synthetic (no dataset needed)


def test_info_tiny(tiny_dir):
    folder, _ = tiny_dir
    out = run("data", "info", "--dataset", "tiny", "--data-dir", str(folder)).stdout.splitlines()
    assert out[:7] == [
        "dataset: tiny",
        f"source: data folder {folder / 'tiny'} (4 IDX files, structure checked)",
        *(f"  {folder / 'tiny' / f}" for f in FILES),
        "arrays: x_train, y_train, x_test, y_test",
    ]
    assert out[7:11] == ["x_train: (12, 28, 28) uint8", "y_train: (12,) uint8",
                         "x_test: (6, 28, 28) uint8", "y_test: (6,) uint8"]
    assert out[13:16] == ["class counts:", "  label   train    test", "      0       2       1"]
    assert out[-1] == "  total      12       6"


def test_split_tiny_json(tiny_dir):
    folder, _ = tiny_dir
    res = run("data", "split", "-d", "tiny", "--data-dir", str(folder), "--val-split", "0.25", "--json")
    data = json.loads(res.stdout)
    assert (data["val_split"], data["split_seed"]) == (0.25, 42)
    assert [data["parts"][p]["x_shape"][0] for p in ("train", "validation", "test")] == [9, 3, 6]


def test_extract_tiny_test_split(tiny_dir, tmp_path):
    folder, arrays = tiny_dir
    res = run("data", "extract", "-d", "tiny", "--data-dir", str(folder), "--split", "test", "--count", "3",
              "-o", str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "test_0_label_3.png", "test_1_label_3.png", "test_2_label_1.png"]
    with Image.open(tmp_path / "out" / "test_2_label_1.png") as im:
        assert np.asarray(im).tobytes() == arrays[2][2].tobytes()
    assert res.stdout.startswith(f"extracted 3 test images to {tmp_path / 'out'}/")


def test_samples_tiny_default_grid(tiny_dir, tmp_path):
    folder, _ = tiny_dir
    res = run("data", "samples", "-d", "tiny", "--data-dir", str(folder), "--count", "7",
              "-o", str(tmp_path / "s.png"))
    assert res.stdout.strip() == f"saved 7 train images (2x5) to {tmp_path / 's.png'}"
    with Image.open(tmp_path / "s.png") as im:
        assert im.format == "PNG" and im.width > im.height


def error_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_bad_grid_and_split_are_one_line_errors(tiny_dir, capsys):
    folder = str(tiny_dir[0])
    assert error_of(capsys, "data", "samples", "-d", "tiny", "--data-dir", folder, "--grid", "1x3") == (
        "error: --grid 1x3 has room for 3 images, --count is 10")
    assert error_of(capsys, "data", "samples", "-d", "tiny", "--data-dir", folder, "--grid", "two") == (
        "error: --grid must look like 2x5, got 'two'")
    assert error_of(capsys, "data", "extract", "-d", "tiny", "--data-dir", folder, "--split", "val") == (
        "error: unknown split 'val'; choose train or test")
    assert error_of(capsys, "data", "split", "-d", "tiny", "--data-dir", folder, "--val-split", "0") == (
        "error: --val-split must be between 0 and 1 (exclusive), got 0.0")


def test_unknown_dataset(capsys):
    assert error_of(capsys, "data", "info", "--dataset", "cifar") == (
        "error: unknown dataset 'cifar'; choose one of: mnist, fashion-mnist")


def test_nothing_found_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DIGITLAB_DATA_DIR", raising=False)
    line = error_of(capsys, "data", "info")
    assert line.startswith("error: no mnist files found and downloads are off; put train-images-idx3")
    cache = tmp_path / "cache" / "mnist"
    assert f"in {cache}/, or put them in DIR/mnist/ and set $DIGITLAB_DATA_DIR=DIR" in line


def test_missing_data_folder_end_to_end(tmp_path):
    """The real console script path: one line on stderr, exit code 1, no traceback."""
    env = {**os.environ, "DIGITLAB_CACHE_DIR": str(tmp_path / "cache"), "DIGITLAB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "digitlab", "data", "info", "--data-dir", str(tmp_path / "nope")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr == (f"error: data folder {tmp_path / 'nope'} does not exist; point --data-dir or "
                        f"$DIGITLAB_DATA_DIR at a folder holding mnist/ with {', '.join(FILES)}\n")


# ---------------------------------------------------------------- real MNIST


@pytest.mark.realdata
def test_info_mnist(data_dir):
    out = run("data", "info", "--data-dir", str(data_dir)).stdout.splitlines()
    assert out[6:13] == [
        "arrays: x_train, y_train, x_test, y_test",
        "x_train: (60000, 28, 28) uint8",
        "y_train: (60000,) uint8",
        "x_test: (10000, 28, 28) uint8",
        "y_test: (10000,) uint8",
        "pixel range (train): 0-255",
        "pixel range (test): 0-255",
    ]
    assert out[1] == f"source: data folder {data_dir / 'mnist'} (4 IDX files, structure checked)"
    assert out[14:16] == ["  label   train    test", "      0    5923     980"]
    assert out[-1] == "  total   60000   10000"


@pytest.mark.realdata
def test_info_mnist_json(data_dir, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA_DIR", str(data_dir))
    data = json.loads(run("data", "info", "--json").stdout)
    assert data["arrays"]["x_train"] == {"shape": [60000, 28, 28], "dtype": "uint8"}
    assert data["arrays"]["y_test"] == {"shape": [10000], "dtype": "uint8"}
    assert data["class_counts"]["train"] == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert data["class_counts"]["test"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data["pixel_range"] == {"train": [0, 255], "test": [0, 255]}
    assert data["source"]["kind"] == "data_dir" and data["source"]["verified"] is False


@pytest.mark.realdata
def test_info_fashion_class_names(fashion_data_dir):
    out = run("data", "info", "-d", "fashion-mnist", "--data-dir", str(fashion_data_dir)).stdout.splitlines()
    assert "      0  T-shirt/top    6000    1000" in out
    assert "      9  Ankle boot     6000    1000" in out


@pytest.mark.realdata
def test_extract_mnist(data_dir, mnist, tmp_path):
    (x_train, y_train), _ = mnist
    out = tmp_path / "mnist_extracted"
    run("data", "extract", "--count", "20", "-o", str(out), "--data-dir", str(data_dir))
    names = sorted((tmp_path / "mnist_extracted").iterdir(), key=lambda p: int(p.name.split("_")[1]))
    assert [p.name for p in names] == [f"train_{i}_label_{y_train[i]}.png" for i in range(20)]
    assert names[0].name == "train_0_label_5.png"
    for i, p in enumerate(names):
        with Image.open(p) as im:
            assert (im.mode, im.size) == ("L", (28, 28))
            assert np.asarray(im).tobytes() == x_train[i].tobytes()


@pytest.mark.realdata
def test_samples_mnist(data_dir, tmp_path):
    res = run("data", "samples", "-o", str(tmp_path / "mnist_samples.png"), "--grid", "2x5",
              "--data-dir", str(data_dir), "--quiet")
    assert res.stdout.strip() == f"saved 10 train images (2x5) to {tmp_path / 'mnist_samples.png'}"
    with Image.open(tmp_path / "mnist_samples.png") as im:
        assert im.format == "PNG" and im.size[0] > 2 * im.size[1] * 0.8


@pytest.mark.realdata
def test_split_mnist(data_dir):
    out = run("data", "split", "--data-dir", str(data_dir)).stdout.splitlines()
    assert out == [
        "mnist: validation = 0.2 of train, split seed 42",
        "train:      images (48000, 28, 28) float32 range [0, 1], labels (48000,) uint8",
        "validation: images (12000, 28, 28) float32 range [0, 1], labels (12000,) uint8",
        "test:       images (10000, 28, 28) float32 range [0, 1], labels (10000,) uint8",
    ]
