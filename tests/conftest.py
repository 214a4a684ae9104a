"""Shared fixtures. Real-data tests read MNIST from $DIGITLAB_DATA_DIR; with
DIGITLAB_REQUIRE_DATA=1 (CI) a missing dataset fails instead of skipping."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REQUIRE_DATA = os.environ.get("DIGITLAB_REQUIRE_DATA") == "1"
BEST = Path(__file__).resolve().parent.parent / "models" / "mnist-best"  # the shipped model


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


def isolate_data_env(tmp_path: Path, monkeypatch) -> None:
    """digitlab's cache and the Keras home inside tmp_path; no data dir, mirrors or offline switch
    from the environment, so a test sees only the files it makes."""
    for var in ("DIGITLAB_DATA_DIR", "DIGITLAB_MIRRORS", "DIGITLAB_OFFLINE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))


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
    from digitlab.data.datasets import load_data

    return load_data("mnist", data_dir=data_dir)


@pytest.fixture(scope="session")
def best():
    """The shipped model (``models/mnist-best``), loaded once per session."""
    from digitlab.inference.predictor import load_predictor

    return load_predictor(BEST)


def make_run(path: Path, model: str = "mlp", steps: int = 300, seed: int = 0, data=None, batch: int = 64,
             augment: bool = False, **options) -> Path:
    """A small but real run folder: ``model`` trained by ``digitlab.training.torch_engine.fit`` for about ``steps``
    Adam steps of ``batch`` images (one thread), saved like ``digitlab train`` saves a run.

    ``data`` is ``(x_uint8, y)``; without it a synthetic 'digit' set is used (class k lights up
    a distinct block of pixels), so the fixture needs no dataset.
    """
    import math

    import torch

    from digitlab.models import build_model
    from digitlab.runs import CONFIG, METRICS, save_weights, write_json
    from digitlab.training.torch_engine import fit

    if data is None:
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 10, 2000)
        x = rng.integers(0, 40, (2000, 28, 28)).astype(np.uint8)
        for k in range(10):
            r, c = divmod(k, 4)
            x[y == k, 4 + r * 7 : 10 + r * 7, 2 + c * 6 : 8 + c * 6] = 255
        data = (x, y)
    x, y = data[0], np.asarray(data[1], dtype=np.int64)
    needed = steps * batch
    if len(x) > needed:
        keep = np.random.default_rng(seed).permutation(len(x))[:needed]
        x, y = x[keep], y[keep]
    torch.manual_seed(seed)
    net = build_model(model, **options)
    fit(net, x, y, epochs=max(1, math.ceil(needed / len(x))), batch_size=batch, augment=augment, seed=seed,
        threads=1, quiet=True)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / CONFIG, {"model": {"name": net.name, **net.options}, "dataset": "mnist",
                               "labels": [str(i) for i in range(10)]})
    save_weights(path, net)
    _, acc = net.evaluate(x, y)
    write_json(path / METRICS, {"test_accuracy": acc, "test_loss": None})
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``digitlab ARGS`` in-process: (exit code, stdout, stderr)."""
    from digitlab.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="session")
def real_run(tmp_path_factory, mnist) -> Path:
    """An MLP trained for 300 Adam steps on real MNIST (> 90% on the test set)."""
    return make_run(tmp_path_factory.mktemp("real") / "mlp", "mlp", steps=300, data=mnist[0])


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory) -> Path:
    """A small MLP run trained on synthetic blocks (no dataset needed)."""
    return make_run(tmp_path_factory.mktemp("runs") / "mlp", "mlp")


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "cnn", "cnn", steps=150)


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: class k lights a distinct 6x6 block, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.uint8)
    x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for k in range(10):
        r, c = divmod(k, 4)
        x[y == k, 4 + r * 7 : 10 + r * 7, 2 + c * 6 : 8 + c * 6] = 255
    return x, y


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A folder laid out like $DIGITLAB_DATA_DIR with a small synthetic 'mnist'."""
    from digitlab.data.formats import write_idx

    root = tmp_path_factory.mktemp("data")
    (xtr, ytr), (xte, yte) = synthetic_digits(1200, 1), synthetic_digits(300, 2)
    for name, arr in [("train-images-idx3-ubyte.gz", xtr), ("train-labels-idx1-ubyte.gz", ytr),
                      ("t10k-images-idx3-ubyte.gz", xte), ("t10k-labels-idx1-ubyte.gz", yte)]:
        write_idx(root / "mnist" / name, arr)
    return root


def default_sigint() -> None:
    """``preexec_fn`` for a child that must answer Ctrl-C: a shell running the tests in the
    background starts them with SIGINT ignored, and children inherit that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_default():
    """Python's own Ctrl-C handler in this process for the test (see :func:`default_sigint`)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
