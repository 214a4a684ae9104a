"""The REST API (digitlab.serve) through FastAPI's TestClient: every endpoint and every hostile input."""

from __future__ import annotations

import http.client
import io
import json
import os
import struct
import subprocess
import sys
import time
import urllib.request
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns about its httpx dependency
    from fastapi.testclient import TestClient

from digitlab.data.pictures import load_digit, to_mnist
from digitlab.inference.detector import THRESHOLD
from digitlab.inference.predictor import load_predictor
from digitlab.serve import create_app
from digitlab.serve.app import ENV_MAX_UPLOAD, ENV_MODEL, ENV_THREADS, create_app_from_env

# -- pictures made in the test --------------------------------------------------------------------


def png(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def seven(size: int = 280, ink: int = 255, paper: int = 0) -> bytes:
    """A '7' drawn like on the page's canvas: white strokes on black."""
    im = Image.new("L", (size, size), paper)
    d = ImageDraw.Draw(im)
    s = size / 280
    points = [(70 * s, 60 * s), (210 * s, 60 * s), (120 * s, 230 * s)]
    d.line(points, fill=ink, width=int(18 * s), joint="curve")
    return png(im)


def one_photo() -> bytes:
    """A dark '1' on light grey paper (like a photo of a digit), as JPEG-free RGB PNG."""
    im = Image.new("RGB", (120, 160), (225, 222, 215))
    ImageDraw.Draw(im).line([(62, 25), (58, 135)], fill=(30, 30, 40), width=9)
    return png(im)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (no pixel data at all)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def bar_pixels() -> np.ndarray:
    """A vertical bar (a '1') as 28x28 uint8, white on black."""
    x = np.zeros((28, 28), np.uint8)
    x[5:23, 13:16] = 255
    x[5:23, 12] = 90
    return x


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_predictor(mlp_run):
    return load_predictor(mlp_run)


@pytest.fixture(scope="module")
def client(mlp_run, mlp_predictor):
    with TestClient(create_app(mlp_run, predictor=mlp_predictor)) as c:
        yield c


@pytest.fixture(scope="module")
def cnn_predictor(cnn_run):
    return load_predictor(cnn_run)


@pytest.fixture(scope="module")
def cnn_client(cnn_run, cnn_predictor):
    with TestClient(create_app(cnn_run, predictor=cnn_predictor)) as c:
        yield c


def assert_prediction(body: dict, predictor, expected_input: np.ndarray) -> None:
    """A prediction body is internally consistent and equals the predictor's own answer on that input."""
    assert set(body) == {"label", "name", "confidence", "probabilities", "top3", "input", "model_ms",
                         "activations", "is_digit", "digit_score", "number", "number_confidence", "digits"}
    seen = np.array(body["input"])
    assert seen.shape == (28, 28)
    assert seen.min() >= 0 and seen.max() <= 255
    np.testing.assert_array_equal(seen.astype(np.uint8), expected_input)
    probs = np.array(body["probabilities"])
    assert probs.shape == (10,)
    assert abs(probs.sum() - 1.0) < 1e-5
    want = predictor.predict_proba(expected_input[None])[0]
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-6)
    assert body["is_digit"] == (body["digit_score"] >= THRESHOLD)  # label and name null when not a digit
    assert body["label"] == (int(np.argmax(want)) if body["is_digit"] else None)
    assert body["name"] == (None if body["label"] is None else str(body["label"]))
    assert body["confidence"] == probs[int(np.argmax(want))]
    assert [t["label"] for t in body["top3"]] == list(np.argsort(-want, kind="stable")[:3])
    assert [t["probability"] for t in body["top3"]] == sorted((t["probability"] for t in body["top3"]),
                                                              reverse=True)
    assert body["model_ms"] >= 0


def assert_error(r, status: int, *phrases: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str)
    assert "Traceback" not in r.text and 'File "' not in r.text
    for phrase in phrases:
        assert phrase in body["detail"], body["detail"]
    return body["detail"]


# -- service endpoints ----------------------------------------------------------------------------


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": "mlp"}


def test_model_info_mlp(client, mlp_run):
    info = client.get("/api/model").json()
    assert info["name"] == "mlp"
    assert info["source"] == "run"
    assert info["dataset"] == "mnist"
    assert info["labels"] == [str(i) for i in range(10)]
    assert info["parameters"] == 109_386
    rows = info["architecture"]
    assert [r["name"] for r in rows] == ["flatten", "dense", "act", "dense_1", "act_1", "dense_2"]
    assert [r["kind"] for r in rows] == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [r["params"] for r in rows] == [0, 100_480, 0, 8_256, 0, 650]
    assert rows[1]["output_shape"] == [None, 128]
    metrics = json.loads((mlp_run / "metrics.json").read_text())
    assert info["test_accuracy"] == metrics["test_accuracy"]
    assert info["activation_layers"] == [{"name": "act", "shape": [128], "follows": "dense"},
                                         {"name": "act_1", "shape": [64], "follows": "dense_1"}]
    assert info["max_upload_bytes"] == 4_000_000
    assert info["max_batch"] == 64


def test_model_info_cnn(cnn_client):
    info = cnn_client.get("/api/model").json()
    assert info["name"] == "cnn"
    assert info["parameters"] == 225_034
    assert info["architecture"][0] == {"name": "conv2d", "kind": "Conv2d", "output_shape": [None, 26, 26, 32],
                                       "params": 320}
    assert [a["shape"] for a in info["activation_layers"]] == [[32, 26, 26], [64, 11, 11], [128]]


def test_openapi_describes_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/predict/batch", "/api/model", "/healthz"} <= set(spec["paths"])
    predict = spec["paths"]["/api/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"multipart/form-data", "image/png", "image/jpeg",
                                                      "application/json"}
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"] == "#/components/schemas/Prediction"
    assert {"413", "415", "422"} <= set(predict["responses"])
    assert {"activations", "act_format", "layers", "reject", "single"} <= {p["name"] for p in predict["parameters"]}
    schemas = spec["components"]["schemas"]
    names = {"Prediction", "PixelsRequest", "ModelInfo", "BatchResponse", "Health", "ErrorBody"}
    assert names <= set(schemas)
    pixels_ref = predict["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert pixels_ref == "#/components/schemas/PixelsRequest"
    assert schemas["PixelsRequest"]["properties"]["scale"]["enum"] == ["byte", "unit"]
    batch = spec["paths"]["/api/predict/batch"]["post"]
    assert list(batch["requestBody"]["content"]) == ["multipart/form-data"]
    assert "/" not in spec["paths"] and "/static" not in spec["paths"]


def test_docs_page_is_served(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assert "swagger" in r.text.lower() and "/openapi.json" in r.text


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for needle in ('id="pad"', 'id="prediction"', 'id="bars"', 'id="activations"', 'id="seen"',
                   'type="file"', "/static/app.js", "/static/style.css"):
        assert needle in r.text
    assert "http://" not in r.text.replace("http://www.w3.org", "") and "https://" not in r.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "/api/predict?activations=1" in js.text and "pointermove" in js.text
    css = client.get("/static/style.css")
    assert css.status_code == 200 and "touch-action: none" in css.text
    assert client.get("/static/nope.js").status_code == 404


# -- /api/predict with pictures -------------------------------------------------------------------


def test_predict_raw_png_body_matches_digitlab_predict_preprocessing(client, mlp_predictor):
    data = seven()
    r = client.post("/api/predict", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_prediction(body, mlp_predictor, load_digit(data))
    assert body["activations"] is None


def test_predict_multipart_png_equals_raw_body(client, mlp_predictor):
    data = one_photo()
    r = client.post("/api/predict", files={"file": ("one.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_prediction(body, mlp_predictor, load_digit(data))
    raw = client.post("/api/predict", content=data, headers={"Content-Type": "application/octet-stream"})
    raw = raw.json()
    assert raw["probabilities"] == body["probabilities"] and raw["input"] == body["input"]


def test_predict_activations_mlp(client, mlp_predictor):
    data = seven()
    r = client.post("/api/predict?activations=1", content=data, headers={"Content-Type": "image/png"})
    acts = r.json()["activations"]
    assert list(acts) == ["act", "act_1"]
    assert np.array(acts["act"]).shape == (128,)
    assert np.array(acts["act_1"]).shape == (64,)
    want = mlp_predictor.activations(load_digit(data)[None])
    for name in acts:
        got = np.array(acts[name])
        assert got.min() >= 0  # ReLU
        np.testing.assert_allclose(got, want[name][0], atol=6e-5)


def test_predict_activations_cnn(cnn_client, cnn_predictor):
    data = seven()
    r = cnn_client.post("/api/predict", params={"activations": "true"}, content=data,
                        headers={"Content-Type": "image/png"})
    body = r.json()
    assert_prediction({**body, "activations": None}, cnn_predictor, load_digit(data))
    shapes = {k: np.array(v).shape for k, v in body["activations"].items()}
    assert shapes == {"act": (32, 26, 26), "act_1": (64, 11, 11), "act_2": (128,)}
    want = cnn_predictor.activations(load_digit(data)[None])["act"][0]
    np.testing.assert_allclose(np.array(body["activations"]["act"]), want, atol=6e-5)


# -- /api/predict with JSON pixels ----------------------------------------------------------------


def test_predict_json_28x28_and_flat_784_agree(client, mlp_predictor):
    x = bar_pixels()
    nested = client.post("/api/predict", json={"pixels": x.tolist()})
    flat = client.post("/api/predict", json={"pixels": x.ravel().tolist()})
    assert nested.status_code == flat.status_code == 200
    assert_prediction(nested.json(), mlp_predictor, x)  # taken as the model input as-is
    assert flat.json()["probabilities"] == nested.json()["probabilities"]


def test_predict_json_unit_scale(client, mlp_predictor):
    x = bar_pixels()
    r = client.post("/api/predict", json={"pixels": (x / 255.0).tolist(), "scale": "unit"})
    assert r.status_code == 200, r.text
    body = r.json()
    np.testing.assert_array_equal(np.array(body["input"]), x)
    want = mlp_predictor.predict_proba((x / 255.0).astype(np.float32)[None])[0]
    np.testing.assert_allclose(body["probabilities"], want, atol=1e-6)


def test_predict_json_preprocess_centres_like_a_picture(client, mlp_predictor):
    x = np.zeros((28, 28), np.uint8)
    x[2:12, 2:5] = 255  # a small stroke in a corner
    r = client.post("/api/predict", json={"pixels": x.tolist(), "preprocess": True})
    assert r.status_code == 200, r.text
    expected = to_mnist(x)
    assert_prediction(r.json(), mlp_predictor, expected)
    assert not np.array_equal(expected, x)


def test_predict_json_rounds_byte_values(client):
    x = bar_pixels().astype(float)
    x[0, 0] = 0.4
    x[0, 1] = 254.6
    body = client.post("/api/predict", json={"pixels": x.tolist()}).json()
    assert body["input"][0][:2] == [0, 255]


# -- hostile input --------------------------------------------------------------------------------


def test_body_over_default_limit_is_413(client):
    r = client.post("/api/predict", content=b"\0" * 5_000_000, headers={"Content-Type": "image/png"})
    assert_error(r, 413, "larger than the 4 MB limit")


def test_streamed_body_over_limit_is_413_without_content_length(client):
    def chunks():
        for _ in range(80):
            yield b"\0" * 64_000  # 5.12 MB in total, sent chunked

    r = client.post("/api/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert_error(r, 413, "larger than the 4 MB limit")


def test_small_configured_limit(mlp_run, mlp_predictor):
    data = seven()
    small = len(data) - 1
    with TestClient(create_app(mlp_run, max_upload_bytes=small, predictor=mlp_predictor)) as c:
        assert_error(c.post("/api/predict", content=data, headers={"Content-Type": "image/png"}), 413,
                     f"larger than the {small / 1000:g} kB limit")
        assert_error(c.post("/api/predict", files={"file": ("d.png", data, "image/png")}), 413)
        tiny = seven(28)
        assert len(tiny) < small
        r = c.post("/api/predict", content=tiny, headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        assert_error(c.post("/api/predict", json={"pixels": [0] * 784}), 413)  # 1.6 kB of JSON
        assert c.get("/api/model").json()["max_upload_bytes"] == small
    with pytest.raises(ValueError, match="max_upload_bytes must be positive"):
        create_app(mlp_run, max_upload_bytes=0, predictor=mlp_predictor)


def test_png_header_claiming_huge_dimensions_is_refused_before_decoding(client):
    png_type = {"Content-Type": "image/png"}
    r = client.post("/api/predict", content=png_header_only(100_000, 100_000), headers=png_type)
    assert_error(r, 413, "too large")
    r = client.post("/api/predict", content=png_header_only(5_000, 5_000), headers=png_type)
    assert_error(r, 413, "5000 x 5000 = 25,000,000 pixels, the limit is 20,000,000")


def test_garbage_bytes_with_png_content_type_is_415(client):
    r = client.post("/api/predict", content=os.urandom(3000), headers={"Content-Type": "image/png"})
    assert_error(r, 415, "the upload is not an image")
    r = client.post("/api/predict", files={"file": ("x.png", b"hello, world", "image/png")})
    assert_error(r, 415, "not an image")


def test_unsupported_content_type_is_415(client):
    assert_error(client.post("/api/predict", content=b"7", headers={"Content-Type": "text/plain"}), 415,
                 "unsupported content type 'text/plain'")
    assert_error(client.post("/api/predict", content=b"7"), 415, "unsupported content type")


def test_blank_white_png_is_422(client):
    r = client.post("/api/predict", content=png(Image.new("RGB", (64, 64), "white")),
                    headers={"Content-Type": "image/png"})
    detail = assert_error(r, 422, "blank")
    assert detail.startswith("the upload is blank")


def test_empty_body_and_missing_form_field_are_422(client):
    assert_error(client.post("/api/predict", content=b"", headers={"Content-Type": "image/png"}), 422,
                 "the picture is empty (0 bytes)")
    assert_error(client.post("/api/predict", files={"file": ("d.png", b"", "image/png")}), 422,
                 "the picture is empty (0 bytes)")
    r = client.post("/api/predict", files={"picture": ("d.png", seven(), "image/png")})
    assert_error(r, 422, "field named 'file'")


def test_several_pictures_in_one_predict_request_is_422(client):
    r = client.post("/api/predict", files=[("file", ("a.png", seven(), "image/png"))] * 2)
    assert_error(r, 422, "send one picture per request, in the field 'file' (several go to /api/predict/batch)")


def test_malformed_json_is_422(client):
    json_type = {"Content-Type": "application/json"}
    r = client.post("/api/predict", content=b'{"pixels": [[0, 0, ', headers=json_type)
    assert_error(r, 422, "malformed JSON")
    r = client.post("/api/predict", content=b"\xff\xfe", headers={"Content-Type": "application/json"})
    assert_error(r, 422)
    for body in (b"null", b"[0, 0]", b'"pixels"'):
        r = client.post("/api/predict", content=body, headers=json_type)
        assert_error(r, 422, 'the JSON body must be an object like {"pixels"')


@pytest.mark.parametrize(("payload", "message"), [
    ({"pixels": [[0] * 28] * 27}, "got 27 rows of 28 values"),
    ({"pixels": [[0] * 27] * 28}, "got 28 rows of 27 values"),
    ({"pixels": [[0] * 28] * 27 + [[0] * 5]}, "got 28 rows of 5-28 values"),
    ({"pixels": [0] * 783}, "got a flat list of 783 values"),
    ({"pixels": [[[0] * 28] * 28]}, "pixel values must be numbers; found something else at row 0, column 0"),
    ({"pixels": "seven"}, "pixels must be 28 rows of 28 numbers or a flat list of 784 numbers"),
    ({"pixels": [[0] * 28] * 27 + [[0] * 27 + ["a"]]}, "found something else at row 27, column 27"),
    ({"pixels": [0] * 783 + [True]}, "pixel values must be numbers; found something else at index 783"),
    ({"pixels": [0] * 783 + [None]}, "found something else at index 783"),
    ({"image": [0] * 784}, "missing 'pixels'"),
    ({"pixels": [0] * 784, "scale": "percent"}, "scale"),
    ({"pixels": [0] * 784, "colour": "red"}, "colour"),
])
def test_wrong_pixel_arrays_are_422(client, payload, message):
    assert_error(client.post("/api/predict", json=payload), 422, message)


@pytest.mark.parametrize(("value", "scale", "message"), [
    (300, "byte", "pixel values must be between 0 and 255 with scale='byte'; found 300 at row 3, column 4"),
    (-1, "byte", "found -1 at row 3, column 4"),
    (1.5, "unit", "pixel values must be between 0 and 1 with scale='unit'; found 1.5 at row 3, column 4"),
])
def test_pixel_values_out_of_range_are_422(client, value, scale, message):
    x = np.zeros((28, 28)).tolist()
    x[3][4] = value
    assert_error(client.post("/api/predict", json={"pixels": x, "scale": scale}), 422, message)


def test_blank_pixels_with_preprocess_are_422(client):
    assert_error(client.post("/api/predict", json={"pixels": [0] * 784, "preprocess": True}), 422, "blank")


def test_server_keeps_serving_after_hostile_requests(client, mlp_predictor):
    hostile = [
        dict(content=b"\0" * 5_000_000, headers={"Content-Type": "image/png"}),
        dict(content=png_header_only(100_000, 100_000), headers={"Content-Type": "image/png"}),
        dict(content=b"not a picture", headers={"Content-Type": "image/png"}),
        dict(content=b"{", headers={"Content-Type": "application/json"}),
        dict(json={"pixels": [[0] * 28] * 27}),
        dict(json={"pixels": [300] * 784}),
        dict(content=png(Image.new("L", (50, 50), 255)), headers={"Content-Type": "image/png"}),
        dict(content=b"--x\r\ngarbage", headers={"Content-Type": "multipart/form-data; boundary=x"}),
        dict(content=b"--x\r\ngarbage", headers={"Content-Type": "multipart/form-data"}),
    ]
    statuses = [client.post("/api/predict", **kw).status_code for kw in hostile]
    assert statuses == [413, 413, 415, 422, 422, 422, 422, 422, 400]
    data = seven()
    r = client.post("/api/predict", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    assert_prediction(r.json(), mlp_predictor, load_digit(data))
    assert client.get("/healthz").status_code == 200


def test_unknown_paths_and_methods_answer_json(client):
    assert_error(client.get("/api/nope"), 404, "Not Found")
    assert_error(client.get("/api/predict"), 405, "Method Not Allowed")
    r = client.post("/api/predict?activations=maybe", json={"pixels": [0] * 784})
    assert_error(r, 422, "query parameter 'activations' must be true or false (1 or 0), got 'maybe'")


# -- /api/predict/batch ---------------------------------------------------------------------------


def test_batch_reports_errors_per_file(client, mlp_predictor):
    good, photo = seven(), one_photo()
    files = [("files", ("seven.png", good, "image/png")),
             ("files", ("junk.png", b"junk", "image/png")),
             ("files", ("white.png", png(Image.new("L", (40, 40), 255)), "image/png")),
             ("files", ("huge.png", png_header_only(100_000, 100_000), "image/png")),
             ("files", ("one.png", photo, "image/png"))]
    r = client.post("/api/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 5 and body["ok"] == 2
    results = body["results"]
    assert [x["index"] for x in results] == [0, 1, 2, 3, 4]
    assert [x["filename"] for x in results] == ["seven.png", "junk.png", "white.png", "huge.png", "one.png"]
    assert [x["ok"] for x in results] == [True, False, False, False, True]
    assert [x["status"] for x in results] == [200, 415, 422, 413, 200]
    assert "not an image" in results[1]["error"] and "blank" in results[2]["error"]
    assert results[1]["prediction"] is None
    for i, data in ((0, good), (4, photo)):
        assert results[i]["error"] is None
        pred = results[i]["prediction"]
        assert_prediction({**pred, "activations": None}, mlp_predictor, load_digit(data))
        single = client.post("/api/predict", content=data, headers={"Content-Type": "image/png"}).json()
        np.testing.assert_allclose(pred["probabilities"], single["probabilities"], atol=1e-6)


def test_batch_limits(client):
    one = seven(56)
    assert_error(client.post("/api/predict/batch", files=[("files", ("d.png", one, "image/png"))] * 65), 413,
                 "too many files; send at most 64 per request")
    ok = client.post("/api/predict/batch", files=[("files", ("d.png", one, "image/png"))] * 64)
    assert ok.status_code == 200 and ok.json()["ok"] == 64
    assert_error(client.post("/api/predict/batch", files=[("file", ("d.png", one, "image/png"))]), 422,
                 "fields named 'files'")
    assert_error(client.post("/api/predict/batch", json={"pixels": [0] * 784}), 415, "multipart/form-data")
    assert_error(client.post("/api/predict/batch", content=b"\0" * 5_000_000,
                             headers={"Content-Type": "multipart/form-data; boundary=x"}), 413)


# -- robustness and other models ------------------------------------------------------------------


class NumpyPredictor:
    """A torch-free predictor (what an ONNX model looks like to the server): softmax of a linear map."""

    name = "linear"
    labels = [str(i) for i in range(10)]
    metrics = None

    def __init__(self, fail_after: int | None = None):
        self.config = {"model": {"name": "linear"}, "dataset": "mnist", "parameters": 7850}
        self.w = np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32) / 28
        self.calls = 0
        self.fail_after = fail_after

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("secret internal detail")
        x = np.asarray(images, np.float32).reshape(len(images), 784)
        x = x / 255.0 if np.asarray(images).dtype == np.uint8 else x
        z = x @ self.w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def activations(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {}


def test_serves_a_predictor_without_torch_model(tmp_path):
    p = NumpyPredictor()
    with TestClient(create_app(tmp_path / "model.onnx", predictor=p)) as c:
        info = c.get("/api/model").json()
        assert info["source"] == "onnx" and info["name"] == "linear"
        assert info["architecture"] == [] and info["parameters"] == 7850 and info["test_accuracy"] is None
        assert info["activation_layers"] == []
        x = bar_pixels()
        body = c.post("/api/predict?activations=1", json={"pixels": x.tolist()}).json()
        np.testing.assert_allclose(body["probabilities"], p.predict_proba(x[None])[0], atol=1e-6)
        assert body["activations"] == {}


def test_internal_errors_answer_500_without_details(tmp_path):
    p = NumpyPredictor(fail_after=1)  # the warm-up call at start succeeds, requests fail
    with TestClient(create_app(tmp_path / "m.onnx", predictor=p), raise_server_exceptions=False) as c:
        r = c.post("/api/predict", json={"pixels": bar_pixels().tolist()})
        assert_error(r, 500, "internal server error")
        assert "secret" not in r.text
        assert c.get("/healthz").status_code == 200


def test_server_modules_do_not_import_torch():
    code = ("import sys, digitlab.serve, digitlab.serve.app, digitlab.serve.server, digitlab.cli.serve; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_app_factory_reads_environment(monkeypatch, mlp_run):
    monkeypatch.setenv(ENV_MODEL, str(mlp_run))
    monkeypatch.setenv(ENV_MAX_UPLOAD, "1234")
    monkeypatch.delenv(ENV_THREADS, raising=False)
    with TestClient(create_app_from_env()) as c:
        assert c.get("/api/model").json()["max_upload_bytes"] == 1234
    monkeypatch.delenv(ENV_MODEL)
    with pytest.raises(RuntimeError, match=ENV_MODEL):
        create_app_from_env()


# -- the command line -----------------------------------------------------------------------------


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlab", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_cli_serve_missing_model_is_one_line_error(tmp_path):
    r = _cli("serve", str(tmp_path / "nope"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no such run folder" in r.stderr and "Traceback" not in r.stderr


def test_cli_serve_rejects_bad_options(mlp_run):
    r = _cli("serve", str(mlp_run), "--workers", "0")
    assert r.returncode == 1 and "--workers must be at least 1" in r.stderr
    r = _cli("serve", str(mlp_run), "--max-upload-mb", "0")
    assert r.returncode == 1 and "--max-upload-mb must be positive" in r.stderr


def test_cli_serve_runs_and_answers(mlp_run):
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", str(mlp_run), "--port", "0",
                             "--max-upload-mb", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/"), proc.stderr.read()
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "healthz", timeout=5) as r:
                    assert json.loads(r.read()) == {"status": "ok", "model": "mlp"}
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        req = urllib.request.Request(url + "api/predict", data=seven(), headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["label"] in range(10)
        # an announced 600 kB body is refused from its headers alone, before any of it is read
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/")), timeout=10)
        conn.putrequest("POST", "/api/predict")
        conn.putheader("Content-Type", "image/png")
        conn.putheader("Content-Length", "600000")
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413 and "500 kB limit" in json.loads(resp.read())["detail"]
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_cli_serve_port_in_use(mlp_run):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _cli("serve", str(mlp_run), "--port", str(port))
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


def test_static_dir_is_package_data():
    from digitlab.serve.app import STATIC_DIR

    assert {p.name for p in Path(STATIC_DIR).iterdir()} >= {"index.html", "app.js", "style.css"}


def test_json_encoding_without_orjson_gives_the_same_answer(client, monkeypatch):
    import digitlab.serve.responses as serve_app

    data = seven()
    fast = client.post("/api/predict?activations=1", content=data, headers={"Content-Type": "image/png"}).json()
    monkeypatch.setattr(serve_app, "orjson", None)
    plain = client.post("/api/predict?activations=1", content=data, headers={"Content-Type": "image/png"})
    plain = plain.json()
    assert plain.keys() == fast.keys()
    for key in plain:
        if key == "activations":
            for name in plain[key]:
                np.testing.assert_allclose(plain[key][name], fast[key][name], atol=1e-6)
        elif key != "model_ms":
            assert plain[key] == fast[key], key


def test_serves_an_exported_onnx_file_without_torch(mlp_run, tmp_path):
    pytest.importorskip("onnxruntime")
    export = pytest.importorskip("digitlab.export")
    onnx_path = tmp_path / "mlp.onnx"
    export.export_onnx(mlp_run, onnx_path)
    code = f"""
import json, sys, warnings
warnings.simplefilter("ignore")
from fastapi.testclient import TestClient
from digitlab.serve import create_app
c = TestClient(create_app({str(onnx_path)!r}))
info = c.get("/api/model").json()
bar = [255 if 5 <= i // 28 < 23 and 13 <= i % 28 < 16 else 0 for i in range(784)]  # a '1'
r = c.post("/api/predict?activations=1", json={{"pixels": bar}}).json()
print(json.dumps({{"info": info, "pred": r, "torch": "torch" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["torch"] is False
    info = got["info"]
    assert info["source"] == "onnx" and info["name"] == "mlp" and info["parameters"] == 109_386
    assert [r["name"] for r in info["architecture"]] == ["flatten", "dense", "act", "dense_1", "act_1", "dense_2"]
    assert [a["shape"] for a in info["activation_layers"]] == [[128], [64]]
    bar = np.zeros((1, 28, 28), np.uint8)
    bar[0, 5:23, 13:16] = 255
    torch_answer = load_predictor(mlp_run).predict_proba(bar)[0]
    np.testing.assert_allclose(got["pred"]["probabilities"], torch_answer, atol=1e-5)
    assert [len(v) for v in got["pred"]["activations"].values()] == [128, 64]


@pytest.mark.parametrize("query", ["", "single=1"])
def test_an_answer_with_activations_is_the_answer_without_them(client, query):
    # one reading of the picture serves both: the same digit, digit score and number (the
    # probabilities of the traced forward pass equal the frozen model's to float precision)
    from digitlab.inference.detector import digit_scores

    data = seven()
    plain = client.post(f"/api/predict?{query}", content=data, headers={"Content-Type": "image/png"}).json()
    traced = client.post(f"/api/predict?activations=1&{query}", content=data,
                         headers={"Content-Type": "image/png"}).json()
    assert plain["activations"] is None and traced["activations"]
    for key in plain:
        if key in ("confidence", "probabilities"):
            assert traced[key] == pytest.approx(plain[key], abs=1e-6), key
        elif key == "top3":
            assert [t["label"] for t in traced[key]] == [t["label"] for t in plain[key]]
        elif key not in ("activations", "model_ms"):
            assert traced[key] == plain[key], key
    shown = np.asarray(plain["input"], np.uint8)[None]
    assert plain["digit_score"] == round(float(digit_scores(shown)[0]), 6)


def tiff_f32(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.float32), mode="F").save(buf, format="TIFF")
    return buf.getvalue()


def test_float_pictures_with_nan_are_answered_and_a_server_fault_stays_in_its_batch_entry(client, monkeypatch):
    digit = to_mnist(Image.open(io.BytesIO(seven()))).astype(np.float32) / 255
    speckled = digit.copy()
    speckled[:3, :3] = np.nan  # NaN is no ink
    for data, status in ((tiff_f32(speckled), 200), (tiff_f32(np.full((40, 40), np.nan)), 422)):
        r = client.post("/api/predict", content=data, headers={"Content-Type": "image/tiff"})
        assert r.status_code == status, r.text
    assert r.json()["detail"].startswith("the upload is blank")
    plain = client.post("/api/predict", content=png(np.round(digit * 255).astype(np.uint8)),
                        headers={"Content-Type": "image/png"}).json()
    got = client.post("/api/predict", content=tiff_f32(speckled), headers={"Content-Type": "image/tiff"}).json()
    assert got["label"] == plain["label"]  # the float picture and its 8-bit copy differ by 1 grey level
    np.testing.assert_allclose(got["probabilities"], plain["probabilities"], atol=0.02)

    import digitlab.serve.routes as routes

    def fault(model, data, single, reject):
        if data == b"fault":
            raise RuntimeError("a bug")
        return real(model, data, single, reject)

    real = routes.read_picture
    monkeypatch.setattr(routes, "read_picture", fault)
    files = [("files", ("a.png", seven(), "image/png")), ("files", ("b.png", b"fault", "image/png")),
             ("files", ("c.tif", tiff_f32(speckled), "image/tiff"))]
    r = client.post("/api/predict/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 500, 200]
    assert results[1]["error"] == "internal server error while reading this picture"
    assert results[2]["prediction"]["label"] == plain["label"] and results[0]["prediction"] is not None
