"""Where a dataset's files are: the user's data folder, digitlab's cache or Keras's cache (no download
here), and reading the arrays a place holds. See :mod:`digitlab.data.datasets` for the order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from digitlab.data.formats import read_idx_pair, read_npz
from digitlab.data.registry import FILES, KERAS_FILES, Arrays, Dataset, get_dataset
from digitlab.errors import DataError

ENV_DATA_DIR = "DIGITLAB_DATA_DIR"
ENV_CACHE_DIR = "DIGITLAB_CACHE_DIR"


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

