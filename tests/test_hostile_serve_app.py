"""The app's guard and error mapping, without a socket: work limit, Host check, 500s, typed picture errors."""

from __future__ import annotations

import asyncio
import warnings

import httpx
import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from test_hostile_server import HOSTILE_PNGS, good_png

from digitlab.errors import ImageError, ImageTooLargeError, NotAnImageError
from digitlab.serve import create_app
from digitlab.serve.guard import Guard
from digitlab.serve.server import allowed_hosts


class SlowPredictor:
    """A model that takes ``delay`` seconds (or fails): enough of the Predictor protocol for the server."""

    name = "slow"
    labels = [str(i) for i in range(10)]
    config: dict = {}
    metrics: dict = {}

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.calls = 0

    def predict_proba(self, x):
        self.calls += 1
        if self.fail and self.calls > 1:
            raise RuntimeError("secret internals")
        return np.full((len(x), 10), 0.1, np.float32)

    def activations(self, x):
        return {}


def test_work_limit_counts_requests_not_connections():
    gate = asyncio.Event()
    inside = 0

    async def app(scope, receive, send):
        nonlocal inside
        inside += 1
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def main():
        guarded = Guard(app, max_bytes=1000, max_in_flight=2)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://x") as c:
            first = [asyncio.create_task(c.get("/")) for _ in range(2)]
            while inside < 2:
                await asyncio.sleep(0.01)
            refused = await c.get("/")
            gate.set()
            done = await asyncio.gather(*first)
            after = await c.get("/")
        return refused, done, after

    refused, done, after = asyncio.run(main())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "busy" in refused.json()["detail"]
    assert [r.status_code for r in done] == [200, 200] and after.status_code == 200


def test_host_check_and_allow_host(tmp_path):
    p = SlowPredictor()
    hosts = allowed_hosts("127.0.0.1", ["digits.example"])
    with TestClient(create_app(tmp_path / "m.onnx", predictor=p, allowed_hosts=hosts),
                    base_url="http://evil.example") as c:
        r = c.get("/healthz")
        assert r.status_code == 400 and "'evil.example' is not allowed" in r.json()["detail"]
        assert c.get("/healthz", headers={"Host": "digits.example:8000"}).status_code == 200
        assert c.get("/healthz", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0") and "localhost" in allowed_hosts("0.0.0.0")
    with TestClient(create_app(tmp_path / "m.onnx", predictor=p, allowed_hosts=allowed_hosts("::", ["*"])),
                    base_url="http://anything.example") as c:
        assert c.get("/healthz").status_code == 200


def test_an_internal_error_is_json_and_closes_the_connection(tmp_path):
    with TestClient(create_app(tmp_path / "m.onnx", predictor=SlowPredictor(fail=True)),
                    raise_server_exceptions=False) as c:
        r = c.post("/api/predict", json={"pixels": [0] * 392 + [255] * 392})  # inked: blank pixels are 422
        assert r.status_code == 500 and r.headers["connection"] == "close"
        assert "secret" not in r.text and list(r.json()) == ["detail"]


def test_unknown_routes_and_head_answer_json(tmp_path):
    with TestClient(create_app(tmp_path / "m.onnx", predictor=SlowPredictor())) as c:
        assert c.head("/").status_code == 200 and c.head("/api/model").status_code == 200
        r = c.get("/nope")
        assert r.status_code == 404 and list(r.json()) == ["detail"]


@pytest.mark.parametrize("kind", sorted(HOSTILE_PNGS))
def test_every_decoder_failure_is_a_typed_picture_error(kind, tmp_path):
    from digitlab.data.pictures import load_digit

    with pytest.raises(NotAnImageError, match="cannot be read"):
        load_digit(HOSTILE_PNGS[kind])
    path = tmp_path / "x.png"
    path.write_bytes(HOSTILE_PNGS[kind])
    with pytest.raises(NotAnImageError, match=str(path)):
        load_digit(path)


def test_picture_error_classes_map_to_statuses(tmp_path):
    from test_serve_api import png_header_only

    from digitlab.data.pictures import load_digit

    with pytest.raises(ImageTooLargeError):
        load_digit(png_header_only(100_000, 100_000))
    with pytest.raises(NotAnImageError):
        load_digit(b"GIF89a not really")
    with pytest.raises(ImageError) as e:
        load_digit(np.zeros((28, 28), np.uint8).tobytes())
    assert e.value.http_status in (415, 422)
    with TestClient(create_app(tmp_path / "m.onnx", predictor=SlowPredictor())) as c:
        for data, status in [(png_header_only(100_000, 100_000), 413), (b"garbage", 415),
                             (HOSTILE_PNGS["iCCP"], 415), (good_png(), 200)]:
            r = c.post("/api/predict", content=data, headers={"Content-Type": "image/png"})
            assert r.status_code == status, r.text


def test_fifo_and_symlink_loop_are_reported_as_such(tmp_path):
    import os

    from digitlab.data.pictures import load_digit

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(NotAnImageError, match="not a regular file"):
        load_digit(fifo)
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ImageError, match="symbolic link loop"):
        load_digit(loop)
