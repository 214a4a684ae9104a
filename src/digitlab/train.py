"""The training loop: optimizers, schedules, augmentation, early stopping, checkpoints, history.

Data lives in memory as one float32 tensor; each epoch draws a permutation and slices batches out
of it (no DataLoader). A tutorial-style ReLU MLP on the CPU takes a hand-written forward/backward
(:class:`FastMLPStep`): the same maths as autograd with a fraction of the per-step overhead, which
is what dominates at batch 32. Everything else goes through autograd.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.errors import ConfigError, DigitlabError
from digitlab.models import Net

# Keras's default hyper-parameters for each optimizer the tutorial names.
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7},
    "adamw": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7},
    "sgd": {"lr": 1e-2, "momentum": 0.0, "nesterov": False},
    "adagrad": {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7},
    "rmsprop": {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7, "momentum": 0.0},
    "adadelta": {"lr": 1e-3, "rho": 0.95, "eps": 1e-7},
}
SCHEDULES = ("constant", "cosine", "onecycle", "plateau")
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")


@dataclass
class FitOptions:
    """Everything :func:`fit` needs besides the model and the data (all JSON-serialisable)."""

    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None  # None: the optimizer's Keras default
    weight_decay: float = 0.0
    momentum: float | None = None  # sgd / rmsprop
    nesterov: bool = False
    schedule: str = "constant"
    augment: bool = False
    label_smoothing: float = 0.0
    early_stopping: int = 0  # patience in epochs; 0 = off
    monitor: str = "val_loss"
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    compile: bool = False
    threads: int | None = None
    fast: bool = True  # allow the hand-written MLP step

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZER_DEFAULTS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZER_DEFAULTS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.monitor not in MONITORS:
            raise ConfigError(f"unknown monitor {self.monitor!r}; choose one of: {', '.join(MONITORS)}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.early_stopping < 0:
            raise ConfigError(f"early-stopping patience must be >= 0, got {self.early_stopping}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        resolve_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA GPU here")
        return torch.device(name)
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ConfigError("--device mps asked for, but PyTorch sees no Apple GPU here")
        return torch.device("mps")
    raise ConfigError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(model: Net, device: torch.device, local_world_size: int = 1) -> int:
    """Small matmuls (an MLP at batch 32) run faster on one thread than two; convolutions use all
    cores, shared out between the ``local_world_size`` processes of a data-parallel job."""
    if device.type != "cpu":
        return torch.get_num_threads()
    return 1 if not model.image_input else max(1, _cores() // max(1, local_world_size))


def make_optimizer(opts: FitOptions, params: list[torch.nn.Parameter]) -> Any:
    kw = dict(OPTIMIZER_DEFAULTS[opts.optimizer])
    if opts.lr is not None:
        kw["lr"] = opts.lr
    if opts.momentum is not None:
        if opts.optimizer not in ("sgd", "rmsprop"):
            raise ConfigError(f"--momentum applies to sgd and rmsprop, not {opts.optimizer}")
        kw["momentum"] = opts.momentum
    if opts.nesterov:
        if opts.optimizer != "sgd":
            raise ConfigError("--nesterov applies to sgd only")
        if not kw.get("momentum"):
            raise ConfigError("--nesterov needs --momentum > 0")
        kw["nesterov"] = True
    if opts.weight_decay:
        kw["weight_decay"] = opts.weight_decay
    if opts.optimizer in ("adam", "adamw") and hasattr(torch, "_fused_adam_"):
        return FusedAdam(params, lr=kw["lr"], betas=kw["betas"], eps=kw["eps"],  # type: ignore[return-value]
                         weight_decay=kw.get("weight_decay", 0.0), decoupled=opts.optimizer == "adamw")
    cls = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
        "adagrad": torch.optim.Adagrad,
        "rmsprop": torch.optim.RMSprop,
        "adadelta": torch.optim.Adadelta,
    }[opts.optimizer]
    if opts.optimizer in ("adam", "adamw"):
        kw["fused"] = True
    elif opts.optimizer in ("sgd", "adagrad"):
        kw["foreach"] = True
    return cls(params, **kw)


class FusedAdam:
    """Adam / AdamW on the fused kernel that ``torch.optim.Adam(fused=True)`` runs, called directly.

    ``torch.optim`` spends more time per step in Python bookkeeping than the tutorial MLP's whole
    parameter update takes, and its first use imports ``torch._dynamo`` (over a second of start-up).
    The state and ``state_dict()`` layout are ``torch.optim.Adam``'s, so checkpoints interoperate;
    the tests hold the updates bit-for-bit to ``torch.optim.Adam(fused=True)``.
    """

    def __init__(self, params: list[torch.nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-7, weight_decay: float = 0.0, decoupled: bool = False):
        self.params = list(params)
        self.param_groups = [{"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                              "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                              "differentiable": False, "fused": True, "decoupled_weight_decay": decoupled,
                              "params": self.params}]
        self.defaults = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # one step counter shared by every parameter (they all step together): one add per step
        self.step_count = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
        self.steps = [self.step_count] * len(self.params)
        self.kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_

    @property
    def state(self) -> dict[torch.nn.Parameter, dict[str, torch.Tensor]]:
        return {p: {"step": s, "exp_avg": m, "exp_avg_sq": v}
                for p, s, m, v in zip(self.params, self.steps, self.exp_avg, self.exp_avg_sq, strict=True)}

    def step(self) -> None:
        g = self.param_groups[0]
        beta1, beta2 = g["betas"]
        self.step_count.add_(1)
        self.kernel(self.params, [p.grad for p in self.params], self.exp_avg, self.exp_avg_sq, [], self.steps,
                    amsgrad=False, lr=g["lr"], beta1=beta1, beta2=beta2, weight_decay=g["weight_decay"],
                    eps=g["eps"], maximize=False, grad_scale=None, found_inf=None)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self.params)))
        return {"state": {i: {"step": s.clone(), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
                          for i, (s, m, v) in enumerate(zip(self.steps, self.exp_avg, self.exp_avg_sq, strict=True))},
                "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Copy saved state into place (keeping each parameter's memory format, e.g. channels_last)."""
        group = dict(state_dict["param_groups"][0])
        if len(group.pop("params")) != len(self.params):
            raise ConfigError("the checkpoint's optimizer state belongs to a different model")
        self.param_groups[0].update(group)
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq, strict=True)):
            saved = state_dict["state"].get(i) or state_dict["state"].get(str(i))
            if saved is None:
                continue
            self.step_count.copy_(saved["step"])
            m.copy_(saved["exp_avg"])
            v.copy_(saved["exp_avg_sq"])


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) for step-wise schedules."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    if schedule == "onecycle":
        warm = max(1, int(0.3 * total_steps))
        if step < warm:  # cosine warm-up from lr/25
            return 0.04 + 0.96 * 0.5 * (1 - math.cos(math.pi * step / warm))
        t = (step - warm) / max(1, total_steps - warm)
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return 1.0


class Plateau:
    """Reduce-on-plateau: halve the learning rate when val_loss has not improved for ``patience`` epochs."""

    def __init__(self, factor: float = 0.5, patience: int = 1, min_factor: float = 1e-3):
        self.factor, self.patience, self.min_factor = factor, patience, min_factor
        self.best = math.inf
        self.bad = 0
        self.scale = 1.0

    def update(self, value: float) -> None:
        if value < self.best - 1e-6:
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad > self.patience:
                self.scale = max(self.scale * self.factor, self.min_factor)
                self.bad = 0

    def state(self) -> dict:
        return {"best": self.best if math.isfinite(self.best) else None, "bad": self.bad, "scale": self.scale}

    def load(self, state: dict) -> None:
        self.best = math.inf if state.get("best") is None else state["best"]
        self.bad, self.scale = state["bad"], state["scale"]


def augment_batch(x: torch.Tensor, gen: torch.Generator, max_shift: float = 2.0, max_rot: float = 12.0,
                  scale: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """Random small shifts (pixels), rotations (degrees) and scaling of a (B, 28, 28) batch."""
    b = x.shape[0]
    r = torch.rand(b, 4, generator=gen, device="cpu").to(x.device)
    ang = (r[:, 0] * 2 - 1) * math.radians(max_rot)
    s = scale[0] + r[:, 1] * (scale[1] - scale[0])
    tx = (r[:, 2] * 2 - 1) * max_shift * 2 / 28
    ty = (r[:, 3] * 2 - 1) * max_shift * 2 / 28
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, (b, 1, 28, 28), align_corners=False)
    return F.grid_sample(x.unsqueeze(1), grid, align_corners=False, padding_mode="zeros").squeeze(1)


class FastMLPStep:
    """Forward, loss and backward of a ReLU MLP by hand, writing gradients into ``p.grad``.

    The same maths as ``cross_entropy(model(x), y).backward()`` with about a third of the operator
    calls (the tests hold its gradients to autograd's).
    """

    def __init__(self, model: Net):
        self.linears = [m for m in model if isinstance(m, nn.Linear)]
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        # views stay valid: the optimizer updates the weights in place
        self.weights_t = [lin.weight.t() for lin in self.linears]
        self.rows: dict[int, torch.Tensor] = {}
        self.ones: dict[int, torch.Tensor] = {}
        self.minus_one = torch.tensor(-1.0)

    @staticmethod
    def supports(model: Net, opts: FitOptions, device: torch.device) -> bool:
        kinds = {type(m) for m in model}
        return (opts.fast and device.type == "cpu" and model.name == "mlp" and not opts.bf16
                and not opts.compile and opts.label_smoothing == 0
                and kinds <= {nn.Flatten, nn.Linear, nn.ReLU} and not opts.augment)

    @torch.no_grad()
    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = xb.shape[0]
        h = xb.reshape(n, -1)
        acts = [h]
        last = len(self.linears) - 1
        for i, (lin, wt) in enumerate(zip(self.linears, self.weights_t, strict=True)):
            h = torch.addmm(lin.bias, h, wt)
            if i < last:
                h.relu_()
            acts.append(h)
        logp = torch.log_softmax(h, 1)
        loss_sum = F.nll_loss(logp, yb, reduction="sum")
        pred = h.argmax(1)
        rows, ones = self.rows.get(n), self.ones.get(n)
        if rows is None:
            rows, ones = self.rows[n], self.ones[n] = torch.arange(n), torch.ones(n)
        g = logp.exp_()  # softmax minus one-hot: n times d(mean loss)/d(logits); the 1/n goes in alpha
        g.index_put_((rows, yb), self.minus_one, accumulate=True)
        for i in range(last, -1, -1):
            lin, a = self.linears[i], acts[i]
            gt = g.t()
            torch.addmm(lin.weight.grad, gt, a, beta=0, alpha=1.0 / n, out=lin.weight.grad)
            torch.addmv(lin.bias.grad, gt, ones, beta=0, alpha=1.0 / n, out=lin.bias.grad)
            if i:
                g = torch.ops.aten.threshold_backward(torch.mm(g, lin.weight), a, 0)
        return loss_sum, pred


def _autograd_step(model: Net, opts: FitOptions, device: torch.device, gen: torch.Generator, world: int = 1):
    use_bf16 = opts.bf16

    def step(xb: torch.Tensor, yb: torch.Tensor, global_count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if opts.augment:
            xb = augment_batch(xb, gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(xb)
        logits = logits.float()
        for p in model.parameters():
            p.grad = None
        if global_count is None:
            loss = F.cross_entropy(logits, yb, label_smoothing=opts.label_smoothing)
            loss.backward()
            return loss.detach() * xb.shape[0], logits.detach().argmax(1)
        # Data-parallel: DDP averages the ranks' gradients, so each rank's loss is its images' summed
        # loss times world / global_count: the average is then the global batch's mean whatever the
        # split (an uneven last batch, or a rank left with no image at all, whose mean would be NaN).
        loss_sum = F.cross_entropy(logits, yb, label_smoothing=opts.label_smoothing, reduction="sum")
        (loss_sum * (world / global_count)).backward()
        return loss_sum.detach(), logits.detach().argmax(1)

    return step


@torch.no_grad()
def evaluate_tensors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000,
                     bf16: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on float images ``x`` and labels ``y``."""
    was = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double().cpu()
        correct += (logits.argmax(1) == yb).sum().cpu()
    model.train(was)
    n = max(1, len(x))
    return float(loss_sum) / n, int(correct) / n


def _running(losses: list[torch.Tensor], preds: list[torch.Tensor], labels: list[torch.Tensor]):
    """(summed loss, correct count, samples) of the steps so far: one reduction instead of one per step."""
    if not losses:
        return 0.0, 0, 0
    y = torch.cat(labels)
    return float(torch.stack(losses).double().sum()), int((torch.cat(preds) == y).sum()), len(y)


class Progress:
    """A Keras-like progress line on stderr: ``Epoch 1/5`` then steps, loss, accuracy, time."""

    def __init__(self, epochs: int, steps: int, quiet: bool = False, stream=None):
        self.epochs, self.steps, self.quiet = epochs, steps, quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = 0.0

    def start_epoch(self, epoch: int) -> None:
        if not self.quiet:
            print(f"Epoch {epoch + 1}/{self.epochs}", file=self.stream, flush=True)
        self.t0 = time.perf_counter()
        self.last = self.t0

    def _bar(self, step: int) -> str:
        width = 20
        done = int(width * step / max(1, self.steps))
        return "━" * done + ("╸" if done < width else "") + " " * max(0, width - done - 1)

    @property
    def live(self) -> bool:
        return not self.quiet and self.tty

    def update(self, step: int, losses: list[torch.Tensor], preds: list[torch.Tensor],
               labels: list[torch.Tensor]) -> None:
        now = time.perf_counter()
        if now - self.last < 0.1:
            return
        self.last = now
        loss_sum, correct, seen = _running(losses, preds, labels)
        loss, acc = loss_sum / max(1, seen), correct / max(1, seen)
        el = now - self.t0
        print(f"\r{step}/{self.steps} {self._bar(step)} {el:.0f}s {1000 * el / max(1, step):.2f}ms/step"
              f" - accuracy: {acc:.4f} - loss: {loss:.4f}", end="", file=self.stream, flush=True)

    def end_epoch(self, row: dict) -> None:
        if self.quiet:
            return
        el = row["time"]
        per_step = 1000 * el / max(1, self.steps)
        parts = [f"{self.steps}/{self.steps} {self._bar(self.steps)} {el:.1f}s {per_step:.2f}ms/step",
                 f"accuracy: {row['accuracy']:.4f}", f"loss: {row['loss']:.4f}"]
        if "val_loss" in row:
            parts += [f"val_accuracy: {row['val_accuracy']:.4f}", f"val_loss: {row['val_loss']:.4f}"]
        parts.append(f"lr: {row['lr']:.3g}")
        print(("\r" if self.tty else "") + " - ".join(parts) + ("\033[K" if self.tty else ""),
              file=self.stream, flush=True)


@dataclass
class History:
    """Per-epoch records, like Keras's ``History.history`` (``history.history["val_accuracy"]``)."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False

    @property
    def history(self) -> dict[str, list[float]]:
        keys = list(self.rows[0]) if self.rows else []
        return {k: [r[k] for r in self.rows] for k in keys if k != "epoch"}


@dataclass
class EpochState:
    """What a checkpoint holds besides tensors: enough to continue exactly where an epoch ended."""

    epoch: int  # number of completed epochs
    history: list[dict[str, float]]
    plateau: dict
    best_value: float | None
    best_epoch: int | None
    bad_epochs: int


@dataclass
class Resume:
    optimizer_state: dict
    state: EpochState
    best_weights: dict[str, torch.Tensor] | None = None


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63 - 1)


def _as_tensor(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Arrays to tensors; uint8 images become floats in [0, 1] through ``preprocess.to_float``."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    x = np.asarray(x)
    if dtype.is_floating_point and x.dtype == np.uint8:
        from digitlab.preprocess import to_float

        x = to_float(x)
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


def evaluate_arrays(model: nn.Module, x, y, batch_size: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy for numpy (or tensor) images and labels."""
    device = next(model.parameters()).device
    return evaluate_tensors(model, _as_tensor(x, torch.float32).to(device), _as_tensor(y, torch.int64).to(device),
                            batch_size)


@torch.no_grad()
def predict_arrays(model: nn.Module, x, batch_size: int = 2000) -> np.ndarray:
    """(N, 10) float32 probabilities for (N, 28, 28) images (uint8, or floats in [0, 1])."""
    was = model.training
    model.eval()
    xt = _as_tensor(x, torch.float32).to(next(model.parameters()).device)
    if xt.ndim == 2:
        xt = xt[None]
    out = [torch.softmax(model(xt[i : i + batch_size]).float(), 1) for i in range(0, len(xt), batch_size)]
    model.train(was)
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, 10), np.float32)


def fit(
    model: Net,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    options: FitOptions | None = None,
    *,
    quiet: bool = False,
    on_epoch_end: Callable[..., None] | None = None,
    resume: Resume | None = None,
    dist: Any = None,
    **kwargs: Any,
) -> History:
    """Train ``model`` on float images ``x`` (N, 28, 28) in [0, 1] and integer labels ``y``.

    Keyword arguments not in the signature are :class:`FitOptions` fields, so the tutorial's
    ``fit(model, x, y, epochs=5, batch_size=32, validation_data=(xv, yv))`` reads the same.
    ``on_epoch_end`` receives the model, optimizer and state after each completed epoch (checkpoints
    hook in there); ``resume`` continues from such a checkpoint.
    ``dist`` is a :class:`digitlab.distributed.Context` when several processes train together.
    """
    opts = options or FitOptions()
    for k, v in kwargs.items():
        if not hasattr(opts, k):
            raise TypeError(f"fit() got an unexpected keyword argument {k!r}")
        setattr(opts, k, v)
    opts.validate()
    device = resolve_device(opts.device)
    local_world = getattr(dist, "local_world_size", 1) if dist is not None else 1
    torch.set_num_threads(opts.threads or default_threads(model, device, local_world))
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    quiet = quiet or rank != 0

    xt = _as_tensor(x, torch.float32).to(device)
    yt = _as_tensor(y, torch.int64).to(device)
    if xt.ndim != 3 or xt.shape[1:] != (28, 28) or len(xt) != len(yt):
        raise ConfigError(f"expected images (N, 28, 28) and N labels, got {tuple(xt.shape)} and {tuple(yt.shape)}")
    if validation_data is not None:
        xv = _as_tensor(validation_data[0], torch.float32).to(device)
        yv = _as_tensor(validation_data[1], torch.int64).to(device)
    model.to(device)
    if device.type == "cpu" and model.image_input:
        model.to(memory_format=torch.channels_last)
    model.train()

    fast = FastMLPStep.supports(model, opts, device) and dist is None
    train_model: nn.Module = model
    if dist is not None:
        train_model = dist.wrap(model)
    elif opts.compile:
        train_model = torch.compile(model)
    optimizer = make_optimizer(opts, list(model.parameters()))
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    n = len(xt)
    steps_per_epoch = math.ceil(n / opts.batch_size)
    total_steps = steps_per_epoch * opts.epochs
    plateau = Plateau()
    history = History()
    best_value: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    start_epoch = 0
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer_state)
        if not isinstance(optimizer, FusedAdam):  # give restored state the parameters' memory format
            for p in model.parameters():
                for k, v in optimizer.state.get(p, {}).items():
                    if isinstance(v, torch.Tensor) and v.shape == p.shape:
                        optimizer.state[p][k] = torch.empty_like(p).copy_(v)
        st = resume.state
        start_epoch = st.epoch
        history.rows = list(st.history)
        plateau.load(st.plateau)
        best_value, history.best_epoch, bad_epochs = st.best_value, st.best_epoch, st.bad_epochs
        best_state = resume.best_weights

    step_fn = FastMLPStep(model) if fast else None
    progress = Progress(opts.epochs, steps_per_epoch, quiet)
    stepwise_lr = opts.schedule in ("cosine", "onecycle")
    higher_better = opts.monitor.endswith("accuracy")

    interrupted = False
    previous = signal.getsignal(signal.SIGINT)

    def _sigint(signum, frame):
        nonlocal interrupted
        if interrupted:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        interrupted = True

    if rank == 0 and previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, _sigint)
    try:
        for epoch in range(start_epoch, opts.epochs):
            g = torch.Generator().manual_seed(_epoch_seed(opts.seed, epoch))
            torch.manual_seed(_epoch_seed(opts.seed, epoch) + 1)
            if step_fn is None:
                step_impl = _autograd_step(train_model, opts, device, g, world)
            else:
                step_impl = step_fn
            perm = torch.randperm(n, generator=g).to(device)
            y_epoch = yt.index_select(0, perm).split(opts.batch_size)  # label batches as views
            losses: list[torch.Tensor] = []
            preds: list[torch.Tensor] = []
            labels: list[torch.Tensor] = []
            progress.start_epoch(epoch)
            model.train()
            for s, idx in enumerate(perm.split(opts.batch_size)):
                if interrupted:
                    break
                if stepwise_lr:
                    f = lr_factor(opts.schedule, epoch * steps_per_epoch + s, total_steps) * plateau.scale
                    for pg, base in zip(optimizer.param_groups, base_lrs, strict=True):
                        pg["lr"] = base * f
                if world > 1:
                    global_count = len(idx)
                    idx = idx[rank::world]
                    yb = y_epoch[s][rank::world]
                    loss_sum, pred = step_impl(xt.index_select(0, idx), yb, global_count)
                else:
                    yb = y_epoch[s]
                    loss_sum, pred = step_impl(xt.index_select(0, idx), yb)
                optimizer.step()
                losses.append(loss_sum)
                preds.append(pred)
                labels.append(yb)
                if progress.live and s % 16 == 15:
                    progress.update(s + 1, losses, preds, labels)
            if interrupted:
                break
            if dist is not None:
                dist.sync_buffers(model)  # batch-norm running statistics: rank 0's on every rank
            loss_acc, correct_acc, seen = _running(losses, preds, labels)
            elapsed = time.perf_counter() - progress.t0
            if dist is not None:
                loss_tot, correct_tot, seen_tot = dist.all_reduce_sum([loss_acc, correct_acc, seen])
            else:
                loss_tot, correct_tot, seen_tot = loss_acc, correct_acc, seen
            row: dict[str, float] = {"epoch": epoch + 1, "loss": loss_tot / seen_tot,
                                     "accuracy": correct_tot / seen_tot}
            if validation_data is not None:
                vl, va = _evaluate_maybe_sharded(model, xv, yv, opts.bf16, dist)
                row["val_loss"], row["val_accuracy"] = vl, va
            row["lr"] = optimizer.param_groups[0]["lr"]
            row["time"] = elapsed
            history.rows.append(row)
            progress.end_epoch(row)

            if opts.schedule == "plateau":
                plateau.update(row.get("val_loss", row["loss"]))
                for pg, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    pg["lr"] = base * plateau.scale
            stop = False
            if opts.early_stopping:
                if opts.monitor not in row:
                    raise ConfigError(f"early stopping monitors {opts.monitor}, which needs validation data")
                value = row[opts.monitor]
                improved = best_value is None or (value > best_value if higher_better else value < best_value)
                if improved:
                    best_value, history.best_epoch, bad_epochs = value, epoch + 1, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad_epochs += 1
                    stop = bad_epochs >= opts.early_stopping
            if on_epoch_end is not None:
                on_epoch_end(model, optimizer, EpochState(epoch + 1, list(history.rows), plateau.state(),
                                                          best_value, history.best_epoch, bad_epochs),
                             best_state)
            if stop:
                history.stopped_early = True
                if not quiet:
                    print(f"Early stopping: {opts.monitor} has not improved for {bad_epochs} epochs; "
                          f"restoring the weights of epoch {history.best_epoch}", file=sys.stderr)
                break
    finally:
        if rank == 0 and previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)
    if opts.early_stopping and best_state is not None and not interrupted:
        model.load_state_dict(best_state)
    history.interrupted = interrupted
    model.eval()
    return history


def _evaluate_maybe_sharded(model: Net, x: torch.Tensor, y: torch.Tensor, bf16: bool, dist: Any):
    if dist is None or dist.world_size == 1:
        return evaluate_tensors(model, x, y, bf16=bf16)
    shard = slice(dist.rank, None, dist.world_size)
    loss, acc = evaluate_tensors(model, x[shard], y[shard], bf16=bf16)
    count = len(x[shard])
    loss_sum, correct, total = dist.all_reduce_sum([loss * count, acc * count, count])
    return loss_sum / total, correct / total


# --- a whole training job: data -> model -> fit -> test -> run folder ---------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # The tutorial's protocol: MLP, sklearn-identical 80/20 split, 5 epochs, batch 32, Adam.
    "tutorial": {},
    # Top accuracy: the batch-normalised CNN, augmentation, one-cycle AdamW, all 60,000 images.
    "best": {
        "model": "cnn_bn", "val_split": 0.0,
        "fit": {"epochs": 12, "batch_size": 128, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 5e-4,
                "schedule": "onecycle", "augment": True, "label_smoothing": 0.05},
    },
}


@dataclass
class TrainConfig:
    """Everything needed to rebuild the model and repeat the run (saved as config.json)."""

    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    val_split: float = 0.2
    split_seed: int = 42
    fit: FitOptions = field(default_factory=FitOptions)
    preset: str = "tutorial"

    @classmethod
    def from_preset(cls, name: str = "tutorial", **overrides: Any) -> TrainConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        p = PRESETS[name]
        cfg = cls(preset=name, fit=FitOptions(**p.get("fit", {})),
                  **{k: v for k, v in p.items() if k != "fit"})
        for k, v in overrides.items():
            if v is None:
                continue
            if hasattr(cfg, k) and k != "fit":
                setattr(cfg, k, v)
            elif hasattr(cfg.fit, k):
                setattr(cfg.fit, k, v)
            else:
                raise ConfigError(f"unknown training option {k!r}")
        return cfg

    def validate(self) -> None:
        from digitlab.datasets import get_dataset
        from digitlab.models import build_model

        get_dataset(self.dataset)
        self.model_options = dict(build_model(self.model, **self.model_options).options)  # resolved defaults
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"validation split must be in [0, 1), got {self.val_split}")
        self.fit.validate()

    def to_json(self) -> dict[str, Any]:
        from digitlab import __version__
        from digitlab.datasets import get_dataset

        return {
            "digitlab_version": __version__,
            "preset": self.preset,
            "model": {"name": self.model, **self.model_options},
            "dataset": self.dataset,
            "labels": list(get_dataset(self.dataset).classes),
            "input": {"shape": [28, 28], "dtype": "uint8", "normalisation": "x / 255",
                      "polarity": "white ink on black", "output": "logits; softmax for probabilities"},
            "val_split": self.val_split,
            "split_seed": self.split_seed,
            "fit": self.fit.to_dict(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        model = dict(data["model"])
        name = model.pop("name")
        fit_opts = FitOptions(**{k: v for k, v in data.get("fit", {}).items() if k in FitOptions.__dataclass_fields__})
        return cls(model=name, model_options=model, dataset=data.get("dataset", "mnist"),
                   val_split=data.get("val_split", 0.2), split_seed=data.get("split_seed", 42),
                   fit=fit_opts, preset=data.get("preset", "tutorial"))


@dataclass
class TrainResult:
    run_dir: str | None
    history: History
    metrics: dict[str, Any]
    model: Net


def default_run_dir(model: str, root: str | os.PathLike = "runs") -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(root, f"{model}-{stamp}")
    k = 1
    while os.path.exists(path):
        k += 1
        path = os.path.join(root, f"{model}-{stamp}-{k}")
    return path


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike | None,
    *,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    plots: bool = True,
    dist: Any = None,
    log: Callable[[str], None] | None = None,
    data: Any = None,
) -> TrainResult:
    """Load the data, build the model, fit with a checkpoint per epoch, evaluate on the test set and
    write the run folder (when ``run_dir`` is given; only rank 0 writes).

    ``data`` may hold the dataset's arrays already, or a future that will (the CLI starts reading the
    files while torch is still importing)."""
    from pathlib import Path

    from digitlab import runs
    from digitlab.datasets import load_data
    from digitlab.models import build_model
    from digitlab.preprocess import to_float, train_val_split

    writer = dist is None or dist.rank == 0
    say = log or (lambda msg: None if quiet or not writer else print(msg, file=sys.stderr, flush=True))
    run_path = Path(run_dir) if run_dir is not None else None
    resume_state = None
    if resume:
        if run_path is None:
            raise ConfigError("--resume needs a run folder")
        saved = runs.read_config(run_path)
        config = TrainConfig.from_json(saved) if config is None else config
        state, model_t, optim_state, best = runs.load_checkpoint(run_path)
    config.validate()
    if run_path is not None and writer and not resume:
        if runs.is_run(run_path):
            raise ConfigError(f"{run_path} already holds a run; pick another --name or continue it with --resume")
        run_path.mkdir(parents=True, exist_ok=True)
        runs.write_json(run_path / runs.CONFIG, config.to_json())

    curves = None
    if run_path is not None and writer and plots:
        from digitlab.curves_worker import CurvesRenderer

        # the MLP trains on one thread (default_threads): the idle core can import matplotlib meanwhile
        curves = CurvesRenderer(run_path / runs.CURVES,
                                background=config.model == "mlp" and (config.fit.threads or 1) < _cores())
    if data is None:
        data = load_data(config.dataset, data_dir=data_dir, quiet=quiet or not writer)
    elif hasattr(data, "result"):
        try:
            data = data.result()
        except DigitlabError:  # e.g. a corrupt cached file: load again in the foreground, with messages
            data = load_data(config.dataset, data_dir=data_dir, quiet=quiet or not writer)
    (x_train, y_train), (x_test, y_test) = data
    if config.val_split > 0:
        (x_tr, y_tr), (x_val, y_val) = train_val_split(x_train, y_train, config.val_split, config.split_seed)
        validation = (to_float(x_val), y_val.astype(np.int64))
    else:
        x_tr, y_tr, validation = x_train, y_train, None
    torch.manual_seed(config.fit.seed)
    model = build_model(config.model, **config.model_options)
    if resume:
        runs.load_state(model, model_t, run_path / runs.CHECKPOINT / runs.CKPT_MODEL)
        resume_state = Resume(optim_state, EpochState(
            epoch=state["epoch"], history=state["history"], plateau=state["plateau"],
            best_value=state.get("best_value"), best_epoch=state.get("best_epoch"),
            bad_epochs=state.get("bad_epochs", 0)), best)
        if state["epoch"] >= config.fit.epochs:
            say(f"{run_path} already completed {state['epoch']} epochs; evaluating")
        else:
            say(f"Resuming {run_path} after epoch {state['epoch']} of {config.fit.epochs}")

    def checkpoint(model: Net, optimizer: torch.optim.Optimizer, st: EpochState, best_state) -> None:
        if run_path is None or not writer:
            return
        runs.save_checkpoint(run_path, model, optimizer, {
            "epoch": st.epoch, "history": st.history, "plateau": st.plateau,
            "best_value": st.best_value, "best_epoch": st.best_epoch, "bad_epochs": st.bad_epochs,
        }, best_state if config.fit.early_stopping else None)
        runs.save_history(run_path, st.history)

    t0 = time.perf_counter()
    history = fit(model, to_float(x_tr), y_tr.astype(np.int64), validation, config.fit, quiet=quiet,
                  on_epoch_end=checkpoint, resume=resume_state, dist=dist)
    train_s = time.perf_counter() - t0
    if history.interrupted:
        if curves is not None:
            curves.cancel()
        done = len(history.rows)
        raise Interrupted(f"interrupted during epoch {done + 1}; the checkpoint of epoch {done} is saved"
                          + (f"; continue with: digitlab train --resume {run_path}" if run_path else ""))

    device = next(model.parameters()).device
    xt = torch.from_numpy(to_float(x_test)).to(device)
    yt = torch.from_numpy(y_test.astype(np.int64)).to(device)
    test_loss, test_acc = _evaluate_maybe_sharded(model, xt, yt, config.fit.bf16, dist)
    last = history.rows[-1] if history.rows else {}
    epoch_times = [r["time"] for r in history.rows]
    new_epochs = epoch_times[resume_state.state.epoch:] if resume_state else epoch_times
    from digitlab.models import count_params

    metrics = {
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "val_loss": last.get("val_loss"),
        "val_accuracy": last.get("val_accuracy"),
        "train_loss": last.get("loss"),
        "train_accuracy": last.get("accuracy"),
        "epochs": len(history.rows),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "epoch_time_s": epoch_times,
        "train_time_s": train_s,
        "samples_per_s": (len(x_tr) * len(new_epochs) / sum(new_epochs)) if new_epochs and sum(new_epochs) else None,
        "params": count_params(model),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "world_size": dist.world_size if dist is not None else 1,
        "torch": torch.__version__,
    }
    if run_path is not None and writer:
        runs.save_weights(run_path, model)
        runs.save_history(run_path, history.rows)
        runs.write_json(run_path / runs.METRICS, metrics)
        if curves is not None:
            curves.render(history.rows)
    return TrainResult(str(run_path) if run_path else None, history, metrics, model)


class Interrupted(DigitlabError):
    """Training stopped by Ctrl-C after the last completed epoch's checkpoint."""
