"""IDX and npz readers/writers: pure numpy, strict validation, one-line errors.

IDX is the format MNIST ships in: two zero bytes, a dtype code, the number of dimensions, one
big-endian uint32 per dimension, then the payload in big-endian order. Files may be gzipped.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from digitlab.errors import FormatError

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
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise FormatError(f"{path}: is a folder, expected an IDX file") from None
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise FormatError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes (already decompressed) into a native-endian array."""
    if len(raw) < 4:
        raise FormatError(f"{name}: too short to be an IDX file ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise FormatError(f"{name}: not an IDX file (bad magic number {raw[:4].hex()})")
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
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise FormatError(
            f"{name}: {kind}: header says {'x'.join(map(str, dims))} {dtype.name} "
            f"({expected} bytes) but the payload is {actual} bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzipped). Raises FormatError naming the file and the problem."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file in the same folder, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write an IDX file; gzipped when ``compress`` is true or the name ends in ``.gz``."""
    path = Path(path)
    data = idx_bytes(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    return atomic_write_bytes(path, data)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a Keras-style ``mnist.npz`` (x_train, y_train, x_test, y_test), strictly validated."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise FormatError(f"{path}: npz lacks array(s) {', '.join(missing)} (has {', '.join(z.files)})")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except FormatError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as e:
        raise FormatError(f"{path}: not a readable npz file ({e})") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise FormatError(f"{path}: x_{split} has shape {x.shape}, expected (N, 28, 28)")
        if x.dtype != np.uint8:
            raise FormatError(f"{path}: x_{split} has dtype {x.dtype}, expected uint8")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise FormatError(f"{path}: y_{split} has shape {y.shape} dtype {y.dtype}, expected (N,) integers")
        if len(x) != len(y):
            raise FormatError(f"{path}: {len(x)} images in x_{split} but {len(y)} labels in y_{split}")
    return arrays


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write arrays to an npz file atomically."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())
