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

import os
from collections.abc import Sequence

from digitlab.data.download import DEFAULT_TIMEOUT, download, drop_corrupt, notices, yellow
from digitlab.data.formats import ChecksumError
from digitlab.data.locate import Source, locate, read_source, where_to_put
from digitlab.data.registry import Arrays, get_dataset
from digitlab.errors import DataError

ENV_OFFLINE = "DIGITLAB_OFFLINE"


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
    console = notices(quiet)
    if source is not None:
        try:
            return read_source(source), source
        except ChecksumError as e:
            if source.kind == "keras":
                if console is not None:
                    console.print(yellow(f"ignoring the Keras cache: {e}"))
            else:
                drop_corrupt(ds, source)
                if console is not None:
                    then = "fetching it again" if download_missing and not _offline() else "downloads are off"
                    console.print(yellow(f"{e}; deleted it, {then}"))
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

