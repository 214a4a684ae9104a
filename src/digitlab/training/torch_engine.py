"""The training loop: optimizers, schedules, augmentation, early stopping, checkpoints, history.

Data lives in memory as one float32 tensor; each epoch draws a permutation and slices batches out
of it (no DataLoader). A tutorial-style ReLU MLP on the CPU takes a hand-written forward/backward
(:class:`FastMLPStep`): the same maths as autograd with a fraction of the per-step overhead, which
is what dominates at batch 32. Everything else goes through autograd.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.config import (  # noqa: F401  (re-exported: digitlab.training.torch_engine is where users look)
    MONITORS,
    OPTIMIZER_DEFAULTS,
    PRESETS,
    SCHEDULES,
    FitOptions,
    TrainConfig,
    default_run_dir,
)
from digitlab.errors import ConfigError
from digitlab.models import Net
from digitlab.training.job import Interrupted, Split, TrainResult, train  # noqa: F401
from digitlab.training.loop import (  # noqa: F401
    EpochBook,
    EpochState,
    History,
    Plateau,
    Progress,
    SigintGuard,
    epoch_seed,
    epoch_state_from_json,
    lr_factor,
    run_state_json,
)


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


def default_threads(model: Net, device: torch.device, local_world_size: int = 1) -> int:
    """Small matmuls (an MLP at batch 32) run faster on one thread than two; convolutions use all
    cores, shared out between the ``local_world_size`` processes of a data-parallel job."""
    if device.type != "cpu":
        return torch.get_num_threads()
    from digitlab.training.distributed import threads_per_rank

    return 1 if not model.image_input else threads_per_rank(local_world_size)


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


@dataclass
class Resume:
    optimizer_state: dict
    state: EpochState
    best_weights: dict[str, torch.Tensor] | None = None


def _as_tensor(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Arrays to tensors; uint8 images become floats in [0, 1] through ``preprocess.to_float``."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    x = np.asarray(x)
    if dtype.is_floating_point and x.dtype == np.uint8:
        from digitlab.data.preprocess import to_float

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
    ``dist`` is a :class:`digitlab.training.distributed.Context` when several processes train together.
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
    book = EpochBook(opts, quiet, resume.state if resume is not None else None)
    best_state: dict[str, torch.Tensor] | None = None
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer_state)
        if not isinstance(optimizer, FusedAdam):  # give restored state the parameters' memory format
            for p in model.parameters():
                for k, v in optimizer.state.get(p, {}).items():
                    if isinstance(v, torch.Tensor) and v.shape == p.shape:
                        optimizer.state[p][k] = torch.empty_like(p).copy_(v)
        best_state = resume.best_weights
        for pg, base in zip(optimizer.param_groups, base_lrs, strict=True):
            pg["lr"] = base * book.plateau.scale

    step_fn = FastMLPStep(model) if fast else None
    progress = Progress(opts.epochs, steps_per_epoch, quiet)
    stepwise_lr = opts.schedule in ("cosine", "onecycle")
    history = book.history

    with SigintGuard(active=rank == 0) as guard:
        for epoch in range(book.start_epoch, opts.epochs):
            g = torch.Generator().manual_seed(epoch_seed(opts.seed, epoch))
            torch.manual_seed(epoch_seed(opts.seed, epoch) + 1)
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
                if guard.stop:
                    break
                if stepwise_lr:
                    f = book.lr_scale(epoch, s, steps_per_epoch)
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
                    progress.update(s + 1, *_running(losses, preds, labels))
            if guard.stop:
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
            improved, stop = book.end_epoch(row, progress)
            if opts.schedule == "plateau":
                for pg, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    pg["lr"] = base * book.plateau.scale
            if improved:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if on_epoch_end is not None:
                on_epoch_end(model, optimizer, book.state(), best_state)
            if stop:
                break
    if opts.early_stopping and best_state is not None and not guard.stop:
        model.load_state_dict(best_state)
    history.interrupted = guard.stop
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


class TorchEngine:
    """The job's torch engine (see :mod:`digitlab.training.job`): every model, device and optimizer."""

    name = "torch"

    def __init__(self, config: TrainConfig, dist: Any = None):
        self.config, self.dist = config, dist
        self.device = resolve_device(config.fit.device)  # a missing GPU is reported before any file is written
        self.model: Net | None = None
        self.optimizer: Any = None

    def build(self) -> None:
        from digitlab.models import build_model

        torch.manual_seed(self.config.fit.seed)
        self.model = build_model(self.config.model, **self.config.model_options)

    def resume(self, run_path) -> tuple[EpochState, Resume]:
        from digitlab import runs

        state, model_t, optim_t, optim_meta, best = runs.load_checkpoint(run_path)
        runs.load_state(self.model, model_t, run_path / runs.CHECKPOINT / runs.CKPT_MODEL)
        runs.check_optimizer_state(list(self.model.parameters()), optim_t, run_path / runs.CHECKPOINT / runs.CKPT_OPTIM)
        st = epoch_state_from_json(state)
        return st, Resume(runs.unflatten_optimizer(optim_t, optim_meta), st, best)

    def fit(self, split: Split, quiet: bool, on_epoch_end, resume, busy=None) -> History:
        from digitlab.data.preprocess import to_float

        def hook(model, optimizer, st, best):
            self.optimizer = optimizer
            if on_epoch_end is not None:
                on_epoch_end(st, best)

        validation = None if split.x_val is None else (to_float(split.x_val), split.y_val)
        return fit(self.model, to_float(split.x_train), split.y_train, validation, self.config.fit, quiet=quiet,
                   on_epoch_end=hook, resume=resume[1] if resume else None, dist=self.dist)

    def checkpoint(self, run_path, state: EpochState, best) -> None:
        from digitlab import runs

        opt_tensors, opt_meta = runs.flatten_optimizer(self.optimizer.state_dict())
        runs.save_checkpoint(run_path, self.model.state_dict(), opt_tensors, opt_meta, run_state_json(state), best)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        from digitlab.data.preprocess import to_float

        device = next(self.model.parameters()).device
        xt = torch.from_numpy(to_float(x)).to(device)
        yt = torch.from_numpy(np.asarray(y, np.int64)).to(device)
        return _evaluate_maybe_sharded(self.model, xt, yt, self.config.fit.bf16, self.dist)

    def save_weights(self, run_path) -> None:
        from digitlab import runs

        runs.save_weights(run_path, self.model)

    def info(self) -> dict[str, Any]:
        from digitlab.models import count_params

        return {"params": count_params(self.model), "device": str(next(self.model.parameters()).device),
                "threads": torch.get_num_threads(), "engine": self.name, "torch": torch.__version__}

    def torch_model(self) -> Net:
        return self.model

