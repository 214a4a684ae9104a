"""Shared fixtures. Real-data tests read MNIST from $DIGITLAB_DATA_DIR; with
DIGITLAB_REQUIRE_DATA=1 (CI) a missing dataset fails instead of skipping."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REQUIRE_DATA = os.environ.get("DIGITLAB_REQUIRE_DATA") == "1"


def data_root() -> Path | None:
    value = os.environ.get("DIGITLAB_DATA_DIR")
    return Path(value) if value else None


def _need(name: str) -> Path:
    root = data_root()
    if root is None or not (root / name).is_dir():
        msg = f"real {name} files not found (set DIGITLAB_DATA_DIR to a folder holding {name}/)"
        if REQUIRE_DATA:
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding mnist/ (and fashion-mnist/) as IDX .gz files."""
    return _need("mnist")


@pytest.fixture(scope="session")
def fashion_data_dir() -> Path:
    return _need("fashion-mnist")


@pytest.fixture(scope="session")
def mnist(data_dir):
    """``(x_train, y_train), (x_test, y_test)`` of real MNIST, loaded once per session."""
    from digitlab.datasets import load_data

    return load_data("mnist", data_dir=data_dir)


def make_run(path: Path, model: str = "mlp", steps: int = 300, seed: int = 0, data=None, **options) -> Path:
    """A small but real run folder: the model trained for a few hundred Adam steps.

    ``data`` is ``(x_uint8, y)``; without it a synthetic 'digit' set is used (class k lights up
    a distinct block of pixels), so the fixture needs no dataset.
    """
    import torch

    from digitlab.models import build_model
    from digitlab.runs import CONFIG, METRICS, save_weights, write_json

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    if data is None:
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 10, 2000)
        x = rng.integers(0, 40, (2000, 28, 28)).astype(np.uint8)
        for k in range(10):
            r, c = divmod(k, 4)
            x[y == k, 4 + r * 7 : 10 + r * 7, 2 + c * 6 : 8 + c * 6] = 255
        data = (x, y)
    x = torch.from_numpy(data[0].astype(np.float32) / 255.0)
    y = torch.from_numpy(np.asarray(data[1], dtype=np.int64))
    net = build_model(model, **options)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / CONFIG, {"model": {"name": net.name, **net.options}, "dataset": "mnist",
                               "labels": [str(i) for i in range(10)]})
    save_weights(path, net)
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).float().mean())
    write_json(path / METRICS, {"test_accuracy": acc, "test_loss": None})
    return path


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory) -> Path:
    """A small MLP run trained on synthetic blocks (no dataset needed)."""
    return make_run(tmp_path_factory.mktemp("runs") / "mlp", "mlp")


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "cnn", "cnn", steps=150)
