"""The model that ships in models/mnist-best (trained by `digitlab train --preset best`, see its
config.json): it must read the real-world digit set and MNIST's test set as well as claimed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_realworld import accuracy_by_kind, realworld_set

BEST = Path(__file__).resolve().parent.parent / "models" / "mnist-best"


def test_shipped_run_folder_is_complete(best):
    config = json.loads((BEST / "config.json").read_text())
    assert config["preset"] == "best" and config["model"]["name"] == "cnn_bn"
    assert best.name == "cnn_bn"
    assert best.metrics["test_accuracy"] >= 0.995


def test_best_model_reads_real_world_digits(best):
    images, labels, kinds = realworld_set()
    pred = best.predict_proba(images).argmax(1)
    accuracy = float((pred == labels).mean())
    assert accuracy >= 0.95, accuracy_by_kind(pred, labels, kinds)
    assert min(accuracy_by_kind(pred, labels, kinds).values()) >= 0.8


@pytest.mark.realdata
def test_best_model_on_the_mnist_test_set(best, mnist):
    _, (x_test, y_test) = mnist
    accuracy = float((best.predict_proba(x_test).argmax(1) == y_test).mean())
    assert accuracy >= 0.995
    assert accuracy == pytest.approx(best.metrics["test_accuracy"], abs=1e-4)
    assert np.isfinite(best.metrics["test_loss"])
