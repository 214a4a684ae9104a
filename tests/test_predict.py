"""Predictions on arrays and on picture files, and the predict command."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import cli
from PIL import Image

from digitlab.errors import ImageError
from digitlab.inference.predictor import load_predictor, predict_arrays, predict_files, predict_proba

FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory, mnist):
    """The first 6 MNIST test digits as 28x28 white-on-black PNGs, and a black-on-white 224x224 JPEG."""
    folder = tmp_path_factory.mktemp("digits")
    (_, _), (x, y) = mnist
    for i in range(6):
        Image.fromarray(x[i]).save(folder / f"test_{i}_label_{y[i]}.png")
    big = 255 - np.kron(x[6], np.ones((8, 8), np.uint8))  # dark ink on white paper, 224x224
    Image.fromarray(big).save(folder / f"paper_label_{y[6]}.jpg", quality=95)
    return folder


class CountingPredictor:
    name, config, metrics, labels = "counting", {}, None, [str(i) for i in range(10)]

    def __init__(self):
        self.calls = []

    def predict_proba(self, images):
        self.calls.append(len(images))
        probs = np.zeros((len(images), 10), np.float32)
        probs[np.arange(len(images)), np.asarray(images)[:, 0, 0] % 10] = 1.0
        return probs

    def activations(self, images):
        return {}


def test_predict_arrays_matches_the_model(mlp_run):
    from digitlab.models import load_model

    predictor = load_predictor(mlp_run)
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28)).astype(np.uint8)
    labels, probs = predict_arrays(predictor, x)
    assert labels.dtype == np.int64 and labels.shape == (20,)
    assert probs.dtype == np.float32 and probs.shape == (20, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(labels, probs.argmax(axis=1))
    model, _ = load_model(mlp_run)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x.astype(np.float32) / 255.0)), dim=1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    one_label, one_probs = predict_arrays(predictor, x[3])  # a single (28, 28) image
    assert one_label.tolist() == [labels[3]] and one_probs.shape == (1, 10)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 28, 28\), got \(2, 32, 32\)"):
        predict_arrays(predictor, np.zeros((2, 32, 32), np.uint8))


def test_predict_proba_asks_in_batches():
    predictor = CountingPredictor()
    x = np.stack([np.full((28, 28), k, np.uint8) for k in range(7)])
    probs = predict_proba(predictor, x, batch_size=3)
    assert predictor.calls == [3, 3, 1]
    assert probs.argmax(axis=1).tolist() == list(range(7))
    assert predict_proba(predictor, np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)


def test_predict_files_on_mnist_pictures(real_run, digit_files, tmp_path):
    from digitlab.data.pictures import load_digit

    predictor = load_predictor(real_run)
    results = predict_files(predictor, [digit_files], save_inputs=tmp_path / "seen")
    assert [r.path.name for r in results] == ["paper_label_4.jpg"] + [
        f"test_{i}_label_{y}.png" for i, y in enumerate(FIRST_TEST_LABELS[:6])]
    assert all(r.ok for r in results)
    right = sum(r.label == int(re.search(r"label_(\d)", r.path.name)[1]) for r in results)
    assert right >= 6
    inputs = np.stack([load_digit(r.path) for r in results])
    labels, probs = predict_arrays(predictor, inputs)
    for r, label, p in zip(results, labels, probs, strict=True):
        assert (r.label, r.name) == (int(label), str(label))
        assert r.probability == pytest.approx(float(p.max()))
        assert len(r.top) == 3 and r.top[0] == (r.label, r.name, r.probability)
        assert r.top[0][2] >= r.top[1][2] >= r.top[2][2]
        # the saved input is exactly what the model saw
        assert r.input_path == tmp_path / "seen" / f"{r.path.stem}.png"
        with Image.open(r.input_path) as im:
            assert im.size == (28, 28) and im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), load_digit(r.path))
    assert json.loads(json.dumps(results[0].to_dict()))["top"][0]["label"] == results[0].label


def test_predict_files_keeps_going_past_bad_pictures(mlp_run, digit_files, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(digit_files / "test_0_label_7.png", tmp_path / "a" / "seven.png")
    shutil.copy(digit_files / "test_1_label_2.png", tmp_path / "b" / "seven.png")
    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    results = predict_files(load_predictor(mlp_run),
                            [tmp_path / "notes.png", tmp_path / "a", tmp_path / "b", tmp_path / "blank.png"],
                            save_inputs=tmp_path / "seen")
    by_name = {r.path.relative_to(tmp_path).as_posix(): r for r in results}
    assert sorted(by_name) == ["a/seven.png", "b/seven.png", "blank.png", "notes.png"]
    assert by_name["notes.png"].error.startswith(f"{tmp_path / 'notes.png'} is not an image")
    assert "is blank" in by_name["blank.png"].error
    for bad in ("notes.png", "blank.png"):
        r = by_name[bad]
        assert not r.ok and r.label is None and r.top == [] and r.input_path is None
    assert by_name["a/seven.png"].ok and by_name["b/seven.png"].ok
    # two pictures with the same name do not overwrite each other's saved input
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["seven.png", "seven_2.png"]


def test_predict_files_errors_that_stop_everything(mlp_run, tmp_path):
    predictor = load_predictor(mlp_run)
    with pytest.raises(ImageError, match="no images in this folder"):
        predict_files(predictor, [tmp_path])
    with pytest.raises(ImageError, match="no such file or folder"):
        predict_files(predictor, [tmp_path / "missing.png"])


def test_cli_predict_first_test_images(real_run, data_dir, tmp_path, capsys):
    code, out, err = cli(capsys, "predict", str(real_run), "--data-dir", str(data_dir),
                         "--out", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 10
    parsed = [re.fullmatch(r"sample (\d+): predicted = (\d), true = (\d)", line) for line in lines]
    assert all(parsed), lines
    assert [int(m[1]) for m in parsed] == list(range(10))
    assert [int(m[3]) for m in parsed] == FIRST_TEST_LABELS
    assert sum(m[2] == m[3] for m in parsed) >= 8
    assert lines[0] == "sample 0: predicted = 7, true = 7"
    assert err.strip() == f"saved {tmp_path / 'predictions.png'}"
    with Image.open(tmp_path / "predictions.png") as im:
        assert im.size == (1200, 1000)


def test_cli_predict_count_json_and_default_folder(real_run, data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    code, out, err = cli(capsys, "predict", str(run), "--data-dir", str(data_dir), "--count", "3", "--json")
    assert code == 0
    d = json.loads(out)
    assert [s["true"] for s in d["samples"]] == [7, 2, 1] and [s["index"] for s in d["samples"]] == [0, 1, 2]
    assert all(0 <= s["predicted"] <= 9 and 0 < s["probability"] <= 1 for s in d["samples"])
    assert d["figure"] == str(run / "predictions.png") and (run / "predictions.png").is_file()


def test_cli_predict_files_json_and_csv(real_run, digit_files, tmp_path, capsys):
    code, out, err = cli(capsys, "predict", str(real_run), str(digit_files / "test_0_label_7.png"),
                         str(digit_files / "test_1_label_2.png"), "--json", "--save-inputs", str(tmp_path))
    assert code == 0
    d = json.loads(out)
    names = ["test_0_label_7.png", "test_1_label_2.png"]
    assert [r["path"] for r in d] == [str(digit_files / f) for f in names]
    assert [r["label"] for r in d] == [7, 2]
    assert [len(r["top"]) for r in d] == [3, 3] and d[0]["top"][0]["probability"] == d[0]["probability"]
    assert d[0]["input_path"] == str(tmp_path / "test_0_label_7.png") and d[0]["error"] is None

    code, out, _ = cli(capsys, "predict", str(real_run), str(digit_files), "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["path", "label", "name", "probability", "top2_label", "top2_probability",
                             "top3_label", "top3_probability", "is_digit", "digit_score", "error"]
    assert len(rows) == 7 and rows[1]["path"] == str(digit_files / "test_0_label_7.png")
    assert rows[1]["label"] == "7" and rows[1]["error"] == ""
    p1, p2, p3 = (float(rows[1][k]) for k in ("probability", "top2_probability", "top3_probability"))
    assert p1 >= p2 >= p3

    code, out, _ = cli(capsys, "predict", str(real_run), str(digit_files / "test_2_label_1.png"))
    assert code == 0
    assert re.search(r"│\s+1 │\s+\d+\.\d% │ 1 \d+\.\d%, \d \d+\.\d%, \d \d+\.\d%\s+│", out)


def test_cli_predict_errors(mlp_run, digit_files, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = cli(capsys, "predict", str(mlp_run), str(empty))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {empty}: no images in this folder")

    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("L", (64, 64), 0).save(tmp_path / "blank.png")
    code, out, err = cli(capsys, "predict", str(mlp_run), str(digit_files / "test_0_label_7.png"),
                         str(tmp_path / "notes.png"), str(tmp_path / "blank.png"), "--json")
    assert code == 1
    d = json.loads(out)  # the pictures that could be read are still reported
    assert [r["error"] is None for r in d] == [True, False, False]
    lines = err.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{tmp_path / 'blank.png'} is blank")
    assert lines[1].startswith(f"{tmp_path / 'notes.png'} is not an image")
    assert lines[2] == "error: 2 of 3 images could not be read (listed above); the others were predicted"

    code, out, err = cli(capsys, "predict", str(mlp_run), str(tmp_path / "blank.png"))
    assert (code, out) == (1, "")
    assert re.fullmatch(rf"error: {re.escape(str(tmp_path / 'blank.png'))} is blank \(.*\)[^\n]*\n", err)
    code, out, err = cli(capsys, "predict", str(mlp_run), str(tmp_path / "blank.png"), str(tmp_path / "notes.png"))
    assert (code, out) == (1, "")
    assert err.splitlines()[2] == "error: none of the 2 images could be read (listed above)"

    code, _, err = cli(capsys, "predict", str(mlp_run), str(digit_files), "--json", "--csv")
    assert (code, err) == (1, "error: choose one of --json and --csv\n")
    code, _, err = cli(capsys, "predict", str(tmp_path / "nope"), str(digit_files))
    assert (code, err) == (1, f"error: {tmp_path / 'nope'}: no such run folder\n")
