"""Registry of MNIST-format datasets, where their files come from, and the verified download.

Where :func:`load_data` looks, in order (:func:`locate` tells which one it found):

1. ``data_dir`` (argument), else ``$DIGITLAB_DATA_DIR``: a folder holding ``<dataset>/`` with the
   four IDX files (each ``.gz`` or raw, uncompressed), or a Keras-style npz at ``<dataset>.npz`` or
   ``<dataset>/<dataset>.npz``. These are the user's files: they are checked **structurally**
   (IDX header and exact payload length, shapes, dtypes, label range, image/label counts), not
   against checksums, because they may legitimately be uncompressed or rebuilt. A folder that does
   not exist is an error; a folder without this dataset falls through to the next places.
2. digitlab's cache, ``$DIGITLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/digitlab``, else
   ``~/.cache/digitlab``, laid out as ``<cache>/<dataset>/<file>``. Cached files are downloads, so
   their **SHA-256 is verified on every load** (it costs ~10 ms for the 10 MB file, read once for
   hashing and parsing); a corrupt cached file is deleted and fetched again.
3. An existing Keras cache, ``$KERAS_HOME/datasets/mnist.npz`` else ``~/.keras/datasets/mnist.npz``
   (MNIST only): reused read-only after its SHA-256 is verified, never written.
4. A download into the cache: each file from the dataset's mirrors in turn (``urllib`` only),
   with a progress bar on stderr, into a temporary file in the cache folder that is renamed only
   after its SHA-256 matches. Any failure (HTTP error, refused or cut connection, timeout, bad
   checksum) moves on to the next mirror. The mirrors can be replaced with ``mirrors=[...]`` or
   ``$DIGITLAB_MIRRORS`` (space- or comma-separated base URLs; an entry ending in ``.npz`` is an
   npz archive URL checked against the dataset's npz checksum).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from digitlab import __version__
from digitlab.data.formats import (
    ChecksumError,
    atomic_open,
    check_sha256,
    read_file_bytes,
    read_idx_pair,
    read_npz,
    write_png,
)
from digitlab.errors import ConfigError, DataError, DownloadError, FormatError

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

ENV_DATA_DIR = "DIGITLAB_DATA_DIR"
ENV_CACHE_DIR = "DIGITLAB_CACHE_DIR"
ENV_MIRRORS = "DIGITLAB_MIRRORS"
ENV_OFFLINE = "DIGITLAB_OFFLINE"
DEFAULT_TIMEOUT = 30.0  # seconds without progress (connect or read) before a mirror counts as failed
MAX_DOWNLOAD_BYTES = 200_000_000  # no file of the registry comes close (Fashion-MNIST's largest: 26 MB)

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Dataset:
    """One MNIST-format dataset: its class names, the SHA-256 of its four IDX .gz files, the base
    URLs it can be downloaded from, and optionally a Keras-style npz (URL + SHA-256)."""

    name: str
    classes: tuple[str, ...]
    sha256: dict[str, str]
    mirrors: tuple[str, ...]
    npz_url: str | None = None
    npz_sha256: str | None = None

    @property
    def npz_name(self) -> str:
        """The npz file name digitlab looks for (``mnist.npz``, ``fashion-mnist.npz``)."""
        return f"{self.name}.npz"


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        name="mnist",
        classes=tuple(str(i) for i in range(10)),
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        npz_url="https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        npz_sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    ),
    "fashion-mnist": Dataset(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        mirrors=(
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
    ),
}

# The Keras cache holds MNIST as this file (checked against Dataset.npz_sha256).
KERAS_FILES = {"mnist": "mnist.npz"}


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


# --------------------------------------------------------------------------------------------
# places


def cache_dir() -> Path:
    """digitlab's download cache: ``$DIGITLAB_CACHE_DIR``, ``$XDG_CACHE_HOME/digitlab`` or
    ``~/.cache/digitlab``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "digitlab"
    return Path.home() / ".cache" / "digitlab"


def keras_dir() -> Path:
    """Where Keras caches datasets: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser() / "datasets"
    return Path.home() / ".keras" / "datasets"


def _data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else None


@dataclass(frozen=True)
class Source:
    """Where a dataset's files were found.

    ``kind``: ``"data_dir"`` (the user's folder, structure checked), ``"cache"`` (digitlab's cache,
    SHA-256 verified) or ``"keras"`` (Keras's cache, read-only, SHA-256 verified). ``format``:
    ``"idx"`` (``paths`` = train images, train labels, test images, test labels) or ``"npz"``
    (``paths`` = the one archive). ``downloaded`` is true when the files were fetched just now.
    """

    dataset: str
    kind: Literal["data_dir", "cache", "keras"]
    format: Literal["idx", "npz"]
    paths: tuple[Path, ...]
    downloaded: bool = False

    @property
    def verified(self) -> bool:
        """Whether the files are checked against the registry's SHA-256 (not only structurally)."""
        return self.kind != "data_dir"

    def describe(self) -> str:
        where = {"data_dir": "data folder", "cache": "digitlab cache", "keras": "Keras cache (read-only)"}
        folder = self.paths[0].parent if self.format == "idx" else self.paths[0]
        check = "SHA-256 verified" if self.verified else "structure checked"
        what = "4 IDX files" if self.format == "idx" else "npz"
        fetched = ", downloaded just now" if self.downloaded else ""
        return f"{where[self.kind]} {folder} ({what}, {check}{fetched})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "format": self.format, "paths": [str(p) for p in self.paths],
                "verified": self.verified, "downloaded": self.downloaded, "description": self.describe()}


def _idx_paths(folder: Path) -> tuple[list[Path], list[str]]:
    """The four IDX files in ``folder`` (``.gz`` preferred, raw accepted) and the missing names."""
    found, missing = [], []
    for f in FILES:
        gz, raw = folder / f, folder / f.removesuffix(".gz")
        if gz.is_file():
            found.append(gz)
        elif raw.is_file():
            found.append(raw)
        else:
            missing.append(f)
    return found, missing


def _locate_data_dir(ds: Dataset, root: Path) -> Source | None:
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "does not exist"
        raise DataError(
            f"data folder {root} {problem}; point --data-dir or ${ENV_DATA_DIR} at a folder "
            f"holding {ds.name}/ with {', '.join(FILES)}"
        )
    found, missing = _idx_paths(root)
    if not missing:  # the files sit directly in the given folder
        if root.name == ds.name:
            return Source(ds.name, "data_dir", "idx", tuple(found))
        raise DataError(
            f"{root} holds the IDX files directly, but they must sit in {root / ds.name}/ "
            f"(MNIST and Fashion-MNIST share file names); move them there or name the folder {ds.name}"
        )
    folder = root / ds.name
    if folder.is_dir():
        found, missing = _idx_paths(folder)
        if not missing:
            return Source(ds.name, "data_dir", "idx", tuple(found))
        if (folder / ds.npz_name).is_file():
            return Source(ds.name, "data_dir", "npz", (folder / ds.npz_name,))
        if found:
            raise DataError(
                f"{folder} lacks {', '.join(missing)} (raw, uncompressed files without .gz are fine too)"
            )
        raise DataError(f"{folder} holds none of {', '.join(FILES)} (nor {ds.npz_name})")
    if (root / ds.npz_name).is_file():
        return Source(ds.name, "data_dir", "npz", (root / ds.npz_name,))
    return None


def _locate_cache(ds: Dataset, cache: Path) -> Source | None:
    folder = cache / ds.name
    paths = [folder / f for f in FILES]
    if all(p.is_file() for p in paths):
        return Source(ds.name, "cache", "idx", tuple(paths))
    if ds.npz_sha256 and (folder / ds.npz_name).is_file():
        return Source(ds.name, "cache", "npz", (folder / ds.npz_name,))
    return None


def _locate_keras(ds: Dataset) -> Source | None:
    name = KERAS_FILES.get(ds.name)
    if name and ds.npz_sha256 and (keras_dir() / name).is_file():
        return Source(ds.name, "keras", "npz", (keras_dir() / name,))
    return None


def locate(name: str = "mnist", data_dir: str | os.PathLike | None = None) -> Source | None:
    """Where :func:`load_data` would read ``name`` from without downloading; None if nowhere.

    Raises DataError when ``data_dir`` (or ``$DIGITLAB_DATA_DIR``) does not exist, or when it holds
    a ``<dataset>/`` folder with only some of the files. Checksums are checked when reading, not here.
    """
    ds = get_dataset(name)
    root = _data_dir(data_dir)
    if root is not None:
        found = _locate_data_dir(ds, root)
        if found:
            return found
    return _locate_cache(ds, cache_dir()) or _locate_keras(ds)


# --------------------------------------------------------------------------------------------
# reading


def read_source(source: Source) -> Arrays:
    """Read the arrays a :class:`Source` points at: structurally checked always, SHA-256 checked for
    the cache and the Keras cache (:class:`~digitlab.data.formats.ChecksumError` on a mismatch)."""
    ds = get_dataset(source.dataset)
    n = len(ds.classes)
    if source.format == "npz":
        sha = ds.npz_sha256 if source.verified else None
        a = read_npz(source.paths[0], sha, num_classes=n)
        return (a["x_train"], a["y_train"]), (a["x_test"], a["y_test"])
    sums = [ds.sha256[f] if source.verified else None for f in FILES]
    p = source.paths
    train = read_idx_pair(p[0], p[1], sums[0], sums[1], num_classes=n)
    test = read_idx_pair(p[2], p[3], sums[2], sums[3], num_classes=n)
    return train, test


# --------------------------------------------------------------------------------------------
# download


def _console(quiet: bool):
    if quiet:
        return None
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _yellow(text: str):
    from rich.text import Text

    return Text(text, style="yellow")


def _mirror_urls(ds: Dataset, mirrors: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(IDX base URLs, npz URLs). Overrides come from ``mirrors`` or ``$DIGITLAB_MIRRORS``; the
    built-in list adds the dataset's npz URL as a last resort."""
    if mirrors is None and os.environ.get(ENV_MIRRORS):
        mirrors = [m for m in re.split(r"[\s,]+", os.environ[ENV_MIRRORS]) if m]
    if mirrors is None:
        return list(ds.mirrors), [ds.npz_url] if ds.npz_url else []
    bases = [m if m.endswith("/") else m + "/" for m in mirrors if not m.endswith(".npz")]
    return bases, [m for m in mirrors if m.endswith(".npz")]


def _short_reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        reason = e.reason
        return f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    if isinstance(e, http.client.IncompleteRead):
        return f"connection cut after {len(e.partial):,} bytes"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ChecksumError):
        return "SHA-256 mismatch"
    if isinstance(e, DownloadError):
        return str(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _fetch(url: str, dest: Path, sha256: str, timeout: float, console, progress) -> None:
    """Download ``url`` to ``dest`` through a ``.part`` file in the same folder, renamed only once
    the SHA-256 matches. Raises on any failure; ``dest`` is then untouched and no ``.part`` is left."""
    if console is not None:
        console.print(f"Downloading {dest.name} from {url}", markup=False)
    request = urllib.request.Request(url, headers={"User-Agent": f"digitlab/{__version__}"})
    task = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp, atomic_open(dest) as f:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if progress is not None:
                task = progress.add_task(dest.name, total=total)
                progress.refresh()
            h = hashlib.sha256()
            received = 0
            while chunk := resp.read(1 << 16):
                h.update(chunk)
                f.write(chunk)
                received += len(chunk)
                if received > MAX_DOWNLOAD_BYTES:
                    raise DownloadError(f"sent more than {MAX_DOWNLOAD_BYTES:,} bytes")
                if task is not None:
                    progress.advance(task, len(chunk))
            if total is not None and received != total:
                raise DownloadError(f"connection cut after {received:,} of {total:,} bytes")
            if h.hexdigest() != sha256:
                raise ChecksumError(f"{url}: SHA-256 mismatch")
    finally:
        if task is not None:
            progress.remove_task(task)


def _fetch_any(urls: list[str], dest: Path, sha256: str, timeout: float, console, progress) -> list[str]:
    """Try each URL in turn; returns the list of failures (empty when one succeeded)."""
    failures: list[str] = []
    for i, url in enumerate(urls):
        try:
            _fetch(url, dest, sha256, timeout, console, progress)
            return []
        except (OSError, http.client.HTTPException, ValueError, DataError) as e:
            reason = _short_reason(e)
            failures.append(f"{url}: {reason}")
            if console is not None:
                then = "; trying the next mirror" if i + 1 < len(urls) else ""
                console.print(_yellow(f"  failed ({reason}){then}"))
    return failures or ["no mirror configured"]


def _cached_ok(path: Path, sha256: str) -> bool:
    try:
        check_sha256(read_file_bytes(path), sha256, str(path))
        return True
    except FormatError:
        return False


def _drop_corrupt(ds: Dataset, source: Source) -> None:
    """Delete the files of a cache source whose SHA-256 is wrong (only ever digitlab's own cache)."""
    assert source.kind == "cache"
    for p in source.paths:
        expected = ds.npz_sha256 if source.format == "npz" else ds.sha256[p.name]
        if expected and not _cached_ok(p, expected):
            p.unlink(missing_ok=True)


def download(
    name: str = "mnist",
    *,
    mirrors: Sequence[str] | None = None,
    quiet: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    data_dir: str | os.PathLike | None = None,
) -> Source:
    """Download ``name`` into the cache (files already there and verified are kept) and return its
    :class:`Source`. Tries the four IDX files from each mirror in turn, then an npz archive as a
    last resort. Every file is SHA-256 verified before it is renamed into the cache; the cache never
    holds a partial or unverified file. Raises DownloadError (one line, saying where to put the
    files by hand) when every mirror failed. ``data_dir`` only shapes that message."""
    ds = get_dataset(name)
    folder = cache_dir() / ds.name
    bases, npz_urls = _mirror_urls(ds, mirrors)
    console = _console(quiet)
    progress = None
    if console is not None and console.is_terminal:  # a bar only where someone watches; notices always
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)
    problems: list[str] = []
    with progress if progress is not None else contextlib.nullcontext():
        todo = [f for f in FILES if not ((folder / f).is_file() and _cached_ok(folder / f, ds.sha256[f]))]
        for f in todo:
            urls = [b + f for b in bases]
            failures = _fetch_any(urls, folder / f, ds.sha256[f], timeout, console, progress)
            if failures:
                problems.append(f"{f} ({'; '.join(failures)})")
                break
        if not problems:
            return Source(ds.name, "cache", "idx", tuple(folder / f for f in FILES), downloaded=True)
        if npz_urls and ds.npz_sha256:
            failures = _fetch_any(npz_urls, folder / ds.npz_name, ds.npz_sha256, timeout, console, progress)
            if not failures:
                return Source(ds.name, "cache", "npz", (folder / ds.npz_name,), downloaded=True)
            problems.append(f"{ds.npz_name} ({'; '.join(failures)})")
    raise DownloadError(
        f"could not download {ds.name}: {', '.join(problems)}; {where_to_put(ds.name, data_dir)}"
    )


def where_to_put(name: str = "mnist", data_dir: str | os.PathLike | None = None) -> str:
    """One sentence telling where to put a dataset's files by hand (used in error messages)."""
    ds = get_dataset(name)
    files = ", ".join(FILES)
    root = _data_dir(data_dir)
    if root is None:
        folder = cache_dir() / ds.name
    else:
        folder = root if root.name == ds.name else root / ds.name
    target = f"put {files} (gzipped or raw) in {folder}/"
    alt = (f", or put them in DIR/{ds.name}/ and set ${ENV_DATA_DIR}=DIR (or pass --data-dir DIR)"
           if root is None else "")
    npz = f"; a Keras-style {ds.npz_name} (x_train, y_train, x_test, y_test) works too"
    return target + alt + npz


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------------------------
# the public loader


def load_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    download_missing: bool = True,
    quiet: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[Arrays, Source]:
    """Like :func:`load_data`, and also return the :class:`Source` the arrays came from."""
    ds = get_dataset(name)
    source = locate(name, data_dir)
    console = _console(quiet)
    if source is not None:
        try:
            return read_source(source), source
        except ChecksumError as e:
            if source.kind == "keras":
                if console is not None:
                    console.print(_yellow(f"ignoring the Keras cache: {e}"))
            else:
                _drop_corrupt(ds, source)
                if console is not None:
                    then = "fetching it again" if download_missing and not _offline() else "downloads are off"
                    console.print(_yellow(f"{e}; deleted it, {then}"))
            if not download_missing or _offline():
                raise DataError(f"{e}; {where_to_put(name, data_dir)}") from None
    if not download_missing or _offline():
        raise DataError(f"no {ds.name} files found and downloads are off; {where_to_put(name, data_dir)}")
    source = download(name, mirrors=mirrors, quiet=quiet, timeout=timeout, data_dir=data_dir)
    return read_source(source), source


def load_data(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    download_missing: bool = True,
    quiet: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> Arrays:
    """Return ``(x_train, y_train), (x_test, y_test)`` as uint8 arrays, like Keras's ``load_data``.

    Images are (N, 28, 28) uint8, labels (N,) uint8. See the module docstring for where the files
    come from; ``download_missing=False`` (or ``$DIGITLAB_OFFLINE=1``) never touches the network,
    ``mirrors`` replaces the download URLs, ``quiet`` silences the download notices and progress.
    """
    arrays, _ = load_dataset(name, data_dir, mirrors=mirrors, download_missing=download_missing,
                             quiet=quiet, timeout=timeout)
    return arrays


# --------------------------------------------------------------------------------------------
# what the `digitlab data` commands report


@dataclass
class DataInfo:
    """Shapes, dtypes, class counts and pixel range of a loaded dataset, and where it came from."""

    dataset: str
    classes: tuple[str, ...]
    source: Source
    arrays: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    class_counts: dict[str, list[int]] = field(default_factory=dict)
    pixel_range: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "classes": list(self.classes),
            "arrays": {k: {"shape": list(s), "dtype": d} for k, (s, d) in self.arrays.items()},
            "class_counts": self.class_counts,
            "pixel_range": {k: list(v) for k, v in self.pixel_range.items()},
            "source": self.source.to_dict(),
        }


def describe_arrays(name: str, arrays: Arrays, source: Source) -> DataInfo:
    ds = get_dataset(name)
    (x_train, y_train), (x_test, y_test) = arrays
    info = DataInfo(ds.name, ds.classes, source)
    for key, a in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
        info.arrays[key] = (tuple(int(d) for d in a.shape), str(a.dtype))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        info.class_counts[split] = np.bincount(y, minlength=len(ds.classes)).astype(int).tolist()
        info.pixel_range[split] = (int(x.min()), int(x.max()))
    return info


def data_info(
    name: str = "mnist", data_dir: str | os.PathLike | None = None, **load_options: Any
) -> DataInfo:
    """Load a dataset and describe it (for ``digitlab data info``)."""
    arrays, source = load_dataset(name, data_dir, **load_options)
    return describe_arrays(name, arrays, source)


def _split_arrays(arrays: Arrays, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; choose train or test")
    return arrays[0] if split == "train" else arrays[1]


def first_samples(
    name: str = "mnist", split: str = "train", count: int = 10, data_dir: str | os.PathLike | None = None,
    **load_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` images and labels of a split."""
    if count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    x, y = _split_arrays(load_data(name, data_dir, **load_options), split)
    if count > len(x):
        raise ConfigError(f"--count {count} is more than the {len(x):,} images of the {split} split")
    return x[:count], y[:count]


def extract_pngs(
    images: np.ndarray, labels: np.ndarray, out_dir: str | os.PathLike, prefix: str = "train"
) -> list[Path]:
    """Write each image as ``{prefix}_{i}_label_{y}.png`` (8-bit grayscale, same size as the array,
    decoding it gives back the array byte for byte). Returns the paths in order."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    pairs = enumerate(zip(images, labels, strict=True))
    return [write_png(out / f"{prefix}_{i}_label_{int(y)}.png", x) for i, (x, y) in pairs]


@dataclass
class SplitInfo:
    """Shapes/dtypes after preprocessing: train, validation and test parts."""

    dataset: str
    val_fraction: float
    seed: int
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "val_split": self.val_fraction, "split_seed": self.seed,
                "parts": self.parts}


def split_info(
    name: str = "mnist", data_dir: str | os.PathLike | None = None, val_fraction: float = 0.2, seed: int = 42,
    **load_options: Any,
) -> SplitInfo:
    """Load, scale to float32 [0, 1] and hold out ``val_fraction`` of the training set exactly as
    sklearn's ``train_test_split(test_size=val_fraction, random_state=seed)`` would; report shapes."""
    from digitlab.data.preprocess import to_float, train_val_split

    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    (x_train, y_train), (x_test, y_test) = load_data(name, data_dir, **load_options)
    (xt, yt), (xv, yv) = train_val_split(x_train, y_train, val_fraction, seed)
    info = SplitInfo(get_dataset(name).name, val_fraction, seed)
    for part, x, y in (("train", xt, yt), ("validation", xv, yv), ("test", x_test, y_test)):
        xf = to_float(x)
        info.parts[part] = {
            "x_shape": list(xf.shape), "x_dtype": str(xf.dtype),
            "y_shape": list(y.shape), "y_dtype": str(y.dtype),
            "min": float(xf.min()), "max": float(xf.max()),
        }
    return info
