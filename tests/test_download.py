"""The verified download against a server the test starts on 127.0.0.1; never the real network.

The server serves a tiny synthetic dataset (four IDX .gz files and an npz) whose checksums the
test registers, under prefixes that fail in different ways: ``/bad/`` (wrong bytes, same length),
``/cut/`` (connection closed half-way through the body), ``/404/``, ``/slow/`` (answers after the
client's timeout) and ``/good/``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import isolate_data_env

from digitlab.data.datasets import load_data, load_dataset
from digitlab.data.formats import idx_bytes, write_npz
from digitlab.data.registry import DATASETS, FILES, Dataset
from digitlab.errors import DataError, DownloadError

TINY = "tiny"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_files(tmp: Path) -> tuple[dict[str, bytes], tuple]:
    import gzip

    rng = np.random.default_rng(5)
    x_train = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    y_train = (np.arange(30) % 10).astype(np.uint8)
    x_test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    y_test = (np.arange(10)[::-1] % 10).astype(np.uint8)
    arrays = ((x_train, y_train), (x_test, y_test))
    files = {f: gzip.compress(idx_bytes(a), mtime=0)
             for f, a in zip(FILES, (x_train, y_train, x_test, y_test), strict=True)}
    npz = write_npz(tmp / "tiny.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    files["tiny.npz"] = npz.read_bytes()
    return files, arrays


class Server:
    """A local HTTP server in a thread; ``requests`` records every path asked for."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                _, mode, name = self.path.split("/", 2)
                body = server.files.get(name)
                try:
                    if body is None or mode == "404":
                        self.send_error(404, "Not Found")
                        return
                    if mode == "slow":
                        time.sleep(1.0)
                    if mode == "bad":
                        body = body[:-10] + bytes(b ^ 0x55 for b in body[-10:])
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
                    self.close_connection = True
                except OSError:  # the client gave up (timeout): nothing to do
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def mirror(self, mode: str) -> str:
        return f"{self.url}/{mode}/"

    def asked(self, mode: str) -> list[str]:
        return [p.split("/", 2)[2] for p in self.requests if p.startswith(f"/{mode}/")]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    isolate_data_env(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    files, arrays = tiny_files(tmp_path_factory.mktemp("served"))
    server = Server(files)
    server.thread.start()
    yield server, files, arrays
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def server(served, monkeypatch) -> Server:
    srv, files, _ = served
    srv.requests.clear()
    ds = Dataset(name=TINY, classes=tuple(str(i) for i in range(10)),
                 sha256={f: sha(files[f]) for f in FILES}, mirrors=(srv.mirror("good"),),
                 npz_sha256=sha(files["tiny.npz"]))
    monkeypatch.setitem(DATASETS, TINY, ds)
    return srv


@pytest.fixture
def arrays(served):
    return served[2]


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache" / TINY


def assert_cache_verified(folder: Path, expect: list[str]) -> None:
    """The cache folder holds exactly ``expect``, each matching the registry's SHA-256; no .part files."""
    ds = DATASETS[TINY]
    names = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert names == sorted(expect)
    for name in names:
        want = ds.npz_sha256 if name.endswith(".npz") else ds.sha256[name]
        assert sha((folder / name).read_bytes()) == want, name


def assert_arrays(got, want):
    for (xg, yg), (xw, yw) in zip(got, want, strict=True):
        assert xg.dtype == np.uint8 and yg.dtype == np.uint8
        np.testing.assert_array_equal(xg, xw)
        np.testing.assert_array_equal(yg, yw)


def test_good_mirror(server, arrays, cache):
    got, src = load_dataset(TINY, mirrors=[server.mirror("good")], quiet=True)
    assert_arrays(got, arrays)
    assert (src.kind, src.format, src.downloaded) == ("cache", "idx", True)
    assert src.paths == tuple(cache / f for f in FILES)
    assert server.asked("good") == list(FILES)
    assert_cache_verified(cache, list(FILES))
    # the second load reads the (verified) cache and asks the server for nothing
    server.requests.clear()
    got, src = load_dataset(TINY, mirrors=[server.mirror("good")], quiet=True)
    assert (src.kind, src.downloaded) == ("cache", False)
    assert server.requests == []
    assert_arrays(got, arrays)


def test_registry_mirrors_are_used_without_an_override(server, arrays, cache):
    assert_arrays(load_data(TINY, quiet=True), arrays)
    assert server.asked("good") == list(FILES)


def test_mirrors_from_the_environment(server, arrays, cache, monkeypatch):
    monkeypatch.setenv("DIGITLAB_MIRRORS", f"{server.url}/404, {server.url}/good")  # no trailing slashes
    assert_arrays(load_data(TINY, quiet=True), arrays)
    assert server.asked("404") == list(FILES) and server.asked("good") == list(FILES)


def test_bad_checksum_then_good_mirror(server, arrays, cache):
    got = load_data(TINY, mirrors=[server.mirror("bad"), server.mirror("good")], quiet=True)
    assert_arrays(got, arrays)
    assert server.asked("bad") == list(FILES) and server.asked("good") == list(FILES)
    assert_cache_verified(cache, list(FILES))


def test_connection_cut_mid_file_then_good_mirror(server, arrays, cache):
    got = load_data(TINY, mirrors=[server.mirror("cut"), server.mirror("good")], quiet=True)
    assert_arrays(got, arrays)
    assert server.asked("cut") == list(FILES)
    assert_cache_verified(cache, list(FILES))


def test_http_error_refused_connection_and_timeout_then_good_mirror(server, arrays, cache, capsys):
    refused = "http://127.0.0.1:9/"  # nothing listens on the discard port
    mirrors = [server.mirror("404"), refused, server.mirror("slow"), server.mirror("good")]
    got, src = load_dataset(TINY, mirrors=mirrors, timeout=0.2)
    assert_arrays(got, arrays)
    err = capsys.readouterr().err
    assert err.count("failed (HTTP 404 Not Found); trying the next mirror") == 4
    assert err.count("failed (ConnectionRefusedError: ") == 4
    assert err.count("failed (timed out); trying the next mirror") == 4
    assert server.asked("404") == list(FILES) and server.asked("slow") == list(FILES)
    assert_cache_verified(cache, list(FILES))


def test_all_mirrors_failing(server, cache, tmp_path):
    mirrors = [server.mirror("bad"), server.mirror("cut"), server.mirror("404")]
    with pytest.raises(DownloadError) as e:
        load_data(TINY, mirrors=mirrors, quiet=True)
    msg = str(e.value)
    assert "\n" not in msg
    f = FILES[0]
    assert msg.startswith(
        f"could not download tiny: {f} ({server.url}/bad/{f}: SHA-256 mismatch; "
        f"{server.url}/cut/{f}: connection cut after {len(server.files[f]) // 2:,} of "
        f"{len(server.files[f]):,} bytes; "
    )
    assert f"{server.url}/404/{f}: HTTP 404 Not Found); put {', '.join(FILES)} (gzipped or raw) in {cache}/" \
        in msg
    assert "set $DIGITLAB_DATA_DIR=DIR" in msg
    assert server.asked("404") == [f]  # stops at the first file that no mirror has
    assert_cache_verified(cache, [])  # no file, no .part leftovers
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_all_mirrors_failing_is_a_data_error_with_the_users_folder(server, tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError) as e:
        load_data(TINY, tmp_path / "mine", mirrors=[server.mirror("404")], quiet=True)
    assert f"(gzipped or raw) in {tmp_path / 'mine' / TINY}/; a Keras-style tiny.npz" in str(e.value)


def test_corrupt_cached_file_is_fetched_again(server, arrays, cache):
    load_data(TINY, mirrors=[server.mirror("good")], quiet=True)
    bad = cache / FILES[2]
    data = bad.read_bytes()
    bad.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])  # one flipped bit, same size
    server.requests.clear()
    got, src = load_dataset(TINY, mirrors=[server.mirror("good")], quiet=True)
    assert_arrays(got, arrays)
    assert src.downloaded and server.asked("good") == [FILES[2]]  # only the corrupt one
    assert_cache_verified(cache, list(FILES))


def test_truncated_cached_file_is_fetched_again(server, arrays, cache):
    load_data(TINY, mirrors=[server.mirror("good")], quiet=True)
    (cache / FILES[0]).write_bytes((cache / FILES[0]).read_bytes()[:50])
    server.requests.clear()
    assert_arrays(load_data(TINY, mirrors=[server.mirror("good")], quiet=True), arrays)
    assert server.asked("good") == [FILES[0]]
    assert_cache_verified(cache, list(FILES))


def test_corrupt_cached_file_with_all_mirrors_down(server, cache):
    load_data(TINY, mirrors=[server.mirror("good")], quiet=True)
    (cache / FILES[1]).write_bytes(b"garbage")
    with pytest.raises(DownloadError, match="^could not download tiny: train-labels-idx1-ubyte.gz"):
        load_data(TINY, mirrors=[server.mirror("404")], quiet=True)
    assert_cache_verified(cache, [FILES[0], FILES[2], FILES[3]])  # the garbage is gone


def test_partial_cache_downloads_only_what_is_missing(server, arrays, cache):
    load_data(TINY, mirrors=[server.mirror("good")], quiet=True)
    (cache / FILES[3]).unlink()
    server.requests.clear()
    assert_arrays(load_data(TINY, mirrors=[server.mirror("good")], quiet=True), arrays)
    assert server.asked("good") == [FILES[3]]


def test_npz_is_the_last_resort(server, arrays, cache):
    got, src = load_dataset(TINY, mirrors=[server.mirror("404"), f"{server.url}/good/tiny.npz"], quiet=True)
    assert_arrays(got, arrays)
    assert (src.kind, src.format, src.paths) == ("cache", "npz", (cache / "tiny.npz",))
    assert_cache_verified(cache, ["tiny.npz"])
    server.requests.clear()
    assert load_dataset(TINY, quiet=True)[1].format == "npz"  # found in the cache next time
    assert server.requests == []


def test_bad_npz_is_rejected(server, cache):
    with pytest.raises(DownloadError) as e:
        load_data(TINY, mirrors=[server.mirror("404"), f"{server.url}/bad/tiny.npz"], quiet=True)
    assert str(e.value).startswith(f"could not download tiny: {FILES[0]} (")
    assert f"tiny.npz ({server.url}/bad/tiny.npz: SHA-256 mismatch); put " in str(e.value)
    assert_cache_verified(cache, [])


def test_download_says_so_on_stderr(server, cache, capsys):
    load_data(TINY, mirrors=[server.mirror("404"), server.mirror("good")])
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert f"Downloading {FILES[0]} from {server.url}/404/{FILES[0]}" in err
    assert "failed (HTTP 404 Not Found); trying the next mirror" in err
    assert f"Downloading {FILES[3]} from {server.url}/good/{FILES[3]}" in err


def test_quiet_download_prints_nothing(server, cache, capsys):
    load_data(TINY, mirrors=[server.mirror("good")], quiet=True)
    assert capsys.readouterr() == ("", "")


def test_progress_bar_on_a_terminal(server, arrays, cache, monkeypatch):
    import io

    from rich.console import Console

    from digitlab.data import download

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, highlight=False, soft_wrap=True)
    monkeypatch.setattr(download, "notices", lambda quiet: None if quiet else console)
    assert_arrays(load_data(TINY, mirrors=[server.mirror("cut"), server.mirror("good")]), arrays)
    text = screen.getvalue()
    assert f"Downloading {FILES[0]} from {server.url}/cut/{FILES[0]}" in text
    size = len(server.files[FILES[0]])
    assert f"failed (connection cut after {size // 2:,} of {size:,} bytes); trying the next mirror" in text
    assert "━━━━" in text and "0.0/23.6 kB" in text  # the progress bar was drawn (bar, bytes done/total)
    assert_cache_verified(cache, list(FILES))


def test_oversized_download_is_cut_off(server, cache, monkeypatch):
    from digitlab.data import download

    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 1000)
    with pytest.raises(DownloadError) as e:
        load_data(TINY, mirrors=[server.mirror("good")], quiet=True)
    assert str(e.value).startswith(
        f"could not download tiny: {FILES[0]} ({server.url}/good/{FILES[0]}: sent more than 1,000 bytes); "
    )
    assert_cache_verified(cache, [])
