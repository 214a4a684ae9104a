"""ONNX export: parity with PyTorch, dynamic batch, metadata, activations, torch-free loading, errors, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_run

from digitlab.errors import DataError, ExportError
from digitlab.export import (
    PARITY_IMAGES,
    export_onnx,
    synthetic_images,
)
from digitlab.inference.onnx_predictor import FORMAT_TAG, OnnxPredictor
from digitlab.inference.predictor import load_predictor

onnx = pytest.importorskip("onnx")


def _images(n: int, seed: int = 1) -> np.ndarray:
    return synthetic_images(n, seed)


@pytest.fixture(scope="module")
def mlp_onnx(mlp_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "mlp.onnx"
    result = export_onnx(mlp_run, out)
    return out, result


@pytest.fixture(scope="module")
def cnn_onnx(cnn_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    result = export_onnx(cnn_run, out)
    return out, result


def _torch(run):
    from digitlab.inference.torch_predictor import TorchPredictor

    return TorchPredictor(run)


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_export_agrees_with_pytorch_and_reloads(which, request):
    run = request.getfixturevalue(f"{which}_run")
    path, result = request.getfixturevalue(f"{which}_onnx")
    assert result.path == str(path) and path.is_file() and result.size_bytes == path.stat().st_size
    assert result.format == "onnx" and result.opset == 18 and result.exporter == "dynamo"
    assert result.parity_images == PARITY_IMAGES and result.labels_identical
    assert 0 <= result.max_abs_diff <= 1e-4
    assert not list(path.parent.glob("*.part"))

    onnx_p, torch_p = OnnxPredictor(path), _torch(run)
    x = _images(200)
    a, b = onnx_p.predict_proba(x), torch_p.predict_proba(x)
    assert a.dtype == np.float32 and a.shape == (200, 10)
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)  # softmax is in the graph
    assert float(np.abs(a - b).max()) <= 1e-4
    assert np.array_equal(a.argmax(1), b.argmax(1))
    # float input in [0, 1] gives the same answer as uint8
    np.testing.assert_array_equal(onnx_p.predict_proba(x.astype(np.float32) / 255), a)


@pytest.mark.parametrize("which", ["mlp", "cnn"])
@pytest.mark.parametrize("batch", [1, 300])
def test_dynamic_batch(which, batch, request):
    path, _ = request.getfixturevalue(f"{which}_onnx")
    p = OnnxPredictor(path)
    x = _images(batch, seed=batch)
    probs = p.predict_proba(x)
    assert probs.shape == (batch, 10)
    ref = _torch(request.getfixturevalue(f"{which}_run")).predict_proba(x)
    assert float(np.abs(probs - ref).max()) <= 1e-4
    assert p.predict_proba(x[0]).shape == (1, 10)  # a single (28, 28) image
    assert p.predict_proba(np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)


def test_metadata_travels_with_the_file(mlp_run, mlp_onnx):
    path, _ = mlp_onnx
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    config = json.loads((mlp_run / "config.json").read_text())
    metrics = json.loads((mlp_run / "metrics.json").read_text())
    assert meta["digitlab_format"] == FORMAT_TAG
    assert meta["model_name"] == "mlp"
    assert json.loads(meta["labels"]) == [str(i) for i in range(10)]
    assert json.loads(meta["config"]) == config
    assert json.loads(meta["metrics"]) == metrics
    assert float(meta["test_accuracy"]) == metrics["test_accuracy"]
    spec = json.loads(meta["input"])
    assert spec["shape"] == ["N", 28, 28] and spec["dtype"] == "float32" and spec["normalisation"] == "x / 255"
    assert json.loads(meta["activations"]) == ["act", "act_1"]
    assert model.opset_import[0].version >= 17
    # the graph: one input (batch, 28, 28), a dynamic batch on every output
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "images" and dims[0].dim_param and [d.dim_value for d in dims[1:]] == [28, 28]
    assert [o.name for o in model.graph.output] == ["probabilities", "act", "act_1"]
    assert all(o.type.tensor_type.shape.dim[0].dim_param for o in model.graph.output)

    rows = json.loads(meta["architecture"])
    assert [(r["name"], r["kind"], r["output_shape"], r["params"]) for r in rows] == [
        ("flatten", "Flatten", [None, 784], 0), ("dense", "Linear", [None, 128], 100_480),
        ("act", "ReLU", [None, 128], 0), ("dense_1", "Linear", [None, 64], 8_256),
        ("act_1", "ReLU", [None, 64], 0), ("dense_2", "Linear", [None, 10], 650)]
    assert meta["parameters"] == "109386"

    p = load_predictor(path)
    assert isinstance(p, OnnxPredictor)
    assert p.name == "mlp" and p.metrics == metrics and p.labels == [str(i) for i in range(10)]
    assert p.config == {**config, "architecture": rows, "parameters": 109_386}


@pytest.mark.parametrize("which,shapes", [
    ("mlp", {"act": (3, 128), "act_1": (3, 64)}),
    ("cnn", {"act": (3, 32, 26, 26), "act_1": (3, 64, 11, 11), "act_2": (3, 128)}),
])
def test_activations_match_pytorch(which, shapes, request):
    path, result = request.getfixturevalue(f"{which}_onnx")
    assert result.outputs == ["probabilities", *shapes]
    x = _images(3, seed=7)
    got = OnnxPredictor(path).activations(x)
    ref = _torch(request.getfixturevalue(f"{which}_run")).activations(x)
    assert {k: v.shape for k, v in got.items()} == shapes
    assert list(got) == list(ref)
    for k in shapes:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-4)


@pytest.mark.realdata
def test_parity_on_real_test_images(mnist, data_dir, tmp_path):
    (x_train, y_train), (x_test, y_test) = mnist
    run = make_run(tmp_path / "real", "mlp", steps=200, data=(x_train[:6000], y_train[:6000]))
    result = export_onnx(run, data_dir=data_dir)
    assert result.path == str(run / "model.onnx") and (run / "model.onnx").is_file()
    assert result.parity_source == "test" and result.parity_images == 256 and result.notes == []
    assert result.labels_identical and result.max_abs_diff <= 1e-4
    assert result.parity_line() == (
        f"parity on 256 test images: max |diff| = {result.max_abs_diff:.1e}, labels identical")
    p = OnnxPredictor(run / "model.onnx")
    acc = float((p.predict_proba(x_test[:2000]).argmax(1) == y_test[:2000]).mean())
    assert acc > 0.8


def test_without_the_dataset_parity_uses_synthetic_images(mlp_run, tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.keras either
    result = export_onnx(mlp_run, tmp_path / "m.onnx", exporter="torchscript")
    assert result.parity_source == "synthetic" and result.parity_images == 256
    assert result.parity_line().startswith("parity on 256 synthetic images: max |diff| = ")
    assert "not available here" in result.notes[0]
    # an explicit --data-dir that holds nothing is an error, not a silent fallback
    with pytest.raises(DataError):
        export_onnx(mlp_run, tmp_path / "n.onnx", data_dir=tmp_path / "nowhere", exporter="torchscript")
    assert not (tmp_path / "n.onnx").exists()


def test_falls_back_to_the_torchscript_exporter(mlp_run, tmp_path, monkeypatch):
    import torch

    real = torch.onnx.export

    def no_dynamo(*args, **kwargs):
        if kwargs.get("dynamo", True):
            raise RuntimeError("torch.export cannot trace this model")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    result = export_onnx(mlp_run, tmp_path / "ts.onnx")
    assert result.exporter == "torchscript" and result.labels_identical and result.max_abs_diff <= 1e-4
    p = OnnxPredictor(tmp_path / "ts.onnx")
    assert p.predict_proba(_images(300)).shape == (300, 10)
    assert set(p.activations(_images(1))) == {"act", "act_1"}
    with pytest.raises(ExportError, match=r"^ONNX export failed \(dynamo exporter: torch.export cannot trace"):
        export_onnx(mlp_run, tmp_path / "d.onnx", exporter="dynamo")
    assert not (tmp_path / "d.onnx").exists()


def test_failed_parity_is_an_error_and_leaves_nothing(mlp_run, tmp_path, monkeypatch):
    """A wrong graph (one weight perturbed after export) is caught; an existing file stays as it was."""
    from onnx import numpy_helper

    import digitlab.export as ex

    real = ex._to_proto

    def perturbed(*args, **kwargs):
        proto, used = real(*args, **kwargs)
        init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        w = numpy_helper.to_array(init).copy()
        w += 0.05
        init.CopyFrom(numpy_helper.from_array(w, init.name))
        return proto, used

    monkeypatch.setattr(ex, "_to_proto", perturbed)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(ExportError, match=r"^the exported model disagrees with PyTorch \(parity on 256 .* "
                                          r"tolerance 0.0001\); nothing was written$"):
        export_onnx(mlp_run, out, exporter="torchscript")
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_onnx_predictor_works_without_torch(cnn_onnx):
    path, _ = cnn_onnx
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from digitlab.inference.predictor import load_predictor\n"
        f"p = load_predictor({str(path)!r})\n"
        "x = np.zeros((2, 28, 28), np.uint8); x[:, 8:20, 12:16] = 255\n"
        "probs = p.predict_proba(x)\n"
        "acts = p.activations(x)\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
        "print(p.name, probs.shape, round(float(probs.sum()), 4), sorted(acts), acts['act'].shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cnn (2, 10) 2.0 ['act', 'act_1', 'act_2'] (2, 32, 26, 26)"


def _foreign_model(input_shape, output_shape, metadata=None) -> bytes:
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, output_shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["probabilities"])], "foreign", [inp], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model.SerializeToString()


def test_corrupt_text_and_foreign_files_are_clear_errors(mlp_onnx, tmp_path):
    path, _ = mlp_onnx
    data = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match=rf"^{cut}: not a readable ONNX model \(.+\)$"):
        load_predictor(cut)

    text = tmp_path / "x.onnx"
    text.write_text("this is not a model\n")
    with pytest.raises(ExportError, match=rf"^{text}: not a readable ONNX model \(.*INVALID_PROTOBUF.*\)$"):
        load_predictor(text)

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ExportError, match=r"empty file, not an ONNX model"):
        load_predictor(empty)

    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(_foreign_model(["N", 10], ["N", 10]))
    with pytest.raises(ExportError) as e:
        load_predictor(foreign)
    assert str(e.value) == (f"{foreign}: an ONNX model, but not one exported by digitlab (no digitlab metadata); "
                            "export a run with 'digitlab export RUN'")

    meta = {"digitlab_format": FORMAT_TAG, "model_name": "mlp", "labels": json.dumps(list("0123456789")),
            "config": "{}", "metrics": ""}
    flat = tmp_path / "flat.onnx"
    flat.write_bytes(_foreign_model(["N", 784], ["N", 784], meta))
    with pytest.raises(ExportError, match=r"expected one float input of shape \(N, 28, 28\), got x tensor\(float\)"):
        load_predictor(flat)
    wrong_out = tmp_path / "wrong_out.onnx"
    wrong_out.write_bytes(_foreign_model(["N", 28, 28], ["N", 28, 28], meta))
    with pytest.raises(ExportError, match=r"expected an output 'probabilities' of shape \(N, 10\)"):
        load_predictor(wrong_out)

    with pytest.raises(ExportError, match=r"no such file"):
        load_predictor(tmp_path / "missing.onnx")
    assert isinstance(load_predictor(path), OnnxPredictor)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlab", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_export(mlp_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    proc = _cli("export", str(run), "--format", "onnx")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"Exported mlp to {run / 'model.onnx'} (") and "opset 18" in lines[0]
    assert lines[0].endswith("outputs: probabilities, act, act_1)")
    assert lines[1].startswith("parity on 256 ") and lines[1].endswith(", labels identical")
    assert "Traceback" not in proc.stderr and "torchvision" not in proc.stderr
    assert isinstance(load_predictor(run / "model.onnx"), OnnxPredictor)

    proc = _cli("export", str(run), "-o", str(tmp_path / "out" / "m.onnx"), "--json", "--no-activations",
                "--exporter", "torchscript", "--opset", "17")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["path"] == str(tmp_path / "out" / "m.onnx") and report["outputs"] == ["probabilities"]
    assert report["exporter"] == "torchscript" and report["opset"] == 17 and report["max_act_diff"] is None
    assert report["labels_identical"] is True and report["max_abs_diff"] <= 1e-4 and report["parity_images"] == 256
    plain = OnnxPredictor(tmp_path / "out" / "m.onnx")
    assert plain.activations(_images(2)) == {} and plain.predict_proba(_images(2)).shape == (2, 10)

    proc = _cli("export", str(run), "--format", "tflite")
    assert proc.returncode == 1 and proc.stderr.strip() == "error: unknown export format 'tflite'; choose one of: onnx"
    proc = _cli("export", str(tmp_path / "nope"))
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last == f"error: {tmp_path / 'nope'}: no such run folder"
