"""The API pieces the drawing page uses: compact activations, /api/sample, the page language, offline /docs."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

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
    info = client.get("/api/model").json()
    assert info["unsure_below"] == pytest.approx(0.7 * (1 - 0.05 * 0.9), abs=1e-4)


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
