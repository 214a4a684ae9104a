"""IDX / npz / PNG readers and writers on small synthetic files: round trips and every error."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from PIL import Image

from digitlab.data.formats import (
    ChecksumError,
    atomic_open,
    atomic_write_bytes,
    idx_bytes,
    parse_idx,
    png_bytes,
    read_idx,
    read_idx_pair,
    read_npz,
    sha256_hex,
    write_idx,
    write_npz,
    write_png,
)
from digitlab.errors import FormatError


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels() -> np.ndarray:
    return np.array([0, 1, 2, 3, 7, 8, 9], dtype=np.uint8)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- IDX round trips


def test_idx_bytes_header_is_the_mnist_layout(labels):
    raw = idx_bytes(labels)
    assert raw[:8] == bytes([0, 0, 0x08, 1, 0, 0, 0, 7])
    assert raw[8:] == labels.tobytes()


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_read_idx_round_trip_byte_for_byte(tmp_path, images, name):
    path = write_idx(tmp_path / name, images)
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == (7, 28, 28)
    np.testing.assert_array_equal(back, images)
    stored = path.read_bytes()
    if name.endswith(".gz"):
        assert stored[:2] == b"\x1f\x8b"
        stored = gzip.decompress(stored)
    assert stored == idx_bytes(images)
    assert idx_bytes(back) == stored


def test_gzip_output_is_deterministic(tmp_path, images):
    a = write_idx(tmp_path / "a.gz", images).read_bytes()
    b = write_idx(tmp_path / "b.gz", images).read_bytes()
    assert a == b


@pytest.mark.parametrize("dtype", ["uint8", "int8", ">i2", "<i4", "float32", "float64"])
def test_idx_every_dtype_round_trips(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == "uint8":
        a = np.arange(24, dtype=np.uint8)
    back = read_idx(write_idx(tmp_path / "x.idx", a))
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(back, a)


def test_idx_bytes_refuses_unstorable_dtype():
    with pytest.raises(ValueError, match="IDX cannot store dtype int64"):
        idx_bytes(np.zeros(3, dtype=np.int64))


def test_read_idx_checks_sha256(tmp_path, labels):
    path = write_idx(tmp_path / "l.gz", labels)
    np.testing.assert_array_equal(read_idx(path, sha256_hex(path.read_bytes())), labels)
    with pytest.raises(ChecksumError) as e:
        read_idx(path, "0" * 64)
    assert one_line(e).startswith(f"{path}: SHA-256 mismatch (expected 000000000000..., got ")


# ---------------------------------------------------------------- IDX errors


def test_bad_magic(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(FormatError) as e:
        read_idx(p)
    assert one_line(e) == f"{p}: not an IDX file (bad magic number 0x01020801)"


def test_unknown_dtype_code(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(FormatError) as e:
        read_idx(p)
    assert one_line(e) == f"{p}: unknown IDX dtype code 0x07"


def test_too_short(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x00\x00")
    with pytest.raises(FormatError) as e:
        read_idx(p)
    assert one_line(e) == f"{p}: too short to be an IDX file (2 bytes)"


def test_truncated_header(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(idx_bytes(np.zeros((2, 28, 28), np.uint8))[:10])
    with pytest.raises(FormatError) as e:
        read_idx(p)
    assert one_line(e) == f"{p}: truncated IDX header (needs 16 bytes, has 10)"


def test_zero_dimensions(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(bytes([0, 0, 8, 0]))
    with pytest.raises(FormatError, match="declares 0 dimensions"):
        read_idx(p)


def test_truncated_payload(tmp_path, images):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(idx_bytes(images)[:-5]))
    with pytest.raises(FormatError) as e:
        read_idx(p)
    assert one_line(e) == (f"{p}: truncated: header says 7x28x28 uint8 (5488 bytes) "
                           "but the payload is 5483 bytes")


def test_trailing_bytes(tmp_path, labels):
    p = tmp_path / "x"
    p.write_bytes(idx_bytes(labels) + b"\x00\x00")
    with pytest.raises(FormatError) as e:
        read_idx(p)
    assert one_line(e) == f"{p}: has trailing bytes: header says 7 uint8 (7 bytes) but the payload is 9 bytes"


def test_truncated_gzip(tmp_path, images):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(idx_bytes(images))[:-20])
    with pytest.raises(FormatError) as e:
        read_idx(p)
    assert one_line(e) == f"{p}: truncated gzip data (the file ends early)"


def test_corrupt_gzip(tmp_path, images):
    data = bytearray(gzip.compress(idx_bytes(images)))
    data[len(data) // 2] ^= 0xFF  # flip bits in the deflate stream
    data[-8] ^= 0xFF  # and in the CRC, so either check catches it
    p = tmp_path / "x.gz"
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError) as e:
        read_idx(p)
    assert one_line(e).startswith(f"{p}: corrupt gzip data (")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FormatError) as e:
        read_idx(tmp_path / "nope.gz")
    assert one_line(e) == f"{tmp_path / 'nope.gz'}: file not found"
    with pytest.raises(FormatError) as e:
        read_idx(tmp_path)
    assert one_line(e) == f"{tmp_path}: is a folder, expected a file"


def test_parse_idx_returns_a_writable_native_array():
    a = parse_idx(idx_bytes(np.array([1, -2, 3], dtype=">i4")))
    assert a.dtype.isnative and a.dtype.kind == "i" and a.dtype.itemsize == 4
    a[0] = 9  # not a read-only view of the bytes
    assert a.tolist() == [9, -2, 3]


# ---------------------------------------------------------------- one split: images + labels


def _pair(tmp_path, x, y, suffix=".gz"):
    xi, yl = tmp_path / f"images{suffix}", tmp_path / f"labels{suffix}"
    write_idx(xi, x)
    write_idx(yl, y)
    return xi, yl


def test_read_idx_pair_good(tmp_path, images, labels):
    x, y = read_idx_pair(*_pair(tmp_path, images, labels))
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_count_mismatch_names_both_files(tmp_path):
    # the real-size case: 59,999 labels for 60,000 images (raw IDX files, as a user's folder may hold)
    xi, yl = _pair(tmp_path, np.zeros((60000, 28, 28), np.uint8), np.zeros(59999, np.uint8), suffix="")
    with pytest.raises(FormatError) as e:
        read_idx_pair(xi, yl)
    assert one_line(e) == (f"{yl} holds 59,999 labels but {xi} holds 60,000 images; "
                           "the two files do not belong together")


def test_label_values_out_of_range(tmp_path, images):
    xi, yl = _pair(tmp_path, images, np.array([0, 1, 2, 10, 3, 255, 4], np.uint8))
    with pytest.raises(FormatError) as e:
        read_idx_pair(xi, yl)
    assert one_line(e) == f"{yl}: label values must be 0-9, found 2 label(s) up to 255"


@pytest.mark.parametrize(
    "x, found",
    [
        (np.zeros((3, 28, 27), np.uint8), "(3, 28, 27) uint8"),
        (np.zeros((3, 784), np.uint8), "(3, 784) uint8"),
        (np.zeros((3, 28, 28), np.float32), "(3, 28, 28) float32"),
        (np.zeros((3, 28, 28, 1), np.uint8), "(3, 28, 28, 1) uint8"),
    ],
)
def test_wrong_image_dims_or_dtype(tmp_path, x, found):
    xi, yl = _pair(tmp_path, x, np.zeros(3, np.uint8))
    with pytest.raises(FormatError) as e:
        read_idx_pair(xi, yl)
    assert one_line(e) == f"{xi}: expected images of shape (N, 28, 28) uint8, found shape {found}"


def test_labels_file_given_as_images_and_vice_versa(tmp_path, images, labels):
    xi, yl = _pair(tmp_path, images, labels)
    with pytest.raises(FormatError) as e:
        read_idx_pair(yl, xi)
    assert one_line(e) == f"{yl}: expected images of shape (N, 28, 28) uint8, found shape (7,) uint8"


def test_labels_must_be_1d_uint8(tmp_path, images):
    xi, yl = _pair(tmp_path, images, np.arange(7, dtype=">i4"))
    with pytest.raises(FormatError) as e:
        read_idx_pair(xi, yl)
    assert one_line(e) == f"{yl}: expected labels of shape (N,) uint8, found shape (7,) int32"


def test_empty_image_file(tmp_path):
    xi, yl = _pair(tmp_path, np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(FormatError, match="holds no images"):
        read_idx_pair(xi, yl)


def test_fewer_classes_narrow_the_label_range(tmp_path, images, labels):
    xi, yl = _pair(tmp_path, images, labels)
    with pytest.raises(FormatError, match="label values must be 0-4"):
        read_idx_pair(xi, yl, num_classes=5)


# ---------------------------------------------------------------- npz


def _npz_arrays(n_train=5, n_test=3):
    rng = np.random.default_rng(1)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


@pytest.mark.parametrize("compress", [True, False])
def test_npz_round_trip(tmp_path, compress):
    arrays = _npz_arrays()
    path = write_npz(tmp_path / "mnist.npz", compress=compress, **arrays)
    back = read_npz(path)
    assert list(back) == ["x_train", "y_train", "x_test", "y_test"]
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert back[k].tobytes() == v.tobytes()
    checked = read_npz(path, sha256=sha256_hex(path.read_bytes()))
    assert checked["y_test"].tolist() == arrays["y_test"].tolist()
    with pytest.raises(ChecksumError):
        read_npz(path, sha256="f" * 64)


def test_npz_missing_keys(tmp_path):
    arrays = _npz_arrays()
    del arrays["y_test"], arrays["x_test"]
    p = write_npz(tmp_path / "m.npz", **arrays)
    with pytest.raises(FormatError) as e:
        read_npz(p)
    assert one_line(e) == f"{p}: npz lacks array(s) x_test, y_test (has x_train, y_train)"


def test_npz_wrong_shape(tmp_path):
    arrays = _npz_arrays()
    arrays["x_train"] = arrays["x_train"].reshape(5, 784)
    p = write_npz(tmp_path / "m.npz", **arrays)
    with pytest.raises(FormatError) as e:
        read_npz(p)
    assert one_line(e) == (f"{p}: x_train: expected images of shape (N, 28, 28) uint8, "
                           "found shape (5, 784) uint8")


def test_npz_wrong_dtype(tmp_path):
    arrays = _npz_arrays()
    arrays["y_test"] = arrays["y_test"].astype(np.float64)
    p = write_npz(tmp_path / "m.npz", **arrays)
    with pytest.raises(FormatError) as e:
        read_npz(p)
    assert one_line(e) == f"{p}: y_test: expected labels of shape (N,) uint8, found shape (3,) float64"


def test_npz_count_mismatch_and_label_range(tmp_path):
    arrays = _npz_arrays()
    arrays["y_train"] = arrays["y_train"][:4]
    p = write_npz(tmp_path / "m.npz", **arrays)
    with pytest.raises(FormatError) as e:
        read_npz(p)
    assert one_line(e) == (f"{p}: y_train holds 4 labels but x_train holds 5 images; "
                           "the two arrays do not belong together")
    arrays = _npz_arrays()
    arrays["y_test"][0] = 12
    p = write_npz(tmp_path / "m2.npz", **arrays)
    with pytest.raises(FormatError, match=r"y_test: label values must be 0-9, found 1 label\(s\) up to 12"):
        read_npz(p)


def test_npz_not_a_zip(tmp_path):
    p = tmp_path / "m.npz"
    p.write_bytes(b"hello, this is text")
    with pytest.raises(FormatError) as e:
        read_npz(p)
    assert one_line(e) == f"{p}: not an npz file (not a zip archive)"


def test_npz_a_single_npy_array(tmp_path):
    p = tmp_path / "m.npz"
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    p.write_bytes(buf.getvalue())
    with pytest.raises(FormatError, match="is a single .npy array, expected an npz archive"):
        read_npz(p)


def test_npz_truncated_zip(tmp_path):
    p = write_npz(tmp_path / "m.npz", **_npz_arrays())
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(FormatError) as e:
        read_npz(p)
    assert one_line(e).startswith(f"{p}: not a readable npz file (")


def test_npz_object_arrays_are_never_unpickled(tmp_path):
    arrays = _npz_arrays()
    buf = io.BytesIO()
    np.savez(buf, **{**arrays, "y_test": np.array([object()] * 3, dtype=object)})
    p = tmp_path / "m.npz"
    p.write_bytes(buf.getvalue())
    with pytest.raises(FormatError, match="not a readable npz file"):
        read_npz(p)


# ---------------------------------------------------------------- PNG and atomic writes


def test_png_round_trip_is_byte_exact(tmp_path, images):
    p = write_png(tmp_path / "d.png", images[0])
    with Image.open(p) as im:
        assert im.mode == "L" and im.size == (28, 28)
        assert np.asarray(im).tobytes() == images[0].tobytes()
    assert png_bytes(images[0]) == p.read_bytes()
    with pytest.raises(ValueError):
        png_bytes(images[0].astype(np.float32))


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.bin"]


def test_atomic_open_failure_keeps_the_old_file(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(p) as f:
        f.write(b"half of the new")
        raise RuntimeError("crash mid-write")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.bin"]
