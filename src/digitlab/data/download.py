"""The verified download into digitlab's cache: each file from the dataset's mirrors in turn
(``urllib`` only), through a temporary file renamed only once its SHA-256 matches."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.text import Text

from digitlab import __version__
from digitlab.data.formats import ChecksumError, atomic_open, check_sha256, read_file_bytes
from digitlab.data.locate import Source, cache_dir, where_to_put
from digitlab.data.registry import FILES, Dataset, get_dataset
from digitlab.errors import DataError, DownloadError, FormatError

ENV_MIRRORS = "DIGITLAB_MIRRORS"
DEFAULT_TIMEOUT = 30.0  # seconds without progress (connect or read) before a mirror counts as failed
MAX_DOWNLOAD_BYTES = 200_000_000  # no file of the registry comes close (Fashion-MNIST's largest: 26 MB)


def notices(quiet: bool):
    """A rich console on stderr for download notices, or None when ``quiet``."""
    if quiet:
        return None
    return Console(stderr=True, highlight=False, soft_wrap=True)


def yellow(text: str) -> Text:
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
                console.print(yellow(f"  failed ({reason}){then}"))
    return failures or ["no mirror configured"]


def _cached_ok(path: Path, sha256: str) -> bool:
    try:
        check_sha256(read_file_bytes(path), sha256, str(path))
        return True
    except FormatError:
        return False


def drop_corrupt(ds: Dataset, source: Source) -> None:
    """Delete the files of a cache source whose SHA-256 is wrong (only ever digitlab's own cache)."""
    if source.kind != "cache":
        raise ValueError(f"only digitlab's own cache is ever cleaned, not the {source.kind}")
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
    console = notices(quiet)
    progress = None
    if console is not None and console.is_terminal:  # a bar only where someone watches; notices always
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

