"""The API pieces the drawing page uses: compact activations, /api/sample, the page language, offline /docs."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from browsing import serving

BEST = Path(__file__).resolve().parent.parent / "models" / "mnist-best"


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from digitlab.serve import create_app

    return TestClient(create_app(BEST))


def _seven() -> list[list[int]]:
    x = np.zeros((28, 28), np.uint8)
    x[6:9, 7:21] = 255
    for r in range(9, 23):
        c = 20 - (r - 9) * 8 // 14
        x[r, c - 1 : c + 2] = 255
    return x.tolist()


def test_u8_activations_for_the_layers_asked(client):
    plain = client.post("/api/predict?activations=1", json={"pixels": _seven()}).json()
    res = client.post("/api/predict?activations=1&act_format=u8&layers=act_2,act_3", json={"pixels": _seven()})
    assert res.status_code == 200
    acts = res.json()["activations"]
    assert list(acts) == ["act_2", "act_3"]
    for name, layer in acts.items():
        q = np.frombuffer(base64.b64decode(layer["data"]), np.uint8).reshape(layer["shape"])
        ref = np.asarray(plain["activations"][name], np.float32)
        assert q.shape == ref.shape
        assert np.abs(q * layer["scale"] - ref).max() <= layer["scale"] / 2 + 1e-3  # 8 bits of the layer's max
    assert len(res.content) <= 20 * 1024
    assert res.json()["label"] == plain["label"]


def test_layers_and_format_are_checked(client):
    bad = client.post("/api/predict?activations=1&layers=act,conv9", json={"pixels": _seven()})
    assert bad.status_code == 422 and "conv9" in bad.json()["detail"] and "act_1" in bad.json()["detail"]
    bad = client.post("/api/predict?activations=1&act_format=f16", json={"pixels": _seven()})
    assert bad.status_code == 422 and "act_format" in bad.json()["detail"]
    nested = client.post("/api/predict?activations=1&layers=act_3", json={"pixels": _seven()}).json()
    assert list(nested["activations"]) == ["act_3"] and isinstance(nested["activations"]["act_3"], list)


def test_model_info_says_when_unsure(client):
    """The shipped model's threshold is the calibrated one in its metrics.json; without one, the rule."""
    import json

    from digitlab.serve.adapter import unsure_below

    calibrated = json.loads((BEST / "metrics.json").read_text())
    assert calibrated["unsure_calibration"]["split"] == "test" and calibrated["unsure_calibration"]["answers"] == 10000
    info = client.get("/api/model").json()
    assert info["unsure_below"] == calibrated["unsure_below"]
    assert 0.5 < info["unsure_below"] < 0.9
    config = json.loads((BEST / "config.json").read_text())
    assert unsure_below(config, None) == pytest.approx(0.7 * (1 - 0.05 * 0.9), abs=1e-4)
    assert unsure_below(config, {"unsure_below": "0.5"}) == unsure_below(config, None)  # not a number: the rule
    assert unsure_below({}, {"unsure_below": 2.0}) == 0.7  # out of range: the rule


def test_unsure_threshold_marks_the_band_where_answers_are_often_wrong():
    from digitlab.evaluate import unsure_threshold

    rng = np.random.default_rng(0)
    low = rng.uniform(0.2, 0.5, 200)     # half of these answers are wrong
    high = rng.uniform(0.6, 1.0, 800)    # all right
    conf = np.concatenate([low, high])
    correct = np.concatenate([np.arange(200) % 2 == 0, np.ones(800, bool)])
    got = unsure_threshold(conf, correct)
    # the widest band of lowest-confidence answers still wrong 1 time in 4: the 200 low ones
    # (100 wrong) and the 200 lowest of the high ones: 300 right of 400
    ranked = np.sort(high)
    assert ranked[199] < got["unsure_below"] < ranked[200]
    assert got["answers"] == 1000 and got["answers_below"] == 400
    assert got["accuracy_below"] == pytest.approx(0.75) and got["accuracy_above"] == 1.0
    always_right = unsure_threshold(conf, np.ones(1000, bool))
    assert always_right["unsure_below"] == 0.0 and always_right["answers_below"] == 0
    assert unsure_threshold(conf, np.zeros(1000, bool))["unsure_below"] > conf.max()
    with pytest.raises(ValueError, match="as many answers"):
        unsure_threshold(conf, correct[:10])


def test_evaluate_calibrate_saves_the_threshold_the_server_uses(tmp_path, capsys, data_dir):
    import json
    import shutil

    from fastapi.testclient import TestClient

    from digitlab.cli import main
    from digitlab.serve import create_app

    run = tmp_path / "best"
    shutil.copytree(BEST, run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("unsure_below"), metrics.pop("unsure_calibration")
    (run / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit) as done:
        main(["evaluate", str(run), "--calibrate", "--data-dir", str(data_dir), "--out", str(tmp_path / "figs"),
              "--quiet"])
    assert not done.value.code
    out = capsys.readouterr().out
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]  # the rest is kept
    cal = saved["unsure_calibration"]
    assert cal["unsure_below"] == saved["unsure_below"] and cal["answers"] == 10000 and cal["answers_below"] > 0
    assert cal["accuracy_below"] <= 0.75 and cal["accuracy_above"] > 0.99
    assert f"Not sure below {saved['unsure_below']:.1%}" in out
    assert TestClient(create_app(run)).get("/api/model").json()["unsure_below"] == saved["unsure_below"]


def test_evaluate_calibrate_needs_a_run_folder(tmp_path, capsys):
    from digitlab.cli import main

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(onnx), "--calibrate"])
    assert e.value.code == 1
    assert "--calibrate saves into a run folder's metrics.json" in capsys.readouterr().err


def test_sample_without_mnist_is_404(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from digitlab.serve import create_app

    monkeypatch.setenv("DIGITLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    res = TestClient(create_app(BEST)).get("/api/sample")
    assert res.status_code == 404 and "DIGITLAB_DATA_DIR" in res.json()["detail"]


@pytest.mark.realdata
def test_sample_is_a_real_test_digit(client, data_dir, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA_DIR", str(data_dir))
    s = client.get("/api/sample").json()
    assert np.asarray(s["pixels"]).shape == (28, 28) and 0 <= s["label"] <= 9 and 0 <= s["index"] < 10000


@pytest.mark.parametrize(("header", "lang"), [("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"), ("en-US,en;q=0.9,zh;q=0.5", "en"),
                                              ("fr-FR,zh-TW;q=0.8", "zh-CN"), ("", "en"), ("de", "en")])
def test_page_language_from_accept_language(client, header, lang):
    res = client.get("/", headers={"Accept-Language": header})
    assert f'<html lang="{lang}">' in res.text
    assert res.headers["vary"] == "Accept-Language"
    assert "default-src 'self'" in res.headers["content-security-policy"]


def test_docs_need_no_cdn(client):
    html = client.get("/docs").text
    assert "cdn" not in html.lower() and "/static/swagger/swagger-ui-bundle.js" in html
    js = client.get("/static/swagger/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 500_000
    assert client.get("/static/swagger/LICENSE").status_code == 200


def test_activations_come_from_the_same_pass_as_the_answer(client):
    """Asking for activations costs one forward pass, not two, and changes nothing in the answer."""
    served = client.app.state.model
    predictor = served.predictor
    calls = {"predict_proba": 0, "activations": 0, "trace": 0}
    originals = {name: getattr(predictor, name) for name in calls}

    def counting(name):
        def call(*args, **kwargs):
            calls[name] += 1
            return originals[name](*args, **kwargs)
        return call

    plain = client.post("/api/predict?single=1", json={"pixels": _seven()}).json()
    try:
        for name in calls:
            setattr(predictor, name, counting(name))
        res = client.post("/api/predict?activations=1&single=1", json={"pixels": _seven()}).json()
    finally:
        for name in calls:
            delattr(predictor, name)
    assert calls == {"predict_proba": 0, "activations": 0, "trace": 1}
    assert res["probabilities"] == pytest.approx(plain["probabilities"], abs=1e-6)
    assert res["label"] == plain["label"] and list(res["activations"]) == list(served.activation_shapes)


@pytest.mark.parametrize("kind", ["torch", "onnx"])
def test_trace_gives_what_the_two_calls_give(kind, tmp_path):
    from digitlab.inference.predictor import load_predictor

    if kind == "onnx":
        pytest.importorskip("onnxruntime")
        from digitlab.export import export_onnx

        path = tmp_path / "best.onnx"
        export_onnx(BEST, path)
    else:
        path = BEST
    predictor = load_predictor(path)
    x = np.stack([np.asarray(_seven(), np.uint8), np.zeros((28, 28), np.uint8)])
    proba, acts = predictor.trace(x)
    np.testing.assert_allclose(proba, predictor.predict_proba(x), atol=1e-5)
    ref = predictor.activations(x)
    assert list(acts) == list(ref)
    for k in ref:
        np.testing.assert_allclose(acts[k], ref[k], atol=1e-5)


def test_a_request_the_client_gave_up_on_is_not_computed():
    """The page aborts a request when a newer drawing is ready: the server notices the closed
    connection and spends no model time on it."""
    import http.client
    import io
    import socket
    import threading
    import time

    from PIL import Image

    from digitlab.serve import create_app

    app = create_app(BEST)
    predictor = app.state.model.predictor
    real_predict = predictor.predict_proba
    calls = []
    released = threading.Event()

    def slow_predict(*args, **kwargs):
        calls.append(time.monotonic())
        if len(calls) == 1:
            released.wait(0.6)  # holds the event loop, as a long answer does
        return real_predict(*args, **kwargs)

    predictor.predict_proba = slow_predict  # the model, called once for a picture of one digit
    png = io.BytesIO()
    Image.fromarray(np.asarray(_seven(), np.uint8)).save(png, "PNG")
    body = png.getvalue()
    with serving(app) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        first = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        done = {}

        def ask_first():
            first.request("POST", "/api/predict?single=1", body=body, headers={"Content-Type": "image/png"})
            done["status"] = first.getresponse().status

        t = threading.Thread(target=ask_first)
        t.start()
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls, "the first request never reached the model"
        # while the first answer is computed: a request sent, then abandoned
        gone = socket.create_connection(("127.0.0.1", port), timeout=5)
        gone.sendall(b"POST /api/predict?single=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        gone.close()
        released.set()
        t.join(20)
        assert done.get("status") == 200
        time.sleep(0.5)
        after = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        after.request("POST", "/api/predict?single=1", body=body, headers={"Content-Type": "image/png"})
        assert after.getresponse().status == 200
    assert len(calls) == 2  # the first and the last request: the abandoned one never reached the model
