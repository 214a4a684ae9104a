"""ONNX export of a run, with a parity check, and :class:`OnnxPredictor` to run the exported file.

An exported model takes float32 images ``(N, 28, 28)`` in [0, 1] (white ink on black, pixels / 255)
named ``images``, with a dynamic batch dimension, and returns ``probabilities`` ``(N, K)`` (the
softmax is part of the graph) plus every hidden activation layer as an extra named output
(``act``, ``act_1``... the names of :meth:`digitlab.models.Net.activations`). The run's labels,
input specification, model name, config.json, metrics and test accuracy travel in the model's
``metadata_props``, so the file alone is enough to predict, evaluate and serve.

This module does not import torch at the top: :class:`OnnxPredictor` needs only numpy and
onnxruntime. :func:`export_onnx` imports torch (and onnx) when it is called.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.errors import DataError, ExportError
from digitlab.preprocess import image_batch, to_float

FORMATS = ("onnx",)
FORMAT_TAG = "digitlab-onnx/1"  # metadata "digitlab_format": marks a file this module wrote
DEFAULT_OPSET = 18
MIN_OPSET = 17
DEFAULT_FILENAME = "model.onnx"
INPUT_NAME = "images"
PROBS_NAME = "probabilities"
PARITY_IMAGES = 256
PARITY_TOLERANCE = 1e-4
INPUT_SPEC = {
    "name": INPUT_NAME,
    "shape": ["N", 28, 28],
    "dtype": "float32",
    "range": [0.0, 1.0],
    "normalisation": "x / 255",
    "polarity": "white ink on black",
}
EXPORTERS = ("auto", "dynamo", "torchscript")


# --------------------------------------------------------------------------------------------
# running an exported model (numpy + onnxruntime only)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


class OnnxPredictor:
    """A :class:`digitlab.predict.Predictor` over an ``.onnx`` file written by :func:`export_onnx`.

    ``threads`` caps onnxruntime's intra-op threads (default: onnxruntime's choice). Raises
    :class:`~digitlab.errors.ExportError` for a missing, corrupt or foreign file.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            raise ExportError(f"{self.path}: is a folder, expected an .onnx file from 'digitlab export'")
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise ExportError(f"{self.path}: no such file; export a run with 'digitlab export RUN'") from None
        except OSError as e:
            raise ExportError(f"{self.path}: cannot read ({e.strerror or e})") from None
        self._load(data, str(self.path), threads)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<onnx bytes>", threads: int | None = None) -> OnnxPredictor:
        """The same from the file's bytes (``name`` is used in error messages)."""
        self = cls.__new__(cls)
        self.path = None
        self._load(data, name, threads)
        return self

    def _load(self, data: bytes, name: str, threads: int | None) -> None:
        import onnxruntime as ort

        if not data:
            raise ExportError(f"{name}: empty file, not an ONNX model; export a run with 'digitlab export RUN'")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings on stderr
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's InvalidProtobuf, InvalidArgument, Fail, InvalidGraph...
            raise ExportError(f"{name}: not a readable ONNX model ({_one_line(e)})") from None
        meta = dict(session.get_modelmeta().custom_metadata_map)
        if meta.get("digitlab_format") != FORMAT_TAG:
            raise ExportError(f"{name}: an ONNX model, but not one exported by digitlab (no digitlab metadata); "
                              "export a run with 'digitlab export RUN'")
        try:
            labels = [str(s) for s in json.loads(meta["labels"])]
            config = json.loads(meta["config"])
            metrics = json.loads(meta["metrics"]) if meta.get("metrics") else None
            architecture = json.loads(meta["architecture"]) if meta.get("architecture") else None
            parameters = int(meta["parameters"]) if meta.get("parameters") else None
            act_names = [str(s) for s in json.loads(meta.get("activations", "[]"))]
            model_name = meta["model_name"]
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{name}: digitlab metadata is incomplete or not valid JSON ({_one_line(e)})") from None
        inputs = session.get_inputs()
        if (len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 3
                or list(inputs[0].shape[1:]) != [28, 28]):
            got = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            raise ExportError(f"{name}: expected one float input of shape (N, 28, 28), got {got}")
        outputs = {o.name: o for o in session.get_outputs()}
        probs = outputs.get(PROBS_NAME)
        if probs is None or len(probs.shape) != 2 or probs.shape[1] != len(labels):
            got = "none" if probs is None else str(probs.shape)
            raise ExportError(f"{name}: expected an output '{PROBS_NAME}' of shape (N, {len(labels)}), got {got}")
        missing = [a for a in act_names if a not in outputs]
        if missing:
            raise ExportError(f"{name}: metadata names activation outputs the graph lacks: {', '.join(missing)}")
        self._session = session
        self._input = inputs[0].name
        self._act_names = act_names
        if isinstance(config, dict):  # the layer table and size, for pages that describe the model
            if architecture is not None:
                config.setdefault("architecture", architecture)
            if parameters is not None:
                config.setdefault("parameters", parameters)
        self.name: str = model_name
        self.config: dict = config
        self.metrics: dict | None = metrics
        self.labels: list[str] = labels
        self.metadata: dict[str, str] = meta

    def _input_array(self, images: np.ndarray) -> np.ndarray:
        return image_batch(images)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 [0, 255] or float32 [0, 1] -> (N, K) float32 probabilities."""
        x = self._input_array(images)
        if len(x) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        (probs,) = self._session.run([PROBS_NAME], {self._input: x})
        return np.asarray(probs, dtype=np.float32)

    def activations(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Hidden activation outputs by layer name (``act``, ``act_1``...), as PyTorch lays them out."""
        if not self._act_names:
            return {}
        x = self._input_array(images)
        values = self._session.run(self._act_names, {self._input: x})
        return {k: np.asarray(v, dtype=np.float32) for k, v in zip(self._act_names, values, strict=True)}

    def run_all(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output (probabilities and activations) in one pass."""
        names = [PROBS_NAME, *self._act_names]
        values = self._session.run(names, {self._input: self._input_array(images)})
        return dict(zip(names, values, strict=True))


# --------------------------------------------------------------------------------------------
# exporting a run (imports torch)


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how well the file agrees with PyTorch."""

    path: str
    format: str
    size_bytes: int
    opset: int
    exporter: str                 # "dynamo" (torch.export) or "torchscript" (the fallback)
    model: str
    outputs: list[str]
    parity_images: int
    parity_source: str            # "test" (real test images) or "synthetic"
    max_abs_diff: float           # probabilities, ONNX vs PyTorch
    max_act_diff: float | None    # activations, relative to their scale
    labels_identical: bool
    notes: list[str] = field(default_factory=list)

    def parity_line(self) -> str:
        what = "test images" if self.parity_source == "test" else "synthetic images"
        labels = "labels identical" if self.labels_identical else "labels DIFFER"
        return f"parity on {self.parity_images} {what}: max |diff| = {self.max_abs_diff:.1e}, {labels}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthetic_images(n: int = PARITY_IMAGES, seed: int = 0) -> np.ndarray:
    """``n`` deterministic digit-like uint8 images: a few bright strokes on a dark, noisy background."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
    for i in range(n):
        for _ in range(int(rng.integers(2, 5))):
            r0, c0 = rng.integers(4, 20, 2)
            h, w = rng.integers(2, 9, 2)
            x[i, r0 : r0 + h, c0 : c0 + w] = rng.integers(160, 256)
    return x


def parity_images(config: dict, data_dir: str | os.PathLike | None = None,
                  n: int = PARITY_IMAGES) -> tuple[np.ndarray, str, str | None]:
    """``(images, source, note)``: the first ``n`` test images of the run's dataset, read from
    ``data_dir`` / ``$DIGITLAB_DATA_DIR`` / the cache (never downloaded), or ``n`` synthetic images
    when the dataset is not there (``note`` says why). A ``data_dir`` given explicitly must work."""
    from digitlab.datasets import load_data

    name = config.get("dataset") or "mnist"
    try:
        _, (x_test, _) = load_data(name, data_dir=data_dir, download_missing=False, quiet=True)
    except DataError:
        if data_dir is not None:
            raise
        return synthetic_images(n), "synthetic", (f"the {name} test set is not available here, so the parity check "
                                                  "used synthetic images; pass --data-dir (or set "
                                                  "$DIGITLAB_DATA_DIR) to check on real test images")
    return np.ascontiguousarray(x_test[:n]), "test", None


def _labels_for(config: dict) -> list[str]:
    if config.get("labels"):
        return [str(s) for s in config["labels"]]
    from digitlab.datasets import DATASETS

    ds = DATASETS.get(config.get("dataset", "mnist"))
    return list(ds.classes) if ds else [str(i) for i in range(10)]


def _metadata(config: dict, metrics: dict | None, labels: list[str], net, act_names: list[str],
              run_dir: Path) -> dict[str, str]:
    from digitlab import __version__
    from digitlab.models import count_params, summary_rows

    rows = [{"name": r.name, "kind": r.kind, "output_shape": list(r.output_shape), "params": int(r.params)}
            for r in summary_rows(net)]
    test_acc = (metrics or {}).get("test_accuracy")
    return {
        "digitlab_format": FORMAT_TAG,
        "digitlab_version": str(__version__),
        "model_name": net.name,
        "labels": json.dumps(labels),
        "input": json.dumps(INPUT_SPEC),
        "normalisation": "x / 255",
        "outputs": json.dumps({PROBS_NAME: "softmax probabilities (N, K)",
                               **{a: "hidden activation" for a in act_names}}),
        "activations": json.dumps(act_names),
        "config": json.dumps(config),
        "architecture": json.dumps(rows),
        "parameters": str(count_params(net)),
        "metrics": json.dumps(metrics) if metrics is not None else "",
        "test_accuracy": "" if test_acc is None else repr(float(test_acc)),
        "source_run": run_dir.name,
    }


def _export_module(net):
    """An nn.Module returning ``(probabilities, *activations)`` for float images (N, 28, 28)."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor):
            logits, acts = self.net.trace(x)
            return (torch.softmax(logits.float(), dim=1), *acts.values())

    return Exported(net).eval()


@contextlib.contextmanager
def _quiet_exporter():
    """Keep the exporters' progress prints, warnings and log lines off the user's terminal."""
    captured = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            warnings.simplefilter("ignore")
            yield captured
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _to_proto(module, example, out_names: list[str], opset: int, exporter: str):
    """Export ``module`` to an onnx ModelProto with a dynamic batch; ``(proto, exporter_used)``."""
    import onnx
    import torch

    problems: list[str] = []
    if exporter in ("auto", "dynamo"):
        try:
            with _quiet_exporter():
                batch = torch.export.Dim("batch", min=1, max=1 << 20)
                program = torch.onnx.export(module, (example,), dynamo=True, input_names=[INPUT_NAME],
                                            output_names=out_names, opset_version=opset,
                                            dynamic_shapes=({0: batch},), verbose=False)
            return program.model_proto, "dynamo"
        except Exception as e:  # the torch.export path can fail on unusual models; fall back below
            problems.append(f"dynamo exporter: {_one_line(e)}")
            if exporter == "dynamo":
                raise ExportError(f"ONNX export failed ({problems[0]})") from None
    try:
        buf = io.BytesIO()
        with _quiet_exporter():
            torch.onnx.export(module, (example,), buf, dynamo=False, input_names=[INPUT_NAME],
                              output_names=out_names, opset_version=opset,
                              dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *out_names]})
        return onnx.load_from_string(buf.getvalue()), "torchscript"
    except Exception as e:
        problems.append(f"torchscript exporter: {_one_line(e)}")
        raise ExportError(f"ONNX export failed ({'; '.join(problems)})") from None


def export_onnx(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    opset: int = DEFAULT_OPSET,
    activations: bool = True,
    exporter: str = "auto",
    tolerance: float = PARITY_TOLERANCE,
    n_images: int = PARITY_IMAGES,
) -> ExportResult:
    """Export a run folder to ONNX (default ``RUN/model.onnx``) and check it against PyTorch.

    The check runs the exported bytes in onnxruntime (through :class:`OnnxPredictor`, the same
    path ``digitlab predict``/``serve`` take) on ``n_images`` test images (see :func:`parity_images`)
    and needs probabilities within ``tolerance`` of PyTorch's and identical labels; otherwise it
    raises :class:`~digitlab.errors.ExportError` and writes nothing. The file is written atomically.
    ``exporter``: ``auto`` tries torch.export (dynamo) and falls back to the TorchScript exporter.
    """
    import torch

    from digitlab.formats import atomic_write_bytes
    from digitlab.runs import load_model, read_metrics

    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose one of: {', '.join(EXPORTERS)}")
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use {MIN_OPSET} or newer (default {DEFAULT_OPSET})")
    run_path = Path(run_dir)
    net, config = load_model(run_path)
    net = net.float().eval()
    metrics = read_metrics(run_path)
    labels = _labels_for(config)
    act_names = [n for n, _ in net.named_children() if n.startswith("act")] if activations else []
    out_path = Path(out) if out is not None else run_path / DEFAULT_FILENAME
    if out_path.is_dir():
        out_path = out_path / DEFAULT_FILENAME

    images, source, note = parity_images(config, data_dir, n_images)
    x = torch.from_numpy(to_float(images))
    module = _export_module(net)
    with torch.no_grad():
        proto, used = _to_proto(module, x[:2].clone(), [PROBS_NAME, *act_names], opset, exporter)
        reference = [t.float().numpy() for t in module(x)]
    meta = _metadata(config, metrics, labels, net, act_names, run_path)
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.doc_string = (f"digitlab {net.name} digit classifier. Input '{INPUT_NAME}': float32 (N, 28, 28) "
                        f"in [0, 1] (pixels / 255, white ink on black). Output '{PROBS_NAME}': (N, "
                        f"{len(labels)}) probabilities over labels {labels}.")
    data = proto.SerializeToString()

    predictor = OnnxPredictor.from_bytes(data, name=str(out_path))
    got = predictor.run_all(images)
    probs = np.asarray(got[PROBS_NAME], dtype=np.float32)
    ref_probs = reference[0]
    max_diff = float(np.abs(probs - ref_probs).max()) if len(probs) else 0.0
    same_labels = bool(np.array_equal(probs.argmax(1), ref_probs.argmax(1)))
    act_diff = None
    if act_names:
        act_diff = max(float(np.abs(got[a] - r).max() / max(1.0, float(np.abs(r).max())))
                       for a, r in zip(act_names, reference[1:], strict=True))
    result = ExportResult(
        path=str(out_path), format="onnx", size_bytes=len(data), opset=opset, exporter=used, model=net.name,
        outputs=[PROBS_NAME, *act_names], parity_images=len(images), parity_source=source,
        max_abs_diff=max_diff, max_act_diff=act_diff, labels_identical=same_labels,
        notes=[note] if note else [])
    if not (max_diff <= tolerance and same_labels):
        raise ExportError(f"the exported model disagrees with PyTorch ({result.parity_line()}, tolerance "
                          f"{tolerance:g}); nothing was written")
    if act_diff is not None and act_diff > tolerance:
        raise ExportError(f"the exported activations disagree with PyTorch (max relative |diff| = {act_diff:.1e}, "
                          f"tolerance {tolerance:g}); nothing was written")
    atomic_write_bytes(out_path, data)
    return result
