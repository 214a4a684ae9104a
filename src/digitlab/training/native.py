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
import time
from pathlib import Path
from typing import Any

import numpy as np

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


def unsupported(config: Any) -> str | None:
    """Why the native engine cannot run ``config`` (a TrainConfig), or None when it can."""
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
        (fit.device == "cpu" or (fit.device == "auto" and not _accelerator_present()), f"device {fit.device}"),
    ]
    for ok, what in checks:
        if not ok:
            return f"{what} needs the torch engine"
    if not available():
        return load_error()
    return None


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
        if rc != 0:
            raise MemoryError("the native engine could not allocate its training buffers")
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
        if rc != 0:
            raise MemoryError("the native engine could not allocate its inference buffers")
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
                tensors[f"state.{pid}.exp_avg"] = self._to_torch(i, m) if transpose else m.copy()
                tensors[f"state.{pid}.exp_avg_sq"] = self._to_torch(i, v) if transpose else v.copy()
                tensors[f"state.{pid}.step"] = np.asarray(float(self.step), np.float32)
        group = {"lr": lr, "betas": list(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": False,
                 "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": True,
                 "decoupled_weight_decay": decoupled, "params": list(range(2 * self.L))}
        return tensors, {"param_groups": [group], "plain": {}}

    def load_optimizer_state(self, tensors: dict[str, np.ndarray]) -> None:
        steps = set()
        for i in range(self.L):
            for k, (m, v, transpose) in enumerate(((self.mW[i], self.vW[i], True), (self.mb[i], self.vb[i], False))):
                pid = 2 * i + k
                for dst, key in ((m, "exp_avg"), (v, "exp_avg_sq")):
                    src = np.asarray(tensors[f"state.{pid}.{key}"], np.float32)
                    dst[...] = self._from_torch(i, src) if transpose else src
                if f"state.{pid}.step" in tensors:
                    steps.add(int(np.asarray(tensors[f"state.{pid}.step"]).item()))
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


# --- the training loop and the job's engine -----------------------------------------------------

def fit_native(net: NativeMLP, x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None,
               opts: Any, *, quiet: bool = False, threads: int = 1, on_epoch_end: Any = None,
               resume: tuple[Any, dict | None] | None = None, busy: Any = None) -> Any:
    """The torch engine's :func:`digitlab.training.torch_engine.fit` for a :class:`NativeMLP`: same options, same
    history, progress line, schedules, early stopping and Ctrl-C handling. ``x`` is uint8 images.

    While ``busy()`` is true (a helper process is using a core) training leaves one core to it; the
    number of threads never changes the results."""
    from digitlab.config import OPTIMIZER_DEFAULTS
    from digitlab.training.loop import EpochBook, Progress, SigintGuard, epoch_seed

    hp = OPTIMIZER_DEFAULTS[opts.optimizer]
    base_lr = opts.lr if opts.lr is not None else hp["lr"]
    adam = {"betas": hp["betas"], "eps": hp["eps"], "weight_decay": opts.weight_decay,
            "decoupled": opts.optimizer == "adamw"}
    x = _rows(x, net.dims[0])
    y = np.ascontiguousarray(y, dtype=np.int64)
    if validation is not None:
        xv, yv = _rows(validation[0], net.dims[0]), np.ascontiguousarray(validation[1], dtype=np.int64)
    n, batch = len(x), opts.batch_size
    steps = -(-n // batch)
    chunk = 256  # steps per native call: progress and Ctrl-C are looked at in between
    book = EpochBook(opts, quiet, resume[0] if resume else None)
    best = resume[1] if resume else None
    progress = Progress(opts.epochs, steps, quiet)
    with SigintGuard() as guard:
        for epoch in range(book.start_epoch, opts.epochs):
            perm = np.random.default_rng(epoch_seed(opts.seed, epoch)).permutation(n)
            lrs = np.array([base_lr * book.lr_scale(epoch, s, steps) for s in range(steps)], np.float32) \
                if opts.schedule in ("cosine", "onecycle") else np.full(steps, base_lr * book.plateau.scale, np.float32)
            progress.start_epoch(epoch)
            loss_sum, correct, seen = 0.0, 0, 0
            for s0 in range(0, steps, chunk):
                if guard.stop:
                    break
                s1 = min(steps, s0 + chunk)
                idx = perm[s0 * batch : s1 * batch]
                if busy is not None and not busy():
                    busy = None
                now = max(1, threads - 1) if busy is not None else threads
                losses, right = net.train_steps(x, y, idx, batch, lrs[s0:s1], threads=now, **adam)
                loss_sum += float(losses.sum())
                correct += int(right.sum())
                seen += len(idx)
                if progress.live:
                    progress.update(s1, loss_sum, correct, seen)
            if guard.stop:
                break
            row: dict[str, float] = {"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": correct / seen}
            elapsed = time.perf_counter() - progress.t0
            if validation is not None:
                row["val_loss"], row["val_accuracy"] = net.evaluate(xv, yv, threads)
            row["lr"] = float(lrs[-1])
            row["time"] = elapsed
            improved, stop = book.end_epoch(row, progress)
            if improved:
                best = net.state_dict()
            if on_epoch_end is not None:
                on_epoch_end(book.state(), best)
            if stop:
                break
    if opts.early_stopping and best is not None and not guard.stop:
        net.load_state_dict(best)
    book.history.interrupted = guard.stop
    return book.history


class NativeEngine:
    """The job's native engine (see :mod:`digitlab.training.job`): ReLU MLPs and the tutorial's CNN, Adam/AdamW,
    the CPU."""

    name = "native"

    def __init__(self, config: Any):
        self.config = config
        from digitlab.config import cpu_cores

        self.threads = config.fit.threads or cpu_cores()
        self.net: NativeMLP | None = None

    def build(self) -> None:
        opts = self.config.model_options
        if self.config.model == "cnn":
            self.net = NativeCNN(seed=self.config.fit.seed)
        else:
            self.net = NativeMLP([28 * 28, *opts["hidden"], opts.get("num_classes", 10)], seed=self.config.fit.seed)

    def resume(self, run_path: Path) -> tuple[Any, dict | None]:
        from digitlab import runs
        from digitlab.errors import RunError
        from digitlab.training.loop import epoch_state_from_json

        state, model_t, optim_t, _, best = runs.load_checkpoint(run_path, arrays=True)
        runs.check_weights(self.net.state_dict(), model_t, run_path / runs.CHECKPOINT / runs.CKPT_MODEL)
        self.net.load_state_dict(model_t)
        try:
            self.net.load_optimizer_state(optim_t)
        except (KeyError, ValueError) as e:
            raise RunError(f"{run_path / runs.CHECKPOINT / runs.CKPT_OPTIM}: optimizer state does not fit ({e})") \
                from None
        return epoch_state_from_json(state), best

    def fit(self, split: Any, quiet: bool, on_epoch_end: Any, resume: Any, busy: Any = None) -> Any:
        validation = None if split.x_val is None else (split.x_val, split.y_val)
        return fit_native(self.net, split.x_train, split.y_train, validation, self.config.fit, quiet=quiet,
                          threads=self.threads, on_epoch_end=on_epoch_end, resume=resume, busy=busy)

    def _adam(self) -> tuple[float, tuple[float, float], float, float, bool]:
        from digitlab.config import OPTIMIZER_DEFAULTS

        fit = self.config.fit
        hp = OPTIMIZER_DEFAULTS[fit.optimizer]
        return (fit.lr if fit.lr is not None else hp["lr"], hp["betas"], hp["eps"], fit.weight_decay,
                fit.optimizer == "adamw")

    def checkpoint(self, run_path: Path, state: Any, best: dict | None) -> None:
        from digitlab import runs
        from digitlab.training.loop import run_state_json

        opt_tensors, opt_meta = self.net.optimizer_state(*self._adam())
        runs.save_checkpoint(run_path, self.net.state_dict(), opt_tensors, opt_meta, run_state_json(state), best)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        return self.net.evaluate(x, y, self.threads)

    def save_weights(self, run_path: Path) -> None:
        from digitlab import runs

        runs.save_tensors(run_path / runs.WEIGHTS, self.net.state_dict(), {"format": "pt"})

    def info(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            torch_version = version("torch")
        except PackageNotFoundError:
            torch_version = None
        return {"params": self.net.count_params(), "device": "cpu", "threads": self.threads, "engine": self.name,
                "kernels": kernels(), "torch": torch_version}

    def torch_model(self) -> Any:
        import torch

        from digitlab.models import build_model

        model = build_model(self.config.model, **self.config.model_options)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in self.net.state_dict().items()})
        return model.eval()
