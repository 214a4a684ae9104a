"""Running an exported ``.onnx`` file (numpy + onnxruntime only, no torch).

The file format (input ``images`` float32 ``(N, 28, 28)`` in [0, 1], output ``probabilities``, the
hidden activations as extra outputs, digitlab's metadata) is written by :mod:`digitlab.export`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from digitlab.config import OnnxConfigSchema
from digitlab.data.preprocess import image_batch
from digitlab.errors import ExportError
from digitlab.schema import check

FORMAT_TAG = "digitlab-onnx/1"  # metadata "digitlab_format": marks a file digitlab exported
INPUT_NAME = "images"
PROBS_NAME = "probabilities"


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


class OnnxPredictor:
    """A :class:`digitlab.inference.predictor.Predictor` over an ``.onnx`` file written by :func:`export_onnx`.

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
        import onnxruntime as ort  # an optional dependency (the [onnx] extra): needed only to run a file

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
        check(OnnxConfigSchema, config, f"{name}: metadata 'config'", ExportError)
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
        self.architecture: list[dict] = architecture if isinstance(architecture, list) else []
        self.parameters: int | None = parameters
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

    def trace(self, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Probabilities and activations of the same pass."""
        got = self.run_all(images)
        proba = np.asarray(got.pop(PROBS_NAME), dtype=np.float32)
        return proba, {k: np.asarray(v, dtype=np.float32) for k, v in got.items()}

    def run_all(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output (probabilities and activations) in one pass."""
        names = [PROBS_NAME, *self._act_names]
        values = self._session.run(names, {self._input: self._input_array(images)})
        return dict(zip(names, values, strict=True))
