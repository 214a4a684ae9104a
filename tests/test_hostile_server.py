"""A live ``digitlab serve`` on 127.0.0.1 under hostile and unlucky clients (bounded in count and time).

Slow and half-open clients, oversized headers, foreign Host names, hostile PNGs on a kept-alive
connection, and a 32-client mixed load in which no good request may fail.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 5.0  # the default; the 600 half-open connections are all opened well within it
BODY_TIMEOUT = 2.0


# -- pictures -------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def good_png() -> bytes:
    a = np.zeros((28, 28), np.uint8)
    a[5:23, 12:16] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def png_with(*chunks: bytes) -> bytes:
    """A good PNG with extra chunks right after its header."""
    data = good_png()
    return data[:33] + b"".join(chunks) + data[33:]


_BOMB = zlib.compress(b"a" * (3 << 20), 9)  # 3 MB of text in 3 kB: past Pillow's 1 MB text-chunk limit

HOSTILE_PNGS = {
    "zTXt": png_with(_chunk(b"zTXt", b"Comment\0\0" + _BOMB)),
    "iTXt": png_with(_chunk(b"iTXt", b"Comment\0\1\0\0\0" + _BOMB)),
    "iCCP": png_with(_chunk(b"iCCP", b"icc\0\0" + _BOMB)),
}


# -- the server -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(mlp_run):
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", str(mlp_run), "--port", "0", "-q",
                             "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()
        port = int(url.rsplit(":", 1)[1].strip("/"))
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, _ = request(port, "GET", "/healthz")
                assert status == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            conn: http.client.HTTPConnection | None = None, timeout: float = 10):
    """(status, headers, parsed JSON body or raw bytes) over ``conn`` or a fresh connection."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        if r.getheader("content-type", "").startswith("application/json") and data:
            return r.status, r, json.loads(data)
        return r.status, r, data
    finally:
        if conn is None:
            c.close()


def raw(port: int, data: bytes, timeout: float = 10) -> tuple[bytes, float]:
    """Send ``data``, read until the server closes; (what came back, seconds it took)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                got = s.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            chunks.append(got)
    return b"".join(chunks), time.monotonic() - t0


def status_and_json(response: bytes) -> tuple[int, dict, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head.lower(), response[:300]
    return status, json.loads(body), head.lower()


# -- slow and half-open clients -------------------------------------------------------------------


def test_600_half_open_requests_do_not_shut_out_a_good_client(server):
    held: list[socket.socket] = []
    try:
        for _ in range(600):
            s = socket.create_connection(("127.0.0.1", server), timeout=10)
            s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n")
            held.append(s)
        t0 = time.monotonic()
        status, r, body = request(server, "POST", "/api/predict", good_png(), {"Content-Type": "image/png"},
                                  timeout=3)
        assert time.monotonic() - t0 < 3
        assert status == 200 and r.getheader("content-type") == "application/json"
        assert body["label"] in range(10)
        # and the half-open ones are cut off (408 JSON, connection closed) once their header time is up
        s = held[0]
        s.settimeout(HEADER_TIMEOUT + 8)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        status, body, head = status_and_json(got)
        assert status == 408 and "headers did not arrive" in body["detail"] and b"connection: close" in head
    finally:
        for s in held:
            s.close()


def test_a_silent_connection_is_closed(server):
    with socket.create_connection(("127.0.0.1", server), timeout=HEADER_TIMEOUT + 8) as s:
        t0 = time.monotonic()
        got = s.recv(65536)
        status, _, _ = status_and_json(got)
        assert status == 408 and time.monotonic() - t0 < HEADER_TIMEOUT + 5
        assert s.recv(10) == b""


def test_headers_sent_a_byte_at_a_time_are_cut_off(server):
    with socket.create_connection(("127.0.0.1", server), timeout=HEADER_TIMEOUT + 8) as s:
        t0 = time.monotonic()
        line = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
        try:
            for byte in line:
                s.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass
        got = s.recv(65536)
        assert status_and_json(got)[0] == 408 and time.monotonic() - t0 < HEADER_TIMEOUT + 5


def test_a_stalled_second_request_on_a_kept_alive_connection_gets_408(server):
    with socket.create_connection(("127.0.0.1", server), timeout=HEADER_TIMEOUT + 8) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and never the blank line
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        status, body, head = status_and_json(got)
        assert status == 408 and b"connection: close" in head


def test_a_body_shorter_than_its_content_length_is_cut_off(server):
    got, seconds = raw(server, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                               b"Content-Length: 1000\r\n\r\n" + good_png()[:50])
    status, body, head = status_and_json(got)
    assert status == 408 and "body did not arrive" in body["detail"] and b"connection: close" in head
    assert seconds < BODY_TIMEOUT + 5


# -- refusals, all JSON ---------------------------------------------------------------------------


def test_a_200_kb_header_is_refused(server):
    got, _ = raw(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    status, body, head = status_and_json(got)
    assert status == 431 and "larger than" in body["detail"] and b"connection: close" in head


def test_a_malformed_request_gets_json(server):
    got, _ = raw(server, b"NOT HTTP AT ALL\r\n\r\n")
    status, body, _ = status_and_json(got)
    assert status == 400 and "malformed HTTP request" in body["detail"]


def test_foreign_host_names_are_refused(server):
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):
        status, _, body = request(server, "GET", "/api/model", headers={"Host": host})
        assert status == 400 and "is not allowed" in body["detail"] and "--allow-host" in body["detail"]
    for host in (f"127.0.0.1:{server}", f"localhost:{server}", "localhost", "[::1]:80"):
        assert request(server, "GET", "/healthz", headers={"Host": host})[0] == 200, host


def test_head_works_where_get_does(server):
    for path in ("/", "/healthz", "/api/model", "/static/app.js"):
        get_status, get_r, _ = request(server, "GET", path)
        status, r, body = request(server, "HEAD", path)
        assert status == get_status == 200 and body == b"", path
        assert r.getheader("content-length") == get_r.getheader("content-length"), path


@pytest.mark.parametrize("kind", sorted(HOSTILE_PNGS))
def test_hostile_png_then_good_one_on_one_keep_alive_connection(server, kind):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    try:
        status, r, body = request(server, "POST", "/api/predict", HOSTILE_PNGS[kind],
                                  {"Content-Type": "image/png"}, conn=conn)
        assert 400 <= status < 500 and "cannot be read" in body["detail"], body
        assert r.getheader("connection") != "close"
        status, _, body = request(server, "POST", "/api/predict", good_png(), {"Content-Type": "image/png"},
                                  conn=conn)
        assert status == 200 and body["label"] in range(10)
    finally:
        conn.close()


def test_32_client_mixed_load_no_good_request_fails(server):
    good, png = [], good_png()
    bad_requests = [(HOSTILE_PNGS["zTXt"], "image/png"), (b"\x89PNG garbage", "image/png"),
                    (b"{not json", "application/json"), (b"x" * 100, "text/plain")]
    failures: list[str] = []
    deadline = time.monotonic() + 60

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=20)
        try:
            for j in range(12):
                if time.monotonic() > deadline:
                    return
                if (i + j) % 3:
                    status, _, body = request(server, "POST", "/api/predict", png, {"Content-Type": "image/png"},
                                              conn=conn)
                    if status != 200 or not isinstance(body, dict) or "label" not in body:
                        failures.append(f"good request got {status}: {body!r:.200}")
                    else:
                        good.append(1)
                else:
                    data, kind = bad_requests[(i + j) % len(bad_requests)]
                    status, _, body = request(server, "POST", "/api/predict", data, {"Content-Type": kind},
                                              conn=conn)
                    if not (400 <= status < 500 and isinstance(body, dict) and "detail" in body):
                        failures.append(f"bad request got {status}: {body!r:.200}")
        except Exception as e:  # a dropped connection is a failure too
            failures.append(f"client {i}: {type(e).__name__}: {e}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not failures, failures[:5]
    assert len(good) >= 200


def test_two_workers_start_and_guard_the_same_way(mlp_run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", str(mlp_run), "--port", str(port), "-q",
                             "--workers", "2", "--allow-host", "digits.example"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                assert request(port, "GET", "/healthz")[0] == 200
                break
            except (OSError, http.client.HTTPException):
                assert proc.poll() is None, proc.stderr.read()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert request(port, "GET", "/healthz", headers={"Host": "digits.example"})[0] == 200
        assert request(port, "GET", "/healthz", headers={"Host": "evil.example"})[0] == 400
        got, _ = raw(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        assert status_and_json(got)[0] == 431
    finally:
        proc.terminate()
        proc.wait(timeout=30)
