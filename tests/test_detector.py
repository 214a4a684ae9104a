"""The not-a-digit detector: what it rejects and accepts, and is_digit in the CLI, the API and Python."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from PIL import Image

from digitlab.data.pictures import load_digit
from digitlab.errors import ImageError
from digitlab.inference.detector import THRESHOLD, digit_scores, readings
from digitlab.inference.predictor import read_digit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import detector_data as D  # noqa: E402

REALWORLD = Path(__file__).parent / "realworld" / "images"
#: Typefaces the detector never saw in training; matplotlib ships them, so nothing needs installing.
TEST_FONTS = [D.MPL_FONTS / "DejaVuSans.ttf", D.MPL_FONTS / "STIXGeneral.ttf"]


def rejected(x: np.ndarray) -> float:
    return float((digit_scores(x) < THRESHOLD).mean())


def picture_inputs(inks, seed: int) -> np.ndarray:
    """Each ink map handed in as a picture through load_digit; a refused (blank) picture as zeros."""
    rng = np.random.default_rng(seed)
    return np.stack([x if (x := D.hand_in(ink, rng)) is not None else np.zeros((28, 28), np.uint8) for ink in inks])


def digit_png(x: np.ndarray, path: Path, scale: int = 3) -> Path:
    """An MNIST-style digit as a dark-on-light picture (so it goes through the whole pipeline)."""
    Image.fromarray(255 - np.kron(x, np.ones((scale, scale), np.uint8))).save(path)
    return path


def letter_png(path: Path, char: str = "K") -> Path:
    ink = D.font_glyph(char, TEST_FONTS[0], np.random.default_rng(0))
    Image.fromarray((255 - ink * 255).astype(np.uint8)).save(path)
    return path


# -- the scores ---------------------------------------------------------------------------------------


def test_scores_shape_range_and_blank():
    x = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    x[0] = 0
    s = digit_scores(x)
    assert s.dtype == np.float32 and s.shape == (5,)
    assert ((s >= 0) & (s <= 1)).all() and s[0] == 0.0
    assert digit_scores(x[1]).shape == (1,)
    np.testing.assert_allclose(digit_scores(x.astype(np.float32) / 255), s, atol=1e-5)
    assert 0.0 < THRESHOLD < 1.0
    with pytest.raises(ValueError):
        digit_scores(np.zeros((2, 28, 27), np.uint8))


def test_detector_needs_no_torch():
    code = ("import sys, numpy as np; from digitlab.inference.detector import digit_scores; "
            "digit_scores(np.zeros((1, 28, 28), np.uint8)); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_the_small_products_run_on_one_blas_thread(monkeypatch):
    # NumPy's BLAS threads, left spinning after each small product, took the cores from the model
    from threadpoolctl import threadpool_limits

    from digitlab.inference import detector, sequence

    seen = {}

    def watched(name, f):
        def call(*args, **kwargs):
            seen[name] = _blas_threads()
            return f(*args, **kwargs)
        return call

    monkeypatch.setattr(detector, "logits", watched("detector", detector.logits))
    monkeypatch.setattr(sequence, "column_logits", watched("sequence", sequence.column_logits))
    ink = np.zeros((30, 60), np.float32)
    ink[5:25, 10:14] = ink[5:25, 40:44] = 1.0
    with threadpool_limits(limits=2, user_api="blas"):
        assert set(_blas_threads()) == {2}
        digit_scores(np.zeros((3, 28, 28), np.uint8))
        sequence.read_line(ink)
        assert set(_blas_threads()) == {2}  # the rest of the process as it was
    assert {name: set(threads) for name, threads in seen.items()} == {"detector": {1}, "sequence": {1}}


def test_readings_reject_and_keep():
    p = np.full((2, 10), 0.02, np.float32)
    p[:, 3] = 0.82
    rs = readings(p, [str(i) for i in range(10)], scores=np.array([0.99, 0.0]))
    assert (rs[0].index, rs[0].label, rs[0].is_digit) == (3, "3", True)
    assert (rs[1].index, rs[1].label, rs[1].is_digit) == (None, None, False)
    assert rs[1].top[0] == (3, "3", pytest.approx(0.82)) and rs[1].to_dict()["label"] is None
    kept = readings(p, [str(i) for i in range(10)], scores=np.array([0.99, 0.0]), reject=False)
    assert (kept[1].label, kept[1].is_digit) == ("3", False)


# -- what it rejects ----------------------------------------------------------------------------------


@pytest.mark.realdata
def test_rejects_fashion_mnist_test_pictures(fashion_data_dir):
    from digitlab.data.datasets import load_data

    (_, _), (x, _) = load_data("fashion-mnist", data_dir=fashion_data_dir, quiet=True)
    inputs = picture_inputs([a / 255.0 for a in x[:120]], seed=11)
    assert rejected(inputs) >= 0.8  # 92% on the benchmark (target 95%: not reached yet)


def test_rejects_letters_in_a_font_never_trained_on():
    rng = np.random.default_rng(12)
    inks = [ink for font in TEST_FONTS for c in D.LETTERS if (ink := D.font_glyph(c, font, rng)) is not None]
    assert len(inks) >= 50
    assert rejected(picture_inputs(inks, seed=13)) >= 0.9


def test_rejects_drawn_letters_scribbles_shapes_and_noise():
    rng = np.random.default_rng(14)
    letters = [D.stroke_glyph(g, rng) for g in D.LETTER_GLYPHS]
    junk = [D.junk(k, rng) for k in D.JUNK_KINDS for _ in range(3)]
    assert rejected(picture_inputs(letters, seed=15)) >= 0.9
    assert rejected(picture_inputs(junk, seed=16)) >= 0.8  # 89% on the benchmark (target 90%: not reached yet)


# -- what it accepts ----------------------------------------------------------------------------------


@pytest.mark.realdata
def test_accepts_mnist_test_digits(mnist):
    (_, _), (x, _) = mnist
    assert rejected(x) <= 0.005  # all 10000, as the model gets them
    inputs = picture_inputs([a / 255.0 for a in x[2000:2300]], seed=17)  # handed in as pictures
    assert rejected(inputs) <= 0.01


def test_accepts_the_realworld_set():
    inputs = np.stack([load_digit(p) for p in sorted(REALWORLD.iterdir())])
    assert len(inputs) == 400
    assert rejected(inputs) <= 0.01


# -- the Python API -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, mnist):
    folder = tmp_path_factory.mktemp("detector")
    (_, _), (x, _) = mnist
    return digit_png(x[0], folder / "a_seven.png"), letter_png(folder / "b_letter.png")  # in sorted order


def test_python_api(real_run, pictures):
    from digitlab.inference.predictor import load_predictor, predict_files

    seven, letter = pictures
    predictor = load_predictor(real_run)
    r = read_digit(predictor, seven)
    assert (r.label, r.is_digit) == ("7", True) and r.digit_score >= THRESHOLD and r.image.shape == (28, 28)
    r = read_digit(predictor, letter)
    assert (r.label, r.index, r.is_digit) == (None, None, False) and r.digit_score < THRESHOLD
    assert read_digit(predictor, letter, reject=False).label is not None
    got = predict_files(predictor, [seven, letter])
    assert [(g.label, g.is_digit) for g in got] == [(7, True), (None, False)]
    assert got[1].name is None and got[1].probability is not None and len(got[1].top) == 3
    assert predict_files(predictor, [letter], reject=False)[0].label is not None


@pytest.mark.realdata
def test_read_digit_takes_every_kind_of_picture(best, mnist):
    """A (28, 28) uint8 array is a model input as it is; floats in [0, 1], bigger arrays and PIL
    images are pictures, read as load_digit reads them."""
    from digitlab.inference.predictor import read_digits

    (_, _), (x, y) = mnist
    as_is = read_digits(best, list(x[:20]))
    assert all(np.array_equal(r.image, d) for r, d in zip(as_is, x[:20], strict=True))
    assert sum(r.label == str(t) for r, t in zip(as_is, y[:20], strict=True)) >= 19
    for picture in (x[0] / 255.0, x[0].astype(np.float32) / 255, x[0].astype(np.int64), Image.fromarray(x[0])):
        r = read_digit(best, picture)
        assert (r.label, r.is_digit) == ("7", True) and np.array_equal(r.image, x[0])
    big = np.kron(255 - x[1], np.ones((4, 4), np.uint8))  # 112 x 112, dark on light
    r = read_digit(best, big)
    assert r.label == str(y[1]) and np.array_equal(r.image, load_digit(Image.fromarray(big)))
    flat = read_digits(best, [x[0].reshape(784), x[0][None], x[0][..., None]])  # model inputs, reshaped
    assert all(np.array_equal(r.image, x[0]) and r.label == "7" for r in flat)
    assert read_digits(best, []) == []
    with pytest.raises(ImageError, match="^the given array is blank"):
        read_digit(best, np.full((28, 28), np.nan))


# -- the CLI ------------------------------------------------------------------------------------------


def test_cli_predict_is_digit(real_run, pictures, capsys):
    # --single: the pictures are read as one digit each (read as a number, the strokes of a K can
    # each pass for a digit: that is the number reader's, tested in test_numbers.py)
    seven, letter = pictures
    code, out, _ = cli(capsys, "predict", str(real_run), str(seven), str(letter), "--json", "--single")
    assert code == 0
    d = json.loads(out)
    assert [(r["label"], r["name"], r["is_digit"]) for r in d] == [(7, "7", True), (None, None, False)]
    assert d[0]["digit_score"] >= THRESHOLD > d[1]["digit_score"]

    code, out, _ = cli(capsys, "predict", str(real_run), str(seven), str(letter), "--csv", "--single")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["label"], r["name"], r["is_digit"]) for r in rows] == [("7", "7", "true"), ("", "", "false")]
    assert float(rows[1]["digit_score"]) < THRESHOLD

    code, out, _ = cli(capsys, "predict", str(real_run), str(letter), "--csv", "--no-reject", "--single")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows[0]["label"] != "" and rows[0]["is_digit"] == "false"

    code, out, _ = cli(capsys, "predict", str(real_run), str(letter), "--single")
    assert code == 0 and "not a digit" in out


# -- the API ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(real_run):
    from fastapi.testclient import TestClient

    from digitlab.serve import create_app

    with TestClient(create_app(real_run)) as c:
        yield c


def test_api_predict_is_digit(client, pictures, mnist):
    seven, letter = pictures
    body = client.post("/api/predict", files={"file": ("a.png", seven.read_bytes(), "image/png")}).json()
    assert (body["label"], body["name"], body["is_digit"]) == (7, "7", True)
    assert body["digit_score"] >= THRESHOLD
    body = client.post("/api/predict", content=letter.read_bytes(), headers={"content-type": "image/png"}).json()
    assert (body["label"], body["name"], body["is_digit"]) == (None, None, False)
    assert len(body["probabilities"]) == 10 and body["digit_score"] < THRESHOLD
    body = client.post("/api/predict?reject=0", content=letter.read_bytes(),
                       headers={"content-type": "image/png"}).json()
    assert body["label"] is not None and body["is_digit"] is False
    (_, _), (x, _) = mnist
    body = client.post("/api/predict", json={"pixels": x[0].tolist()}).json()
    assert (body["label"], body["is_digit"]) == (7, True)


def test_api_batch_is_digit(client, pictures):
    seven, letter = pictures
    files = [("files", ("s.png", seven.read_bytes(), "image/png")),
             ("files", ("l.png", letter.read_bytes(), "image/png"))]
    got = [r["prediction"] for r in client.post("/api/predict/batch", files=files).json()["results"]]
    assert [(p["label"], p["is_digit"]) for p in got] == [(7, True), (None, False)]
    got = [r["prediction"] for r in client.post("/api/predict/batch?reject=0", files=files).json()["results"]]
    assert got[1]["label"] is not None and got[1]["is_digit"] is False


@pytest.mark.parametrize("body", [
    {"pixels": [0] * 784},
    {"pixels": [[0] * 28] * 28},
    {"pixels": [[0.0] * 28] * 28, "scale": "unit"},
    {"pixels": [255] * 784},
    {"pixels": [3] * 783 + [9]},
    {"pixels": [0] * 784, "preprocess": True},
])
def test_api_blank_pixels_are_422_like_a_blank_picture(client, body):
    r = client.post("/api/predict", json=body)
    assert r.status_code == 422 and "blank" in r.json()["detail"]
    buf = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buf, format="PNG")
    picture = client.post("/api/predict", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert picture.status_code == r.status_code == 422
