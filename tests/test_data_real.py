"""The real MNIST and Fashion-MNIST files (from $DIGITLAB_DATA_DIR via the conftest fixtures)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from digitlab.data.datasets import load_data, load_dataset
from digitlab.data.formats import idx_bytes, write_npz
from digitlab.data.locate import locate
from digitlab.data.preprocess import split_indices, to_float, train_val_split
from digitlab.data.registry import DATASETS, FILES
from digitlab.data.reports import split_info

pytestmark = pytest.mark.realdata

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    for var in ("DIGITLAB_DATA_DIR", "DIGITLAB_MIRRORS", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("DIGITLAB_OFFLINE", "1")  # these tests must never download


def test_mnist_shapes_and_dtypes(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert (x_train.shape, x_train.dtype) == ((60000, 28, 28), np.uint8)
    assert (y_train.shape, y_train.dtype) == ((60000,), np.uint8)
    assert (x_test.shape, x_test.dtype) == ((10000, 28, 28), np.uint8)
    assert (y_test.shape, y_test.dtype) == ((10000,), np.uint8)
    assert x_train.flags.writeable and x_train.flags.c_contiguous


def test_mnist_class_counts_and_values(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert np.bincount(y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == MNIST_TEST_COUNTS
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert (x_train.min(), x_train.max(), x_test.min(), x_test.max()) == (0, 255, 0, 255)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_registry_checksums_match_the_real_files(data_dir, name):
    if not (data_dir / name).is_dir():
        pytest.skip(f"{name} not in {data_dir}")
    for f in FILES:
        assert hashlib.sha256((data_dir / name / f).read_bytes()).hexdigest() == DATASETS[name].sha256[f], f


def test_locate_reports_the_data_folder(data_dir):
    src = locate("mnist", data_dir)
    assert (src.kind, src.format) == ("data_dir", "idx")
    assert src.paths == tuple(data_dir / "mnist" / f for f in FILES)


def test_default_split_is_sklearns_train_test_split(mnist):
    from sklearn.model_selection import train_test_split

    (x_train, y_train), _ = mnist
    tr, va = split_indices(len(x_train))
    sk_tr, sk_va = train_test_split(np.arange(len(x_train)), test_size=0.2, random_state=42)
    np.testing.assert_array_equal(tr, sk_tr)
    np.testing.assert_array_equal(va, sk_va)
    (xt, yt), (xv, yv) = train_val_split(x_train, y_train)
    sk_xt, sk_xv, sk_yt, sk_yv = train_test_split(x_train, y_train, test_size=0.2, random_state=42)
    for ours, theirs in ((xt, sk_xt), (xv, sk_xv), (yt, sk_yt), (yv, sk_yv)):
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        assert np.array_equal(ours, theirs)
    assert (len(xt), len(xv)) == (48000, 12000)
    np.testing.assert_array_equal(to_float(xv[:50]), sk_xv[:50] / np.float32(255.0))


def test_split_info_shapes(data_dir):
    s = split_info("mnist", data_dir).to_dict()
    parts = {k: (v["x_shape"], v["x_dtype"], v["y_shape"], v["min"], v["max"]) for k, v in s["parts"].items()}
    assert parts == {
        "train": ([48000, 28, 28], "float32", [48000], 0.0, 1.0),
        "validation": ([12000, 28, 28], "float32", [12000], 0.0, 1.0),
        "test": ([10000, 28, 28], "float32", [10000], 0.0, 1.0),
    }


def test_fashion_mnist(fashion_data_dir):
    (x_train, y_train), (x_test, y_test) = load_data("fashion-mnist", fashion_data_dir)
    assert (x_train.shape, y_train.shape, x_test.shape, y_test.shape) == ((60000, 28, 28), (60000,),
                                                                           (10000, 28, 28), (10000,))
    assert x_train.dtype == y_train.dtype == x_test.dtype == y_test.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert y_train[:5].tolist() == [9, 0, 0, 3, 0]


def test_real_files_through_the_verified_cache(data_dir, mnist, tmp_path, isolated):
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    for f in FILES:
        shutil.copy(data_dir / "mnist" / f, cache / f)
    got, src = load_dataset("mnist", quiet=True)
    assert (src.kind, src.verified, src.downloaded) == ("cache", True, False)
    for ours, ref in zip(got, mnist, strict=True):
        assert np.array_equal(ours[0], ref[0]) and np.array_equal(ours[1], ref[1])


def test_real_mnist_as_raw_idx_and_as_npz(mnist, tmp_path, isolated):
    (x_train, y_train), (x_test, y_test) = mnist
    raw = tmp_path / "raw" / "mnist"
    raw.mkdir(parents=True)
    for f, a in zip(FILES, (x_train, y_train, x_test, y_test), strict=True):
        (raw / f.removesuffix(".gz")).write_bytes(idx_bytes(a))
    write_npz(tmp_path / "npz" / "mnist.npz", compress=False,
              x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    for folder, fmt in ((tmp_path / "raw", "idx"), (tmp_path / "npz", "npz")):
        got, src = load_dataset("mnist", folder)
        assert (src.kind, src.format) == ("data_dir", fmt)
        assert np.array_equal(got[0][0], x_train) and np.array_equal(got[0][1], y_train)
        assert np.array_equal(got[1][0], x_test) and np.array_equal(got[1][1], y_test)
