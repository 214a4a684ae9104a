"""Where datasets come from (data folder, cache, Keras cache), the registry, and the helpers behind
``digitlab data``; all on a tiny synthetic dataset registered for the test. No network."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import isolate_data_env
from PIL import Image

from digitlab.data import registry
from digitlab.data.datasets import load_data, load_dataset
from digitlab.data.formats import idx_bytes, write_idx, write_npz
from digitlab.data.locate import cache_dir, keras_dir, locate, where_to_put
from digitlab.data.registry import DATASETS, FILES, Dataset, get_dataset
from digitlab.data.reports import describe_arrays, extract_pngs, first_samples, split_info
from digitlab.errors import ConfigError, DataError, FormatError

TINY = "tiny"


def tiny_arrays(n_train: int = 12, n_test: int = 6):
    rng = np.random.default_rng(3)
    return (
        (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), (np.arange(n_train) % 10).astype(np.uint8)),
        (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), (np.arange(n_test) % 10).astype(np.uint8)),
    )


def write_tiny(folder: Path, arrays=None, raw: bool = False) -> list[Path]:
    """The four IDX files of ``arrays`` in ``folder`` (gzipped, or raw without the .gz suffix)."""
    (x_train, y_train), (x_test, y_test) = arrays or tiny_arrays()
    paths = []
    for f, a in zip(FILES, (x_train, y_train, x_test, y_test), strict=True):
        paths.append(write_idx(folder / (f.removesuffix(".gz") if raw else f), a))
    return paths


def write_tiny_npz(path: Path, arrays=None) -> Path:
    (x_train, y_train), (x_test, y_test) = arrays or tiny_arrays()
    return write_npz(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_same(a, b):
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == xb.dtype == np.uint8 and ya.dtype == yb.dtype == np.uint8
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    isolate_data_env(tmp_path, monkeypatch)


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Dataset:
    """A registered dataset whose checksums are those of :func:`tiny_arrays` written as .gz / npz."""
    folder = tmp_path / "reference"
    paths = write_tiny(folder)
    npz = write_tiny_npz(folder / "tiny.npz")
    ds = Dataset(
        name=TINY,
        classes=tuple("abcdefghij"),
        sha256={p.name: sha(p.read_bytes()) for p in paths},
        mirrors=("http://127.0.0.1:9/never/",),  # never contacted: these tests do not download
        npz_sha256=sha(npz.read_bytes()),
    )
    monkeypatch.setitem(DATASETS, TINY, ds)
    return ds


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_registry_entries_are_complete(name):
    ds = get_dataset(name)
    assert ds.name == name and len(ds.classes) == 10
    assert sorted(ds.sha256) == sorted(FILES)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in ds.sha256.values())
    assert len(ds.mirrors) >= 2 and all(m.startswith("http") and m.endswith("/") for m in ds.mirrors)


def test_registry_mirrors_and_keras_npz():
    mnist, fashion = get_dataset("mnist"), get_dataset("fashion-mnist")
    assert mnist.mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert mnist.npz_url == "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
    assert mnist.npz_sha256 == "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
    assert fashion.mirrors[0] == "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"


def test_unknown_dataset():
    with pytest.raises(DataError) as e:
        get_dataset("cifar")
    assert str(e.value) == "unknown dataset 'cifar'; choose one of: mnist, fashion-mnist"


# ---------------------------------------------------------------- places


def test_cache_dir_precedence(tmp_path, monkeypatch):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DIGITLAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "digitlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "digitlab"


def test_keras_dir(tmp_path, monkeypatch):
    assert keras_dir() == tmp_path / "keras" / "datasets"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert keras_dir() == tmp_path / "home" / ".keras" / "datasets"


@pytest.mark.parametrize("raw", [False, True])
def test_data_dir_idx_gz_or_raw(tmp_path, tiny, raw):
    arrays = tiny_arrays()
    paths = write_tiny(tmp_path / "data" / TINY, arrays, raw=raw)
    src = locate(TINY, tmp_path / "data")
    assert (src.kind, src.format, src.paths, src.verified) == ("data_dir", "idx", tuple(paths), False)
    assert src.describe() == f"data folder {tmp_path / 'data' / TINY} (4 IDX files, structure checked)"
    got, src2 = load_dataset(TINY, tmp_path / "data", download_missing=False)
    assert src2 == src
    assert_same(got, arrays)


def test_data_dir_files_are_checked_structurally_not_by_checksum(tmp_path, tiny):
    """A user's own folder may hold other (valid) bytes than the registry's: accepted as they are."""
    other = tiny_arrays(n_train=4, n_test=3)
    write_tiny(tmp_path / "data" / TINY, other)
    assert_same(load_data(TINY, tmp_path / "data", download_missing=False), other)


def test_data_dir_from_environment(tmp_path, tiny, monkeypatch):
    write_tiny(tmp_path / "env" / TINY)
    monkeypatch.setenv("DIGITLAB_DATA_DIR", str(tmp_path / "env"))
    assert locate(TINY).paths[0] == tmp_path / "env" / TINY / FILES[0]
    write_tiny(tmp_path / "arg" / TINY)
    assert locate(TINY, tmp_path / "arg").paths[0] == tmp_path / "arg" / TINY / FILES[0]  # argument wins


def test_data_dir_may_be_the_dataset_folder_itself(tmp_path, tiny):
    arrays = tiny_arrays()
    paths = write_tiny(tmp_path / "data" / TINY, arrays)
    src = locate(TINY, tmp_path / "data" / TINY)
    assert (src.kind, src.paths) == ("data_dir", tuple(paths))
    assert_same(load_data(TINY, tmp_path / "data" / TINY, download_missing=False), arrays)


def test_data_dir_holding_the_files_of_another_name_is_refused(tmp_path, tiny):
    write_tiny(tmp_path / "fashion")
    with pytest.raises(DataError) as e:
        locate(TINY, tmp_path / "fashion")
    assert str(e.value) == (
        f"{tmp_path / 'fashion'} holds the IDX files directly, but they must sit in "
        f"{tmp_path / 'fashion' / TINY}/ "
        "(MNIST and Fashion-MNIST share file names); move them there or name the folder tiny"
    )


def test_data_dir_that_is_a_file(tmp_path, tiny):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match=r"^data folder .*f is not a folder; point --data-dir"):
        locate(TINY, tmp_path / "f")


@pytest.mark.parametrize("where", ["tiny.npz", "tiny/tiny.npz"])
def test_data_dir_npz(tmp_path, tiny, where):
    arrays = tiny_arrays()
    path = write_tiny_npz(tmp_path / "data" / where, arrays)
    src = locate(TINY, tmp_path / "data")
    assert (src.kind, src.format, src.paths) == ("data_dir", "npz", (path,))
    assert_same(load_data(TINY, tmp_path / "data", download_missing=False), arrays)


def test_data_dir_that_does_not_exist(tmp_path, tiny):
    with pytest.raises(DataError) as e:
        load_data(TINY, tmp_path / "nope")
    assert str(e.value) == (
        f"data folder {tmp_path / 'nope'} does not exist; point --data-dir or $DIGITLAB_DATA_DIR at a folder "
        f"holding tiny/ with {', '.join(FILES)}"
    )


def test_data_dir_with_some_files_missing(tmp_path, tiny):
    paths = write_tiny(tmp_path / "data" / TINY)
    paths[3].unlink()
    paths[1].unlink()
    with pytest.raises(DataError) as e:
        locate(TINY, tmp_path / "data")
    assert str(e.value) == (f"{tmp_path / 'data' / TINY} lacks train-labels-idx1-ubyte.gz, "
                            "t10k-labels-idx1-ubyte.gz (raw, uncompressed files without .gz are fine too)")


def test_data_dir_dataset_folder_empty(tmp_path, tiny):
    (tmp_path / "data" / TINY).mkdir(parents=True)
    with pytest.raises(DataError, match=r"holds none of train-images-idx3-ubyte.gz, .* \(nor tiny.npz\)"):
        locate(TINY, tmp_path / "data")


def test_data_dir_with_a_broken_file_names_it(tmp_path, tiny):
    paths = write_tiny(tmp_path / "data" / TINY)
    paths[2].write_bytes(gzip.compress(idx_bytes(np.zeros((6, 28, 28), np.uint8)))[:-30])
    with pytest.raises(FormatError) as e:
        load_data(TINY, tmp_path / "data", download_missing=False)
    assert str(e.value) == f"{paths[2]}: truncated gzip data (the file ends early)"


def test_data_dir_labels_that_do_not_match(tmp_path, tiny):
    (x_train, y_train), test = tiny_arrays()
    paths = write_tiny(tmp_path / "data" / TINY, ((x_train, y_train[:-1]), test))
    with pytest.raises(FormatError) as e:
        load_data(TINY, tmp_path / "data", download_missing=False)
    assert str(e.value) == (f"{paths[1]} holds 11 labels but {paths[0]} holds 12 images; "
                            "the two files do not belong together")


def test_nothing_found_offline_says_where_to_put_the_files(tmp_path, tiny):
    with pytest.raises(DataError) as e:
        load_data(TINY, download_missing=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == (
        "no tiny files found and downloads are off; put train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (gzipped or raw) "
        f"in {tmp_path / 'cache' / TINY}/, "
        "or put them in DIR/tiny/ and set $DIGITLAB_DATA_DIR=DIR (or pass --data-dir DIR); "
        "a Keras-style tiny.npz (x_train, y_train, x_test, y_test) works too"
    )


def test_where_to_put_names_the_users_data_dir(tmp_path, tiny):
    (tmp_path / "mine").mkdir()
    assert where_to_put(TINY, tmp_path / "mine").startswith(
        f"put {', '.join(FILES)} (gzipped or raw) in {tmp_path / 'mine' / TINY}/; a Keras-style tiny.npz"
    )


def test_offline_environment_switch(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("DIGITLAB_OFFLINE", "1")
    with pytest.raises(DataError, match="^no tiny files found and downloads are off; put "):
        load_data(TINY)


def test_empty_data_dir_falls_through_to_the_cache(tmp_path, tiny):
    (tmp_path / "empty").mkdir()
    arrays = tiny_arrays()
    paths = write_tiny(tmp_path / "cache" / TINY, arrays)
    got, src = load_dataset(TINY, tmp_path / "empty", download_missing=False)
    assert (src.kind, src.format, src.paths, src.verified) == ("cache", "idx", tuple(paths), True)
    assert src.describe() == f"digitlab cache {tmp_path / 'cache' / TINY} (4 IDX files, SHA-256 verified)"
    assert_same(got, arrays)


def test_data_dir_wins_over_cache(tmp_path, tiny):
    write_tiny(tmp_path / "cache" / TINY)
    write_tiny(tmp_path / "data" / TINY)
    assert locate(TINY, tmp_path / "data").kind == "data_dir"
    assert locate(TINY).kind == "cache"


def test_corrupt_cached_file_offline_is_deleted_and_reported(tmp_path, tiny):
    paths = write_tiny(tmp_path / "cache" / TINY)
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(DataError) as e:
        load_data(TINY, download_missing=False, quiet=True)
    assert str(e.value).startswith(f"{paths[0]}: SHA-256 mismatch (expected ")
    assert not paths[0].exists()  # the bad file is gone ...
    assert all(p.exists() for p in paths[1:])  # ... the good ones stay


def test_cache_npz(tmp_path, tiny):
    arrays = tiny_arrays()
    path = write_tiny_npz(tmp_path / "cache" / TINY / "tiny.npz", arrays)
    got, src = load_dataset(TINY, download_missing=False)
    assert (src.kind, src.format, src.paths) == ("cache", "npz", (path,))
    assert_same(got, arrays)


@pytest.fixture
def tiny_keras(tiny, monkeypatch):
    monkeypatch.setitem(registry.KERAS_FILES, TINY, "tiny.npz")
    return tiny


def test_keras_cache_is_reused_read_only(tmp_path, tiny_keras):
    arrays = tiny_arrays()
    path = write_tiny_npz(tmp_path / "keras" / "datasets" / "tiny.npz", arrays)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    got, src = load_dataset(TINY, download_missing=False)
    assert (src.kind, src.format, src.paths, src.verified) == ("keras", "npz", (path,), True)
    assert src.describe() == f"Keras cache (read-only) {path} (npz, SHA-256 verified)"
    assert_same(got, arrays)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert not (tmp_path / "cache").exists()


def test_cache_wins_over_keras(tmp_path, tiny_keras):
    write_tiny_npz(tmp_path / "keras" / "datasets" / "tiny.npz")
    write_tiny(tmp_path / "cache" / TINY)
    assert locate(TINY).kind == "cache"


def test_keras_cache_with_a_wrong_checksum_is_left_alone(tmp_path, tiny_keras):
    path = write_tiny_npz(tmp_path / "keras" / "datasets" / "tiny.npz", tiny_arrays(n_train=3))
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_data(TINY, download_missing=False, quiet=True)
    assert path.exists()  # never deleted or rewritten


def test_real_mnist_locates_keras_npz(tmp_path):
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    (tmp_path / "keras" / "datasets" / "mnist.npz").write_bytes(b"placeholder")
    src = locate("mnist")
    assert (src.kind, src.paths) == ("keras", (tmp_path / "keras" / "datasets" / "mnist.npz",))
    assert locate("fashion-mnist") is None


# ---------------------------------------------------------------- helpers behind `digitlab data`


def test_describe_arrays(tmp_path, tiny):
    arrays = tiny_arrays()
    write_tiny(tmp_path / "data" / TINY, arrays)
    arrays, src = load_dataset(TINY, tmp_path / "data")
    info = describe_arrays(TINY, arrays, src).to_dict()
    assert info["arrays"] == {
        "x_train": {"shape": [12, 28, 28], "dtype": "uint8"}, "y_train": {"shape": [12], "dtype": "uint8"},
        "x_test": {"shape": [6, 28, 28], "dtype": "uint8"}, "y_test": {"shape": [6], "dtype": "uint8"},
    }
    assert info["class_counts"] == {"train": [2, 2, 1, 1, 1, 1, 1, 1, 1, 1],
                                    "test": [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]}
    x_train, x_test = arrays[0][0], arrays[1][0]
    assert info["pixel_range"] == {"train": [int(x_train.min()), int(x_train.max())],
                                   "test": [int(x_test.min()), int(x_test.max())]}
    assert info["source"]["kind"] == "data_dir" and info["classes"] == list("abcdefghij")


def test_first_samples_and_errors(tmp_path, tiny):
    arrays = tiny_arrays()
    write_tiny(tmp_path / "data" / TINY, arrays)
    x, y = first_samples(TINY, "test", 4, tmp_path / "data")
    np.testing.assert_array_equal(x, arrays[1][0][:4])
    np.testing.assert_array_equal(y, [0, 1, 2, 3])
    with pytest.raises(ConfigError, match="unknown split 'val'; choose train or test"):
        first_samples(TINY, "val", 4, tmp_path / "data")
    with pytest.raises(ConfigError, match="--count 13 is more than the 12 images of the train split"):
        first_samples(TINY, "train", 13, tmp_path / "data")
    with pytest.raises(ConfigError, match="--count must be at least 1, got 0"):
        first_samples(TINY, "train", 0, tmp_path / "data")


def test_extract_pngs_round_trip(tmp_path):
    x, _ = tiny_arrays()[0]
    y = np.array([5, 0, 4], np.uint8)
    paths = extract_pngs(x[:3], y, tmp_path / "out", prefix="train")
    assert [p.name for p in paths] == ["train_0_label_5.png", "train_1_label_0.png", "train_2_label_4.png"]
    for p, img in zip(paths, x[:3], strict=True):
        with Image.open(p) as im:
            assert (im.mode, im.size) == ("L", (28, 28))
            assert np.asarray(im).tobytes() == img.tobytes()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        extract_pngs(x[:1], y[:1], tmp_path / "file")


def test_split_info(tmp_path, tiny):
    (x_train, y_train), test = tiny_arrays(n_train=20, n_test=6)
    write_tiny(tmp_path / "data" / TINY, ((x_train, y_train), test))
    s = split_info(TINY, tmp_path / "data", 0.25, 7).to_dict()
    assert s["val_split"] == 0.25 and s["split_seed"] == 7
    assert {k: (v["x_shape"], v["y_shape"], v["x_dtype"]) for k, v in s["parts"].items()} == {
        "train": ([15, 28, 28], [15], "float32"),
        "validation": ([5, 28, 28], [5], "float32"),
        "test": ([6, 28, 28], [6], "float32"),
    }
    assert all(0.0 <= v["min"] <= v["max"] <= 1.0 for v in s["parts"].values())
    assert s["parts"]["train"]["max"] == pytest.approx(x_train.max() / 255.0)
    with pytest.raises(ConfigError, match="--val-split must be between 0 and 1"):
        split_info(TINY, tmp_path / "data", 1.0)
