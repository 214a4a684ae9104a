"""The native engine: trains and runs ReLU MLPs and the tutorial's CNN on the CPU without importing torch.

The kernels live in ``_native.c``, built with the package into a small shared library and loaded
with ctypes. Importing torch costs 1.5-3 s here, more than the whole tutorial MLP takes to train
natively, so the CLI sends runs this engine can do (:func:`unsupported` says None) here and everything else to
the torch engine. Weights, checkpoints and optimizer state use the torch engine's names, shapes and
files: a run trained here evaluates, predicts, serves, exports and resumes like any other.
"""

from __future__ import annotations

import ctypes
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from digitlab import runs
from digitlab.config import OPTIMIZER_DEFAULTS, cpu_cores
from digitlab.errors import ConfigError, RunError
from digitlab.training.driver import EpochHook, Resume, run_epochs
from digitlab.training.engine import Split
from digitlab.training.loop import EpochState, History

_LIB: ctypes.CDLL | None = None
_LOAD_ERROR: str | None = None

_f32p = ctypes.POINTER(ctypes.c_float)
_i64p = ctypes.POINTER(ctypes.c_int64)
_ptrs = ctypes.POINTER(ctypes.c_void_p)


def _library_path() -> Path | None:
    here = Path(__file__).resolve().parent
    for pattern in ("_native.*.so", "_native.so", "_native.*.pyd", "_native*.dylib"):
        found = sorted(here.glob(pattern))
        if found:
            return found[0]
    return None


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None when the library was not built (see :func:`load_error`)."""
    global _LIB, _LOAD_ERROR
    if _LIB is not None or _LOAD_ERROR is not None:
        return _LIB
    path = _library_path()
    if path is None:
        _LOAD_ERROR = "the native library was not built with this installation"
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        _LOAD_ERROR = f"cannot load {path.name}: {e}"
        return None
    lib.dl_train.restype = ctypes.c_int
    lib.dl_train.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int)] + [_ptrs] * 6 + [
        ctypes.c_void_p, _i64p, _i64p, ctypes.c_int64, ctypes.c_int, _f32p, ctypes.c_int64,
        ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_int,
        ctypes.POINTER(ctypes.c_double), _i64p, ctypes.c_int]
    lib.dl_evaluate.restype = ctypes.c_int
    lib.dl_evaluate.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), _ptrs, _ptrs, ctypes.c_void_p, _i64p,
                                ctypes.c_int64, _f32p, ctypes.POINTER(ctypes.c_double), _i64p, ctypes.c_int]
    lib.dl_cnn_train.restype = ctypes.c_int
    lib.dl_cnn_train.argtypes = lib.dl_train.argtypes
    lib.dl_cnn_evaluate.restype = ctypes.c_int
    lib.dl_cnn_evaluate.argtypes = lib.dl_evaluate.argtypes
    lib.dl_kernels.restype = ctypes.c_int
    try:
        for name in ("dl_train_bytes", "dl_cnn_train_bytes"):
            getattr(lib, name).restype = ctypes.c_int64
            getattr(lib, name).argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    except AttributeError:
        _LOAD_ERROR = f"{path.name} is out of date: rebuild it with `python setup.py build_ext --inplace`"
        return None
    _LIB = lib
    return lib


def load_error() -> str | None:
    library()
    return _LOAD_ERROR


def available() -> bool:
    return library() is not None


def kernels() -> str:
    lib = library()
    if lib is None:
        return "unavailable"
    return "avx2+fma" if lib.dl_kernels() else "portable C"


def _accelerator_present() -> bool:
    """Whether ``--device auto`` would find a GPU (told without importing torch)."""
    if sys.platform == "darwin":
        return True  # Apple silicon: MPS
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd"))


# --- what the kernels can run: told before they run ---------------------------------------------

# The C library's answers (DL_ENOMEM, DL_EINVAL in _native.c) and limits (DL_MAXL layers, C ints).
_ENOMEM, _EINVAL = -1, -2
MAX_LAYERS = 16
_INT_MAX = 2**31 - 1
_CNN_ROWS = 26 * 26  # im2col rows per image of the first convolution: a batch's must fit a C int
CNN_DIMS = (784, 32, 64, 128, 10)


def network_dims(config: Any) -> list[int] | None:
    """The layer widths a native net for ``config`` has (input first), or None for other models."""
    opts = config.model_options
    if config.model == "mlp":
        return [28 * 28, *opts.get("hidden", (128, 64)), opts.get("num_classes", 10)]
    if config.model == "cnn":
        return list(CNN_DIMS)
    return None


def limits(dims: list[int], batch: int, cnn: bool = False) -> str | None:
    """Which of the kernels' size limits a network of layer widths ``dims`` trained ``batch`` at a
    time exceeds, or None."""
    if not cnn and len(dims) - 1 > MAX_LAYERS:
        return f"{len(dims) - 2} hidden layers (the native engine runs at most {MAX_LAYERS - 1})"
    if any(d > _INT_MAX for d in dims):
        return f"a layer of {max(dims)} units (the native engine runs at most {_INT_MAX})"
    top = _INT_MAX // _CNN_ROWS if cnn else _INT_MAX
    if not 1 <= batch <= top:
        return f"batch size {batch} (the native {'CNN' if cnn else 'engine'} takes 1 to {top})"
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def available_memory() -> int | None:
    """Bytes of memory that can still be had (the kernel's MemAvailable, within a cgroup's limit), or None."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    return min(found) if found else None


def _kernel_sizes(dims: list[int], cnn: bool) -> list[int]:
    if cnn:
        _, c1, c2, units, classes = dims
        return [9 * c1, 9 * c1 * c2, 25 * c2 * units, units * classes]
    return [a * b for a, b in zip(dims[:-1], dims[1:], strict=True)]


def _param_count(dims: list[int], cnn: bool) -> int:
    return sum(_kernel_sizes(dims, cnn)) + sum(dims[1:])


def too_large(config: Any) -> str | None:
    """Why no engine can train ``config`` in this machine's memory (its weights and Adam's two moments
    alone do not fit), or None. Told only for runs on the CPU, whose memory this is."""
    dims = network_dims(config)
    if dims is None or not _on_cpu(config):
        return None
    params = _param_count(dims, config.model == "cnn")
    need, have = 12 * params, available_memory()
    if have is None or need <= have:
        return None
    return (f"a model of {params:,} parameters needs at least {_gib(need)} of memory to train (its weights and "
            f"Adam's two moments) and {_gib(have)} are available: choose smaller --hidden sizes")


def train_memory(dims: list[int], batch: int, cnn: bool = False) -> int | None:
    """Bytes the native engine needs to train this network at this batch size: parameters, Adam
    moments, the kernels' buffers and the initialisation's float64 draw; None past its limits."""
    lib = library()
    if lib is None or limits(dims, batch, cnn) is not None:
        return None
    dims_c = (ctypes.c_int * len(dims))(*dims)
    buffers = (lib.dl_cnn_train_bytes if cnn else lib.dl_train_bytes)(len(dims) - 1, dims_c, batch)
    if buffers < 0:
        return None
    return 12 * _param_count(dims, cnn) + 8 * max(_kernel_sizes(dims, cnn)) + buffers


def _on_cpu(config: Any) -> bool:
    device = config.fit.device
    return device == "cpu" or (device == "auto" and not _accelerator_present())


def unsupported(config: Any) -> str | None:
    """Why the native engine cannot run ``config`` (a TrainConfig), or None when it can: what it does
    not implement, its size limits, and whether its memory need fits this machine."""
    fit = config.fit
    opts = config.model_options
    checks = [
        (config.model in ("mlp", "cnn"), f"model {config.model}"),
        (opts.get("activation", "relu") == "relu", f"activation {opts.get('activation')}"),
        (not opts.get("dropout"), "dropout"),
        (opts.get("num_classes", 10) == 10 or config.model == "mlp", "a CNN with other than 10 classes"),
        (fit.optimizer in ("adam", "adamw"), f"optimizer {fit.optimizer}"),
        (not fit.augment and not fit.degrade, "augmentation"),
        (not fit.label_smoothing, "label smoothing"),
        (not fit.bf16 and not fit.compile, "bf16/compile"),
        (_on_cpu(config), f"device {fit.device}"),
    ]
    for ok, what in checks:
        if not ok:
            return f"{what} needs the torch engine"
    dims, cnn = network_dims(config), config.model == "cnn"
    beyond = limits(dims, fit.batch_size, cnn)
    if beyond is not None:
        return beyond
    if not available():
        return load_error()
    need, have = train_memory(dims, fit.batch_size, cnn), available_memory()
    if need is None:
        return f"layer widths {dims} at batch size {fit.batch_size} (refused by the native kernels)"
    if have is not None and need > have:
        batch_part = need - train_memory(dims, 1, cnn)
        return (f"training at batch size {fit.batch_size} needs about {_gib(need)} of memory ({_gib(batch_part)} "
                f"of it for the batch) and {_gib(have)} are available")
    return None


def _raise_for(rc: int, what: str, net: NativeMLP, batch: int) -> None:
    """The C library's answer ``rc`` as the error it means (nothing when it is 0)."""
    if rc == 0:
        return
    if rc == _ENOMEM:
        if what != "training":
            raise ConfigError(f"the native engine could not allocate its {what} buffers: out of memory")
        need = train_memory(net.dims, batch, isinstance(net, NativeCNN))
        size = f" the {_gib(need)} it needs" if need is not None else " what it needs"
        raise ConfigError(f"the native engine could not allocate{size} to train at batch size {batch}: out of "
                          f"memory; try a smaller --batch-size")
    if rc == _EINVAL:
        beyond = limits(net.dims, batch, isinstance(net, NativeCNN))
        raise ConfigError(f"the native engine cannot run {beyond or f'layer widths {net.dims} at batch size {batch}'}")
    raise RuntimeError(f"the native engine's {what} failed with code {rc}")


def _ptr_array(arrays: list[np.ndarray]) -> ctypes.Array:
    return (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])


def _rows(x: np.ndarray, width: int) -> np.ndarray:
    x = np.ascontiguousarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"the native engine reads uint8 images, got {x.dtype}")
    return x.reshape(len(x), width)


class NativeMLP:
    """A ReLU MLP's parameters and Adam state as numpy arrays, trained and run by the native kernels.

    ``dims`` are the layer widths, input first: the tutorial's network is ``(784, 128, 64, 10)``.
    Kernels are stored input-major ``(in, out)``; :meth:`state_dict` gives torch's ``(out, in)``.
    """

    _train_fn = "dl_train"
    _evaluate_fn = "dl_evaluate"

    def __init__(self, dims: list[int], seed: int = 0):
        if library() is None:
            raise RuntimeError(f"native engine unavailable: {load_error()}")
        self.dims = [int(d) for d in dims]
        self.L = len(self.dims) - 1
        beyond = limits(self.dims, 1, isinstance(self, NativeCNN))
        if beyond is not None:
            raise ConfigError(f"the native engine cannot run {beyond}")
        self.names = self._names()
        rng = np.random.default_rng(seed)
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        for shape, (fan_in, fan_out) in zip(self._shapes(), self._fans(), strict=True):
            limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot-uniform, as Keras initialises kernels
            self.W.append(rng.uniform(-limit, limit, shape).astype(np.float32))
            self.b.append(np.zeros(shape[1], np.float32))
        self.mW = [np.zeros_like(w) for w in self.W]
        self.vW = [np.zeros_like(w) for w in self.W]
        self.mb = [np.zeros_like(b) for b in self.b]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.step = 0  # Adam steps taken
        self._dims_c = (ctypes.c_int * len(self.dims))(*self.dims)
        self._refresh()

    # --- the layout of the kernels, against torch's ---------------------------------------------

    def _names(self) -> list[str]:
        return ["dense"] + [f"dense_{i}" for i in range(1, self.L)]

    def _shapes(self) -> list[tuple[int, int]]:
        """Each kernel as the native code stores it: (inputs, outputs)."""
        return list(zip(self.dims[:-1], self.dims[1:], strict=True))

    def _fans(self) -> list[tuple[int, int]]:
        return self._shapes()

    def _to_torch(self, i: int, a: np.ndarray) -> np.ndarray:
        """Kernel ``i`` (or a moment of it) in torch's shape and order."""
        return np.ascontiguousarray(a.T)

    def _from_torch(self, i: int, t: np.ndarray) -> np.ndarray:
        return t.T

    def _refresh(self) -> None:
        self._p = [_ptr_array(a) for a in (self.W, self.b, self.mW, self.vW, self.mb, self.vb)]

    # --- training and inference ---------------------------------------------------------------

    def train_steps(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray, batch_size: int, lrs: np.ndarray, *,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-7, weight_decay: float = 0.0,
                    decoupled: bool = False, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Adam steps over ``x[idx]`` in batches of ``batch_size``; ``lrs[s]`` is step s's learning rate.

        Returns each step's summed loss and number of correct predictions."""
        beyond = limits(self.dims, batch_size, isinstance(self, NativeCNN))
        if beyond is not None:
            raise ConfigError(f"the native engine cannot run {beyond}")
        x = _rows(x, self.dims[0])
        y = np.ascontiguousarray(y, dtype=np.int64)
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        if len(y) != len(x):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(x)):
            raise ValueError(f"sample indices must lie in [0, {len(x)})")
        if len(y) and (y.min() < 0 or y.max() >= self.dims[-1]):
            raise ValueError(f"labels must lie in [0, {self.dims[-1]})")
        steps = -(-len(idx) // batch_size)
        lrs = np.ascontiguousarray(lrs, dtype=np.float32)
        if len(lrs) != steps:
            raise ValueError(f"{steps} steps need {steps} learning rates, got {len(lrs)}")
        loss = np.zeros(steps, np.float64)
        correct = np.zeros(steps, np.int64)
        rc = getattr(library(), self._train_fn)(
            self.L, self._dims_c, *self._p, x.ctypes.data, y.ctypes.data_as(_i64p), idx.ctypes.data_as(_i64p),
            len(idx), batch_size, lrs.ctypes.data_as(_f32p), self.step, betas[0], betas[1], eps, weight_decay,
            int(decoupled), loss.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), correct.ctypes.data_as(_i64p),
            threads)
        _raise_for(rc, "training", self, batch_size)
        self.step += steps
        return loss, correct

    def _forward(self, x: np.ndarray, y: np.ndarray | None, probs: bool, threads: int):
        x = _rows(x, self.dims[0])
        y_arr = None if y is None else np.ascontiguousarray(y, dtype=np.int64)
        if y_arr is not None and (len(y_arr) != len(x) or (len(y_arr) and (y_arr.min() < 0
                                                                             or y_arr.max() >= self.dims[-1]))):
            raise ValueError(f"expected {len(x)} labels in [0, {self.dims[-1]})")
        out = np.empty((len(x), self.dims[-1]), np.float32) if probs else None
        loss, correct = ctypes.c_double(0.0), ctypes.c_int64(0)
        rc = getattr(library(), self._evaluate_fn)(
            self.L, self._dims_c, self._p[0], self._p[1], x.ctypes.data,
            None if y_arr is None else y_arr.ctypes.data_as(_i64p), len(x),
            None if out is None else out.ctypes.data_as(_f32p), ctypes.byref(loss), ctypes.byref(correct), threads)
        _raise_for(rc, "inference", self, 1)
        return loss.value, correct.value, out

    def evaluate(self, x: np.ndarray, y: np.ndarray, threads: int = 1) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on uint8 images ``x`` and labels ``y``."""
        loss, correct, _ = self._forward(x, y, False, threads)
        n = max(1, len(x))
        return loss / n, correct / n

    def predict(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """(N, classes) softmax probabilities for uint8 images ``x``."""
        return self._forward(x, None, True, threads)[2]

    # --- torch-compatible state -----------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights under torch's names and shapes (``dense.weight`` is ``(out, in)``)."""
        out: dict[str, np.ndarray] = {}
        for i, (name, w, b) in enumerate(zip(self.names, self.W, self.b, strict=True)):
            out[f"{name}.weight"] = self._to_torch(i, w)
            out[f"{name}.bias"] = b.copy()
        return out

    def load_state_dict(self, tensors: dict[str, np.ndarray]) -> None:
        for i, name in enumerate(self.names):
            w = np.asarray(tensors[f"{name}.weight"], np.float32)
            expected = self._to_torch(i, self.W[i]).shape
            if w.shape != expected:
                raise ValueError(f"{name}.weight has shape {w.shape}, expected {expected}")
            self.W[i][...] = self._from_torch(i, w)
            self.b[i][...] = np.asarray(tensors[f"{name}.bias"], np.float32)

    def optimizer_state(self, lr: float, betas: tuple[float, float], eps: float, weight_decay: float,
                        decoupled: bool) -> tuple[dict[str, np.ndarray], dict]:
        """Adam state flattened as the torch engine's checkpoints store it: ``(tensors, meta)``."""
        tensors: dict[str, np.ndarray] = {}
        for i in range(self.L):
            for k, (m, v, transpose) in enumerate(((self.mW[i], self.vW[i], True), (self.mb[i], self.vb[i], False))):
                pid = 2 * i + k
                for key, a in zip(runs.ADAM_MOMENTS, (m, v), strict=True):
                    tensors[runs.adam_tensor_name(pid, key)] = self._to_torch(i, a) if transpose else a.copy()
                tensors[runs.adam_tensor_name(pid, "step")] = np.asarray(float(self.step), np.float32)
        group = runs.adam_param_group(lr, betas, eps, weight_decay, decoupled, list(range(2 * self.L)))
        return tensors, {"param_groups": [group], "plain": {}}

    def load_optimizer_state(self, tensors: dict[str, np.ndarray]) -> None:
        steps = set()
        for i in range(self.L):
            for k, (m, v, transpose) in enumerate(((self.mW[i], self.vW[i], True), (self.mb[i], self.vb[i], False))):
                pid = 2 * i + k
                for dst, key in zip((m, v), runs.ADAM_MOMENTS, strict=True):
                    src = np.asarray(tensors[runs.adam_tensor_name(pid, key)], np.float32)
                    dst[...] = self._from_torch(i, src) if transpose else src
                step = tensors.get(runs.adam_tensor_name(pid, "step"))
                if step is not None:
                    steps.add(int(np.asarray(step).item()))
        if len(steps) > 1:
            raise ValueError("the checkpoint's parameters were stepped different numbers of times")
        self.step = steps.pop() if steps else 0

    def count_params(self) -> int:
        return sum(w.size + b.size for w, b in zip(self.W, self.b, strict=True))


class NativeCNN(NativeMLP):
    """The tutorial's CNN on the native kernels: Conv(32, 3x3) -> MaxPool -> ReLU -> Conv(64, 3x3) ->
    MaxPool -> ReLU -> Flatten -> Dense(128, ReLU) -> Dense(10), on 28x28 images.

    ``dims`` is ``(784, conv1 channels, conv2 channels, dense units, classes)``. Convolution kernels
    are stored ``(ky, kx, c_in) x c_out`` and the first dense layer's rows in channels-last order;
    :meth:`state_dict` gives torch's layouts (``(c_out, c_in, 3, 3)``, flatten in (c, y, x) order).
    """

    _train_fn = "dl_cnn_train"
    _evaluate_fn = "dl_cnn_evaluate"

    def __init__(self, dims: list[int] = (784, 32, 64, 128, 10), seed: int = 0):
        if len(dims) != 5 or dims[0] != 784:
            raise ValueError(f"a native CNN takes dims (784, c1, c2, units, classes), got {dims}")
        super().__init__(list(dims), seed)

    def _names(self) -> list[str]:
        return ["conv2d", "conv2d_1", "dense", "dense_1"]

    def _shapes(self) -> list[tuple[int, int]]:
        _, c1, c2, units, classes = self.dims
        return [(9, c1), (9 * c1, c2), (25 * c2, units), (units, classes)]

    def _fans(self) -> list[tuple[int, int]]:
        _, c1, c2, units, classes = self.dims
        return [(9, 9 * c1), (9 * c1, 9 * c2), (25 * c2, units), (units, classes)]

    def _to_torch(self, i: int, a: np.ndarray) -> np.ndarray:
        _, c1, c2, units, _ = self.dims
        if i < 2:
            cin, cout = (1, c1) if i == 0 else (c1, c2)
            return np.ascontiguousarray(a.reshape(3, 3, cin, cout).transpose(3, 2, 0, 1))
        if i == 2:
            return np.ascontiguousarray(a.reshape(5, 5, c2, units).transpose(3, 2, 0, 1).reshape(units, 25 * c2))
        return np.ascontiguousarray(a.T)

    def _from_torch(self, i: int, t: np.ndarray) -> np.ndarray:
        _, c1, c2, units, _ = self.dims
        if i < 2:
            return t.transpose(2, 3, 1, 0).reshape(self.W[i].shape)
        if i == 2:
            return t.reshape(units, c2, 5, 5).transpose(2, 3, 1, 0).reshape(25 * c2, units)
        return t.T


# --- the steps the epoch driver runs, and the job's engine ---------------------------------------

class NativeSteps:
    """The native side of :func:`digitlab.training.driver.run_epochs`: Adam steps on a :class:`NativeMLP`
    (or :class:`NativeCNN`) over uint8 images, a few hundred per call into the kernels.

    While ``busy()`` is true (a helper process is using a core) training leaves one core to it; the
    number of threads never changes the results."""

    chunk = 256  # steps per native call

    def __init__(self, net: NativeMLP, x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None,
                 opts: Any, threads: int = 1, busy: Any = None):
        hp = OPTIMIZER_DEFAULTS[opts.optimizer]
        self.net, self.opts, self.threads, self.busy = net, opts, threads, busy
        self.base_lr = opts.lr if opts.lr is not None else hp["lr"]
        self.adam = {"betas": hp["betas"], "eps": hp["eps"], "weight_decay": opts.weight_decay,
                     "decoupled": opts.optimizer == "adamw"}
        self.x = _rows(x, net.dims[0])
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        self.validation = None
        if validation is not None:
            self.validation = (_rows(validation[0], net.dims[0]), np.ascontiguousarray(validation[1], dtype=np.int64))
        self.last_lr = self.base_lr
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def start_epoch(self, epoch: int) -> None:
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def train(self, idx: np.ndarray, lr_factors: np.ndarray) -> None:
        lrs = np.asarray(self.base_lr * lr_factors, np.float32)
        if self.busy is not None and not self.busy():
            self.busy = None
        threads = max(1, self.threads - 1) if self.busy is not None else self.threads
        losses, right = self.net.train_steps(self.x, self.y, idx, self.opts.batch_size, lrs, threads=threads,
                                             **self.adam)
        self.loss_sum += float(losses.sum())
        self.correct += int(right.sum())
        self.seen += len(idx)
        self.last_lr = float(lrs[-1])

    def totals(self, final: bool = False) -> tuple[float, int, int]:
        return self.loss_sum, self.correct, self.seen

    def validate(self) -> tuple[float, float] | None:
        return None if self.validation is None else self.net.evaluate(*self.validation, self.threads)

    def lr(self) -> float:
        return self.last_lr

    def snapshot(self) -> dict[str, np.ndarray]:
        return self.net.state_dict()

    def restore(self, weights: dict[str, np.ndarray]) -> None:
        self.net.load_state_dict(weights)


def fit_native(net: NativeMLP, x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None,
               opts: Any, *, quiet: bool = False, threads: int = 1, on_epoch_end: EpochHook | None = None,
               resume: Resume | None = None, busy: Any = None) -> History:
    """The torch engine's :func:`digitlab.training.torch_engine.fit` for a :class:`NativeMLP`: the same
    epoch driver, so the same options, history, progress line, schedules, early stopping and Ctrl-C
    handling. ``x`` is uint8 images; ``resume`` continues after the net's weights and Adam state
    were restored."""
    steps = NativeSteps(net, x, y, validation, opts, threads, busy)
    return run_epochs(steps, opts, len(steps.x), quiet=quiet, resume=resume, on_epoch_end=on_epoch_end)


class NativeEngine:
    """The job's native engine (see :mod:`digitlab.training.job`): ReLU MLPs and the tutorial's CNN, Adam/AdamW,
    the CPU."""

    name = "native"

    def __init__(self, config: Any):
        self.config = config
        self.threads = config.fit.threads or cpu_cores()
        self.net: NativeMLP | None = None

    def build(self) -> None:
        opts = self.config.model_options
        if self.config.model == "cnn":
            self.net = NativeCNN(seed=self.config.fit.seed)
        else:
            self.net = NativeMLP([28 * 28, *opts["hidden"], opts.get("num_classes", 10)], seed=self.config.fit.seed)

    def resume(self, run_path: Path) -> Resume:
        state, model_t, optim_t, _, best = runs.load_checkpoint(run_path, arrays=True)
        runs.check_weights(self.net.state_dict(), model_t, run_path / runs.CHECKPOINT / runs.CKPT_MODEL)
        self.net.load_state_dict(model_t)
        try:
            self.net.load_optimizer_state(optim_t)
        except (KeyError, ValueError) as e:
            raise RunError(f"{run_path / runs.CHECKPOINT / runs.CKPT_OPTIM}: optimizer state does not fit ({e})") \
                from None
        return Resume(EpochState.from_json(state), best)

    def fit(self, split: Split, quiet: bool, on_epoch_end: EpochHook | None, resume: Resume | None,
            busy: Any = None) -> History:
        validation = None if split.x_val is None else (split.x_val, split.y_val)
        return fit_native(self.net, split.x_train, split.y_train, validation, self.config.fit, quiet=quiet,
                          threads=self.threads, on_epoch_end=on_epoch_end, resume=resume, busy=busy)

    def _adam(self) -> tuple[float, tuple[float, float], float, float, bool]:
        fit = self.config.fit
        hp = OPTIMIZER_DEFAULTS[fit.optimizer]
        return (fit.lr if fit.lr is not None else hp["lr"], hp["betas"], hp["eps"], fit.weight_decay,
                fit.optimizer == "adamw")

    def checkpoint(self, run_path: Path, state: EpochState, best: dict | None) -> None:
        opt_tensors, opt_meta = self.net.optimizer_state(*self._adam())
        runs.save_checkpoint(run_path, self.net.state_dict(), opt_tensors, opt_meta, state.to_json(), best)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        return self.net.evaluate(x, y, self.threads)

    def save_weights(self, run_path: Path) -> None:
        runs.save_tensors(run_path / runs.WEIGHTS, self.net.state_dict(), {"format": "pt"})

    def info(self) -> dict[str, Any]:
        try:
            torch_version = version("torch")
        except PackageNotFoundError:
            torch_version = None
        return {"params": self.net.count_params(), "device": "cpu", "threads": self.threads, "engine": self.name,
                "kernels": kernels(), "torch": torch_version}

    def torch_model(self) -> Any:
        import torch  # on request only: training and running natively never import torch

        from digitlab.models import build_model

        model = build_model(self.config.model, **self.config.model_options)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in self.net.state_dict().items()})
        return model.eval()
