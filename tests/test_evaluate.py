"""Metrics, the validation split, the evaluate command and its errors."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from conftest import cli
from PIL import Image

from digitlab.errors import ConfigError
from digitlab.evaluate import EPSILON, cross_entropy, evaluate_predictor, load_split, summarize

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


class FixedPredictor:
    """A Predictor that answers from a table, to check evaluate uses only the protocol."""

    name, config, metrics, labels = "fixed", {}, None, ["a", "b", "c"]

    def __init__(self, probs):
        self.probs, self.calls = np.asarray(probs, np.float32), []

    def predict_proba(self, images):
        self.calls.append(len(images))
        # image k holds the value k in every pixel: look its answer up
        return self.probs[np.asarray(images)[:, 0, 0].astype(int)]

    def activations(self, images):
        return {}


PROBS = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]
Y = [0, 1, 2, 2]


def test_summarize_exact_values():
    r = summarize(np.array(PROBS), np.array(Y), ["a", "b", "c"], top=16)
    assert r.accuracy == 0.5
    assert r.loss == pytest.approx(-(np.log(0.8) + np.log(0.7) + np.log(0.3) + np.log(0.25)) / 4)
    np.testing.assert_array_equal(r.confusion, [[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_allclose(r.precision, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(r.recall, [1.0, 1.0, 0.0])
    np.testing.assert_allclose(r.f1, [2 / 3, 2 / 3, 0.0])
    np.testing.assert_array_equal(r.support, [1, 1, 2])
    np.testing.assert_array_equal(r.predictions, [0, 1, 1, 0])
    # the most confident mistake first: image 2 (0.6 for class 1), then image 3 (0.5 for class 0)
    np.testing.assert_array_equal(r.wrong_indices, [2, 3])
    np.testing.assert_array_equal(r.wrong_true, [2, 2])
    np.testing.assert_array_equal(r.wrong_pred, [1, 0])
    np.testing.assert_allclose(r.wrong_confidence, [0.6, 0.5])
    assert (r.n, r.errors) == (4, 2)
    assert r.macro() == pytest.approx({"precision": 1 / 3, "recall": 2 / 3, "f1": 4 / 9})
    assert r.weighted() == pytest.approx({"precision": 0.25, "recall": 0.5, "f1": 1 / 3})
    assert summarize(np.array(PROBS), np.array(Y), top=1).wrong_indices.tolist() == [2]


def test_to_dict_is_plain_json():
    r = summarize(np.array(PROBS), np.array(Y), ["a", "b", "c"], top=1)
    r.extra = {"split": "test"}
    d = json.loads(json.dumps(r.to_dict()))  # no numpy types left
    assert d["split"] == "test" and d["n"] == 4 and d["accuracy"] == 0.5 and d["errors"] == 2
    assert d["per_class"][2] == {"class": 2, "name": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0,
                                 "support": 2}
    assert d["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 1, 0]]
    assert d["most_confident_errors"] == [{"index": 2, "true": 2, "pred": 1,
                                           "confidence": pytest.approx(0.6)}]


def test_cross_entropy_clips_zero_probabilities():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert cross_entropy(probs, np.array([1, 1])) == pytest.approx(-np.log(EPSILON) / 2)
    assert cross_entropy(probs, np.array([0, 1])) == 0.0


def test_summarize_rejects_inconsistent_inputs():
    with pytest.raises(ValueError, match="2 class names for a model with 3 outputs"):
        summarize(np.array(PROBS), np.array(Y), ["a", "b"])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        summarize(np.array(PROBS), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="empty set"):
        summarize(np.zeros((0, 3)), np.zeros(0, np.int64))


def test_evaluate_predictor_uses_only_the_protocol():
    predictor = FixedPredictor(PROBS)
    x = np.stack([np.full((28, 28), k, np.uint8) for k in range(4)])
    r = evaluate_predictor(predictor, x, np.array(Y))
    assert r.class_names == ["a", "b", "c"]  # the predictor's labels
    assert r.accuracy == 0.5 and predictor.calls == [4]
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 28, 28\)"):
        evaluate_predictor(predictor, np.zeros((4, 28, 27), np.uint8), np.array(Y))
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        evaluate_predictor(predictor, x, np.array(Y[:3]))


def test_evaluate_on_the_mnist_test_set(real_run, mnist):
    from digitlab.inference.predictor import load_predictor

    predictor = load_predictor(real_run)
    (_, _), (x_test, y_test) = mnist
    r = evaluate_predictor(predictor, x_test, y_test, predictor.labels, top=16)
    assert r.accuracy > 0.9
    assert r.confusion.shape == (10, 10) and r.confusion.sum() == 10000
    assert np.trace(r.confusion) == round(r.accuracy * 10000)
    assert r.support.tolist() == MNIST_TEST_COUNTS
    assert r.confusion.sum(axis=1).tolist() == MNIST_TEST_COUNTS
    assert r.errors == 10000 - np.trace(r.confusion)
    assert len(r.wrong_indices) == 16
    conf = r.wrong_confidence
    assert np.all(np.diff(conf) <= 0) and np.all(r.wrong_pred != r.wrong_true)
    assert np.array_equal(y_test[r.wrong_indices], r.wrong_true)
    probs = predictor.predict_proba(x_test[r.wrong_indices])
    np.testing.assert_allclose(probs.max(axis=1), conf, rtol=1e-5)
    assert 0.05 < r.loss < 0.5


def test_load_split_test_and_validation(data_dir, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    x, y, name = load_split({"dataset": "mnist"}, "test", data_dir=data_dir)
    assert name == "mnist" and np.array_equal(x, x_test) and np.array_equal(y, y_test) and y.dtype == np.int64
    x, y, _ = load_split({}, "val", data_dir=data_dir)  # the tutorial's 20%, seed 42
    assert x.shape == (12000, 28, 28)
    perm = np.random.RandomState(42).permutation(60000)
    assert np.array_equal(y, y_train[perm[:12000]])
    x, y, _ = load_split({"val_split": 0.1, "split_seed": 7}, "val", data_dir=data_dir)
    assert x.shape == (6000, 28, 28)
    assert np.array_equal(x, x_train[np.random.RandomState(7).permutation(60000)[:6000]])
    with pytest.raises(ConfigError, match="trained without a validation split; evaluate with --split test"):
        load_split({"val_split": 0.0}, "val", data_dir=data_dir)
    with pytest.raises(ConfigError, match="unknown split 'train'; choose one of: test, val"):
        load_split({}, "train", data_dir=data_dir)


def test_cli_evaluate_json(real_run, data_dir, tmp_path, capsys):
    code, out, err = cli(capsys, "evaluate", str(real_run), "--data-dir", str(data_dir), "--json",
                         "--out", str(tmp_path / "figs"), "--top", "8")
    assert code == 0
    d = json.loads(out)  # stdout holds one JSON document and nothing else
    assert (d["dataset"], d["split"], d["n"]) == ("mnist", "test", 10000)
    assert d["accuracy"] > 0.9 and d["loss"] > 0
    assert [c["support"] for c in d["per_class"]] == MNIST_TEST_COUNTS
    assert sum(map(sum, d["confusion_matrix"])) == 10000
    assert len(d["most_confident_errors"]) == 8
    assert d["figures"] == {"confusion": str(tmp_path / "figs" / "confusion.png"),
                            "misclassified": str(tmp_path / "figs" / "misclassified.png")}
    with Image.open(tmp_path / "figs" / "confusion.png") as im:
        assert im.size == (700, 600)
    with Image.open(tmp_path / "figs" / "misclassified.png") as im:
        assert im.size == (1280, 240)  # 8 tiles in one row
    assert not (real_run / "confusion.png").exists()


def test_cli_evaluate_text_on_the_validation_split(real_run, data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    code, out, err = cli(capsys, "evaluate", str(run), "--split", "val", "--data-dir", str(data_dir))
    assert code == 0
    lines = out.splitlines()
    assert re.fullmatch(r"Validation loss: 0\.\d{4}", lines[0])
    m = re.fullmatch(r"Validation accuracy: (0\.\d{4})  \(([\d,]+) of 12,000 right\)", lines[1])
    assert m and float(m[1]) > 0.9 and abs(int(m[2].replace(",", "")) / 12000 - float(m[1])) < 1e-4
    assert "Per-class metrics" in out and "Confusion matrix (rows: true, columns: predicted)" in out
    assert f"saved {run / 'confusion.png'}" in err and f"saved {run / 'misclassified.png'}" in err
    assert (run / "confusion.png").is_file() and (run / "misclassified.png").is_file()


def test_cli_evaluate_errors(mlp_run, tmp_path, capsys):
    code, out, err = cli(capsys, "evaluate", str(tmp_path / "missing"))
    assert (code, out, err) == (1, "", f"error: {tmp_path / 'missing'}: no such run folder\n")

    code, _, err = cli(capsys, "evaluate", str(tmp_path))
    assert code == 1
    assert err == f"error: {tmp_path}: not a digitlab run (no config.json); train one with 'digitlab train'\n"

    run = tmp_path / "mismatch"
    shutil.copytree(mlp_run, run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["hidden"] = [64, 32]
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = cli(capsys, "evaluate", str(run))
    assert code == 1
    weights = run / "model.safetensors"
    assert err.startswith(f"error: {weights}: weights do not match the model in config.json (")
    assert err.count("\n") == 1

    code, _, err = cli(capsys, "evaluate", str(mlp_run), "--dataset", "kmnist")
    assert (code, err) == (1, "error: unknown dataset 'kmnist'; choose one of: mnist, fashion-mnist\n")


def test_cli_evaluate_and_predict_an_onnx_file(real_run, data_dir, tmp_path, capsys):
    """The same numbers from the exported model as from the run folder: only the Predictor protocol is used."""
    pytest.importorskip("onnxruntime")
    from digitlab.export import export_onnx

    onnx = tmp_path / "model.onnx"
    export_onnx(real_run, onnx, data_dir=data_dir, n_images=32)
    code, out, _ = cli(capsys, "evaluate", str(onnx), "--data-dir", str(data_dir), "--json", "--top", "4")
    assert code == 0
    d = json.loads(out)
    code, out, _ = cli(capsys, "evaluate", str(real_run), "--data-dir", str(data_dir), "--json", "--top", "4",
                       "--out", str(tmp_path / "torch"))
    t = json.loads(out)
    assert d["confusion_matrix"] == t["confusion_matrix"] and d["accuracy"] == t["accuracy"]
    assert d["loss"] == pytest.approx(t["loss"], rel=1e-4)
    assert d["figures"]["confusion"] == str(tmp_path / "confusion.png")  # beside the .onnx file
    code, out, _ = cli(capsys, "predict", str(onnx), "--data-dir", str(data_dir), "--count", "10")
    assert code == 0
    assert [int(line[-1]) for line in out.splitlines()] == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert (tmp_path / "predictions.png").is_file()
