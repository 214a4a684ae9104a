"""IDX, npz and PNG readers/writers: pure numpy, strict validation, one-line errors.

IDX is the format MNIST ships in: two zero bytes, a dtype code, the number of dimensions, one
big-endian uint32 per dimension, then the payload in big-endian order. Files may be gzipped
(detected by the gzip magic bytes, not by the file name).

Every reader raises :class:`~digitlab.errors.FormatError` with a one-line message naming the file
and the problem (bad magic, unknown dtype code, truncated header or payload, trailing bytes, corrupt
gzip, wrong shape or dtype, label values out of range); never a numpy traceback.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from digitlab.errors import FormatError, OutputError

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_DTYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


class ChecksumError(FormatError):
    """A file's SHA-256 is not the one the registry expects (corrupt or a different file)."""


# --------------------------------------------------------------------------------------------
# raw bytes


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a file as stored (no decompression); FormatError when it cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise FormatError(f"{path}: is a folder, expected a file") from None
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e.strerror or e})") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha256(data: bytes, expected: str, name: str) -> None:
    """Raise :class:`ChecksumError` unless ``sha256(data) == expected``."""
    actual = sha256_hex(data)
    if actual != expected.lower():
        raise ChecksumError(f"{name}: SHA-256 mismatch (expected {expected[:12]}..., got {actual[:12]}...)")


#: Largest decompressed data file accepted (bytes); DIGITLAB_MAX_DATA_BYTES overrides it.
MAX_DATA_BYTES = 1 << 30
ENV_MAX_DATA_BYTES = "DIGITLAB_MAX_DATA_BYTES"


def max_data_bytes() -> int:
    value = os.environ.get(ENV_MAX_DATA_BYTES)
    try:
        return int(value) if value else MAX_DATA_BYTES
    except ValueError:
        return MAX_DATA_BYTES


class DataTooLarge(FormatError):
    """A data file decompresses (or declares it would) to more than the limit."""


def _too_big(name: str, what: str, limit: int) -> DataTooLarge:
    return DataTooLarge(f"{name}: {what} more than the {limit:,}-byte limit for a data file; "
                       f"if it is genuine, raise {ENV_MAX_DATA_BYTES}")


def gunzip_if_needed(raw: bytes, name: str = "<bytes>", limit: int | None = None) -> bytes:
    """Decompress gzip data (detected by its magic bytes); other data is returned unchanged.

    Decompression stops as soon as the output passes ``limit`` bytes (default :func:`max_data_bytes`):
    a small gzip bomb is refused after at most ``limit`` bytes of work, not after all of it."""
    if raw[:2] != GZIP_MAGIC:
        return raw
    limit = max_data_bytes() if limit is None else limit
    out = bytearray()
    data = raw
    try:
        while data:
            d = zlib.decompressobj(wbits=31)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise _too_big(name, "decompresses to", limit)
            if not d.eof:
                raise FormatError(f"{name}: truncated gzip data (the file ends early)")
            data = d.unused_data
            if data[:2] != GZIP_MAGIC:
                if data.strip(b"\0"):
                    raise FormatError(f"{name}: corrupt gzip data (bytes after the end of the gzip stream)")
                break
    except zlib.error as e:
        raise FormatError(f"{name}: corrupt gzip data ({e})") from None
    return bytes(out)


def _gunzip_head(raw: bytes, n: int) -> bytes:
    """The first ``n`` decompressed bytes of gzip data (fewer when it is shorter or corrupt)."""
    try:
        return zlib.decompressobj(wbits=31).decompress(raw, n)
    except zlib.error:
        return b""


def _idx_size(head: bytes) -> int | None:
    """Header plus payload bytes an IDX header declares (None when the header is not readable yet)."""
    if len(head) < 4 or head[0] or head[1] or head[2] not in IDX_DTYPES or not head[3]:
        return None
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        return None
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return 4 + 4 * ndim + math.prod(dims) * IDX_DTYPES[head[2]].itemsize


# --------------------------------------------------------------------------------------------
# IDX


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes (already decompressed) into a native-endian, writable array."""
    if len(raw) < 4:
        raise FormatError(f"{name}: too short to be an IDX file ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise FormatError(f"{name}: not an IDX file (bad magic number 0x{raw[:4].hex()})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise FormatError(f"{name}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise FormatError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FormatError(f"{name}: truncated IDX header (needs {header} bytes, has {len(raw)})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: dimensions cannot overflow
    actual = len(raw) - header
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise FormatError(
            f"{name}: {kind}: header says {'x'.join(map(str, dims))} {dtype.newbyteorder('=').name} "
            f"({expected} bytes) but the payload is {actual} bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into an array.

    With ``sha256`` the stored bytes (the .gz file as it is on disk) are checked first and a
    mismatch raises :class:`ChecksumError`. Raises FormatError naming the file and the problem.
    """
    path = Path(path)
    raw = read_file_bytes(path)
    if sha256 is not None:
        check_sha256(raw, sha256, str(path))
    limit = max_data_bytes()
    if raw[:2] == GZIP_MAGIC:
        declared = _idx_size(_gunzip_head(raw, 4 + 4 * 255))
        if declared is not None:  # decompress no more than the header says (and refuse absurd headers at once)
            if declared > limit:
                raise _too_big(str(path), f"its IDX header declares {declared:,} bytes,", limit)
            limit = declared
    elif len(raw) > limit:
        raise _too_big(str(path), f"is {len(raw):,} bytes,", limit)
    try:
        data = gunzip_if_needed(raw, str(path), limit)
    except DataTooLarge:
        if limit < max_data_bytes():
            raise FormatError(f"{path}: has trailing bytes: the data is longer than its IDX header declares "
                              f"({limit:,} bytes)") from None
        raise
    return parse_idx(data, str(path))


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise an array to IDX bytes (uncompressed)."""
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in _CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    code = _CODES[key]
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError("IDX needs 1 to 255 dimensions")
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write an IDX file atomically; gzipped when ``compress`` is true or the name ends in ``.gz``.

    The gzip header carries no time stamp, so the same array always gives the same bytes.
    """
    path = Path(path)
    data = idx_bytes(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    return atomic_write_bytes(path, data)


# --------------------------------------------------------------------------------------------
# structural checks shared by the IDX and npz paths


def check_images(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` must be (N, 28, 28) uint8 with N >= 1."""
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise FormatError(
            f"{name}: expected images of shape (N, 28, 28) uint8, found shape {tuple(x.shape)} {x.dtype}"
        )
    if len(x) == 0:
        raise FormatError(f"{name}: holds no images")
    return x


def check_labels(y: np.ndarray, name: str, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """``y`` must be 1-D uint8 with every value in ``0 .. num_classes - 1``."""
    if y.dtype != np.uint8 or y.ndim != 1:
        raise FormatError(
            f"{name}: expected labels of shape (N,) uint8, found shape {tuple(y.shape)} {y.dtype}"
        )
    if len(y) and int(y.max()) >= num_classes:
        bad = int(np.count_nonzero(y >= num_classes))
        raise FormatError(
            f"{name}: label values must be 0-{num_classes - 1}, found {bad:,} label(s) up to {int(y.max())}"
        )
    return y


def check_pair(
    x: np.ndarray, y: np.ndarray, images_name: str, labels_name: str, file: str | None = None
) -> None:
    """The image and label counts must agree (``file``: the archive both arrays come from)."""
    if len(x) != len(y):
        where = f"{file}: " if file else ""
        what = "arrays" if file else "files"
        raise FormatError(
            f"{where}{labels_name} holds {len(y):,} labels but {images_name} holds {len(x):,} images; "
            f"the two {what} do not belong together"
        )


def read_idx_pair(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    images_sha256: str | None = None,
    labels_sha256: str | None = None,
    num_classes: int = NUM_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split (an images file and a labels file), checked structurally and, with the
    ``*_sha256`` arguments, against their checksums."""
    x = check_images(read_idx(images_path, images_sha256), str(images_path))
    y = check_labels(read_idx(labels_path, labels_sha256), str(labels_path), num_classes)
    check_pair(x, y, str(images_path), str(labels_path))
    return x, y


# --------------------------------------------------------------------------------------------
# npz (Keras's mnist.npz layout)


def parse_npz(raw: bytes, name: str = "<bytes>", num_classes: int = NUM_CLASSES) -> dict[str, np.ndarray]:
    """Parse npz bytes holding x_train, y_train, x_test, y_test; strictly validated, never unpickled."""
    if raw[:6] == NPY_MAGIC:
        raise FormatError(f"{name}: is a single .npy array, expected an npz archive of {', '.join(NPZ_KEYS)}")
    if raw[:4] != ZIP_MAGIC:
        raise FormatError(f"{name}: not an npz file (not a zip archive)")
    _check_npz_sizes(raw, name)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                has = ", ".join(z.files) or "nothing"
                raise FormatError(f"{name}: npz lacks array(s) {', '.join(missing)} (has {has})")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except FormatError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error, KeyError) as e:
        raise FormatError(f"{name}: not a readable npz file ({e})") from None
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        check_images(arrays[xk], f"{name}: {xk}")
        check_labels(arrays[yk], f"{name}: {yk}", num_classes)
        check_pair(arrays[xk], arrays[yk], xk, yk, file=name)
    return arrays


def _check_npz_sizes(raw: bytes, name: str) -> None:
    """Refuse an npz whose members declare more than the limit, before anything is decompressed:
    the zip directory's sizes, and each .npy header's shape and dtype."""
    limit = max_data_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            members = z.infolist()
            total = sum(m.file_size for m in members)
            if total > limit:
                raise _too_big(name, f"its members declare {total:,} bytes,", limit)
            for m in members:
                if not m.filename.endswith(".npy"):
                    continue
                with z.open(m) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    nbytes = math.prod(shape) * dtype.itemsize
                    if nbytes > m.file_size:
                        raise FormatError(f"{name}: {m.filename} declares a {'x'.join(map(str, shape))} "
                                          f"{dtype} array ({nbytes:,} bytes) but holds {m.file_size:,} bytes")
    except FormatError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error, KeyError, TypeError) as e:
        raise FormatError(f"{name}: not a readable npz file ({e})") from None


def read_npz(
    path: str | os.PathLike, sha256: str | None = None, num_classes: int = NUM_CLASSES
) -> dict[str, np.ndarray]:
    """Read a Keras-style ``mnist.npz`` (x_train, y_train, x_test, y_test), strictly validated:
    the four names must be there, images (N, 28, 28) uint8, labels (N,) uint8 in 0-9, counts equal.
    With ``sha256`` the file's checksum is checked first (:class:`ChecksumError`)."""
    path = Path(path)
    raw = read_file_bytes(path)
    if sha256 is not None:
        check_sha256(raw, sha256, str(path))
    return parse_npz(raw, str(path), num_classes)


def write_npz(path: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> Path:
    """Write arrays to an npz file atomically."""
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------
# PNG (for ``digitlab data extract``)


def png_bytes(image: np.ndarray) -> bytes:
    """A (H, W) uint8 array as an 8-bit grayscale PNG; decoding it gives back the same array."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a (H, W) uint8 image, got shape {image.shape} {image.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a (H, W) uint8 array as a grayscale PNG, atomically."""
    return atomic_write_bytes(path, png_bytes(image))


# --------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary ``.part`` file beside ``path`` for writing; on a clean exit it is flushed
    and renamed to ``path``, on any exception it is deleted. A crash never leaves a half-written
    ``path`` behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way")
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_error(path: Path, e: OSError) -> OutputError:
    """An OSError from writing ``path`` as one line: which file, and why (the file in the way, if any)."""
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            return OutputError(f"{path}: cannot write it, {parent} is a file, not a folder")
        if parent.is_dir():
            break
    if e.errno == errno.ENOSPC:
        why = "the disk is full"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "no permission to write there (read-only?)"
    elif e.errno == errno.EISDIR or path.is_dir():
        why = "a folder of that name is in the way"
    else:
        why = e.strerror or str(e)
    return OutputError(f"{path}: cannot write it ({why})")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file in the same folder, then rename into place."""
    path = Path(path)
    with atomic_open(path) as f:
        f.write(data)
    return path
