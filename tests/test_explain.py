"""``digitlab explain``: maps of the pixels that pushed the answer up or down, for run folders and ONNX."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cli

from digitlab.inference.explain import explain


def _on_ink_share(m: np.ndarray, image: np.ndarray) -> float:
    a = np.abs(m)
    return float(a[image >= 64].sum() / a.sum())


@pytest.mark.realdata
@pytest.mark.parametrize("method", ["occlusion", "gradient"])
def test_strongest_pixels_lie_on_the_ink(real_run, mnist, method):
    (_, _), (x_test, y_test) = mnist
    for i in range(5):
        image = x_test[i]
        e = explain(real_run, image, method=method)
        assert e.label == int(y_test[i])
        for c in (e.label, e.runner_up):
            m = e.maps[c]
            assert m.shape == (28, 28) and m.dtype == np.float32
            assert -1.0 <= m.min() and m.max() <= 1.0 and np.abs(m).max() == pytest.approx(1.0)
            strongest = np.argsort(-np.abs(m).ravel())[:20]
            assert (image.ravel()[strongest] > 0).all()  # the 20 strongest pixels are ink
            assert _on_ink_share(m, image) > 0.8
        # the answer's map is mostly positive: its ink spoke for it
        assert e.maps[e.label].sum() > 0


@pytest.mark.realdata
def test_occlusion_works_for_onnx_files_and_agrees_with_the_run(real_run, mnist, tmp_path):
    pytest.importorskip("onnxruntime")
    from digitlab.export import export_onnx

    path = tmp_path / "mlp.onnx"
    export_onnx(real_run, path)
    image = mnist[1][0][0]
    a, b = explain(real_run, image), explain(path, image)
    assert (a.label, a.runner_up) == (b.label, b.runner_up)
    np.testing.assert_allclose(a.maps[a.label], b.maps[b.label], atol=1e-3)
    with pytest.raises(Exception, match="needs a run folder"):
        explain(path, image, method="gradient")


@pytest.mark.realdata
def test_cli_saves_the_figure_and_prints_json(real_run, mnist, tmp_path, capsys):
    from PIL import Image

    picture = tmp_path / "seven.png"
    Image.fromarray(mnist[1][0][0]).save(picture)
    out = tmp_path / "why.png"
    code, stdout, _ = cli(capsys, "explain", str(real_run), str(picture), "-o", str(out), "--json")
    assert code == 0
    import json

    body = json.loads(stdout)
    assert body["label"] == 7 and body["figure"] == str(out)
    assert np.asarray(body["maps"]["label"]).shape == (28, 28)
    assert Image.open(out).size[0] > 600
    code, stdout, _ = cli(capsys, "explain", str(real_run), str(tmp_path / "missing.png"))
    assert code != 0


@pytest.mark.realdata
def test_api_explain_takes_the_bodies_of_predict(real_run, mnist):
    import io
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from digitlab.serve.app import create_app

    image = mnist[1][0][0]
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    with TestClient(create_app(real_run)) as client:
        bodies = [
            {"json": {"pixels": image.astype(float).tolist()}},
            {"files": {"file": ("seven.png", png.getvalue(), "image/png")}},
            {"content": png.getvalue(), "headers": {"content-type": "image/png"}},
        ]
        for body in bodies:
            r = client.post("/api/explain", **body)
            assert r.status_code == 200, r.text
            e = r.json()
            assert e["label"] == 7 and e["runner_up"] != 7 and e["method"] == "occlusion"
            for key in ("label", "runner_up"):
                m = np.asarray(e["maps"][key])
                assert m.shape == (28, 28) and -1 <= m.min() and m.max() <= 1
        r = client.post("/api/explain", json={"pixels": [[300.0] * 28] * 28})
        assert r.status_code == 422
        r = client.post("/api/explain", content=b"x", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        assert "/api/explain" in client.get("/openapi.json").json()["paths"]


def test_the_python_api_names_are_functions():
    import digitlab as dl
    import digitlab.inference.explain  # noqa: F401
    import digitlab.training.compare  # noqa: F401

    assert callable(dl.explain) and callable(dl.compare)
    assert dl.explain.__module__ == "digitlab.inference.explain"
