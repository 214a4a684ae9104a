"""ONNX export of a run, with a parity check; the file runs in :mod:`digitlab.inference.onnx_predictor`.

An exported model takes float32 images ``(N, 28, 28)`` in [0, 1] (white ink on black, pixels / 255)
named ``images``, with a dynamic batch dimension, and returns ``probabilities`` ``(N, K)`` (the
softmax is part of the graph) plus every hidden activation layer as an extra named output
(``act``, ``act_1``... the names of :meth:`digitlab.models.Net.activations`). The run's labels,
input specification, model name, config.json, metrics and test accuracy travel in the model's
``metadata_props``, so the file alone is enough to predict, evaluate and serve.

This module does not import torch at the top (options are checked first): :func:`export_onnx`
imports torch, onnx and the models when it is called.
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

from digitlab import __version__
from digitlab.data.datasets import load_data
from digitlab.data.formats import atomic_write_bytes
from digitlab.data.preprocess import to_float
from digitlab.errors import DataError, ExportError
from digitlab.inference.onnx_predictor import FORMAT_TAG, INPUT_NAME, PROBS_NAME, OnnxPredictor, _one_line
from digitlab.runs import read_metrics, run_labels

FORMATS = ("onnx",)
DEFAULT_OPSET = 18
MIN_OPSET = 17
DEFAULT_FILENAME = "model.onnx"
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


def _metadata(config: dict, metrics: dict | None, labels: list[str], net, act_names: list[str],
              run_dir: Path) -> dict[str, str]:
    from digitlab.models import architecture, count_params  # imports torch

    rows = architecture(net)
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

    from digitlab.models import load_model

    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose one of: {', '.join(EXPORTERS)}")
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use {MIN_OPSET} or newer (default {DEFAULT_OPSET})")
    run_path = Path(run_dir)
    net, config = load_model(run_path)
    net = net.float().eval()
    metrics = read_metrics(run_path)
    labels = run_labels(config)
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
