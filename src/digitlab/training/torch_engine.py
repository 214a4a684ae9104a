"""The torch engine: optimizers, augmentation, the training step, data-parallel training; every
model, device and optimizer. The epochs themselves run in :mod:`digitlab.training.driver`.

Data lives in memory as one float32 tensor; the driver's permutation picks each batch out of it
(no DataLoader). A tutorial-style ReLU MLP on the CPU takes a hand-written forward/backward
(:class:`FastMLPStep`): the same maths as autograd with a fraction of the per-step overhead, which
is what dominates at batch 32. Everything else goes through autograd.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab import runs
from digitlab.config import OPTIMIZER_DEFAULTS, FitOptions, TrainConfig, threads_per_rank
from digitlab.data.preprocess import to_float
from digitlab.errors import ConfigError
from digitlab.models import Net, as_tensor, build_model, count_params, evaluate_tensors
from digitlab.training.driver import EpochHook, Resume, run_epochs
from digitlab.training.engine import Split
from digitlab.training.loop import EpochState, History, epoch_seed


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
        self.param_groups = [runs.adam_param_group(lr, betas, eps, weight_decay, decoupled, self.params)]
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


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur of a (B, 1, H, W) batch (zeros past the edges)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))


def degrade_batch(x: torch.Tensor, gen: torch.Generator, p: float = 0.2) -> torch.Tensor:
    """The ways a picture is worse than MNIST, each for a fraction ``p`` of a (B, 28, 28) batch.

    Thicker or thinner strokes (a grey dilation or erosion, part way), low resolution (area-downsampled
    to 7-16 px and bilinearly upsampled back, as a thumbnail is once enlarged), blur (sigma 0.5-2 px)
    and a gamma (0.6-1.7) on the grey levels. Blurred and resampled digits are scaled back to a peak
    of 1, as the picture pipeline normalises a soft digit's ink.
    """
    b = x.shape[0]
    r = torch.rand(b, 6, generator=gen, device="cpu").to(x.device)
    knobs = torch.rand(3, generator=gen, device="cpu").tolist()
    x = x.unsqueeze(1)
    shape = (b, 1, 1, 1)
    t = r[:, 1].view(shape)
    thick = (r[:, 0] < p / 2).view(shape)
    thin = ((r[:, 0] >= p / 2) & (r[:, 0] < p)).view(shape)
    x = torch.where(thick, x + t * (F.max_pool2d(x, 3, 1, 1) - x), x)
    x = torch.where(thin, x + 0.6 * t * (-F.max_pool2d(-x, 3, 1, 1) - x), x)
    soft = torch.zeros(shape, dtype=torch.bool, device=x.device)
    low = (r[:, 2] < p).view(shape)
    if bool(low.any()):
        side = 7 + int(knobs[0] * 10)
        small = F.interpolate(x, size=(side, side), mode="area")
        x = torch.where(low, F.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False), x)
        soft |= low
    blur = (r[:, 3] < p).view(shape)
    if bool(blur.any()):
        x = torch.where(blur, _gaussian_blur(x, 0.5 + 1.5 * knobs[1]), x)
        soft |= blur
    peak = x.amax(dim=(2, 3), keepdim=True).clamp_min(1e-3)
    x = torch.where(soft, (x / peak).clamp(0, 1), x)
    gamma = torch.exp((r[:, 5] - 0.5) * 1.05).view(shape)  # 0.6 .. 1.7
    x = torch.where((r[:, 4] < p).view(shape), x.clamp_min(0) ** gamma, x)
    return x.squeeze(1)


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
                and kinds <= {nn.Flatten, nn.Linear, nn.ReLU} and not opts.augment and not opts.degrade)

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
        if opts.degrade:
            xb = degrade_batch(xb, gen)
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


def _running(losses: list[torch.Tensor], preds: list[torch.Tensor], labels: list[torch.Tensor]):
    """(summed loss, correct count, samples) of the steps so far: one reduction instead of one per step."""
    if not losses:
        return 0.0, 0, 0
    y = torch.cat(labels)
    return float(torch.stack(losses).double().sum()), int((torch.cat(preds) == y).sum()), len(y)


class TorchSteps:
    """The torch side of :func:`digitlab.training.driver.run_epochs`: a model, its optimizer and the
    data as tensors on the device; steps on the hand-written MLP step or autograd, on one process or
    several (``dist``, a :class:`digitlab.training.distributed.Context`)."""

    chunk = 16  # steps between two looks at Ctrl-C and the progress line

    def __init__(self, model: Net, x: torch.Tensor, y: torch.Tensor, validation: tuple | None, opts: FitOptions,
                 device: torch.device, dist: Any = None):
        self.model, self.x, self.y, self.validation, self.opts, self.dist = model, x, y, validation, opts, dist
        self.device = device
        self.rank, self.world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
        fast = FastMLPStep.supports(model, opts, device) and dist is None
        self.train_model: nn.Module = model
        if dist is not None:
            self.train_model = dist.wrap(model)
        elif opts.compile:
            self.train_model = torch.compile(model)
        self.optimizer = make_optimizer(opts, list(model.parameters()))
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.fast_step = FastMLPStep(model) if fast else None
        self.step: Any = None
        self.losses: list[torch.Tensor] = []
        self.preds: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def load_optimizer(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)
        if not isinstance(self.optimizer, FusedAdam):  # give restored state the parameters' memory format
            for p in self.model.parameters():
                for k, v in self.optimizer.state.get(p, {}).items():
                    if isinstance(v, torch.Tensor) and v.shape == p.shape:
                        self.optimizer.state[p][k] = torch.empty_like(p).copy_(v)

    def start_epoch(self, epoch: int) -> None:
        seed = epoch_seed(self.opts.seed, epoch)
        gen = torch.Generator().manual_seed(seed)  # augmentation
        torch.manual_seed(seed + 1)  # dropout
        self.step = self.fast_step or _autograd_step(self.train_model, self.opts, self.device, gen, self.world)
        self.losses, self.preds, self.labels = [], [], []
        self.model.train()

    def train(self, idx: np.ndarray, lr_factors: np.ndarray) -> None:
        idx_t = torch.from_numpy(idx).to(self.device)
        batch = self.opts.batch_size
        y_span = self.y.index_select(0, idx_t).split(batch)  # label batches as views
        for s, ids in enumerate(idx_t.split(batch)):
            for pg, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                pg["lr"] = base * float(lr_factors[s])
            if self.world > 1:
                global_count = len(ids)
                ids = ids[self.rank :: self.world]
                yb = y_span[s][self.rank :: self.world]
                loss_sum, pred = self.step(self.x.index_select(0, ids), yb, global_count)
            else:
                yb = y_span[s]
                loss_sum, pred = self.step(self.x.index_select(0, ids), yb)
            self.optimizer.step()
            self.losses.append(loss_sum)
            self.preds.append(pred)
            self.labels.append(yb)

    def totals(self, final: bool = False) -> tuple[float, int, int]:
        if final and self.dist is not None:
            self.dist.sync_buffers(self.model)  # batch-norm running statistics: rank 0's on every rank
        loss, correct, seen = _running(self.losses, self.preds, self.labels)
        if final and self.dist is not None:
            loss, correct, seen = self.dist.all_reduce_sum([loss, correct, seen])
        return loss, correct, seen

    def validate(self) -> tuple[float, float] | None:
        if self.validation is None:
            return None
        return _evaluate_maybe_sharded(self.model, *self.validation, self.opts.bf16, self.dist)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore(self, weights: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(weights)


def prepare(model: Net, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
            validation_data: tuple[np.ndarray, np.ndarray] | None, opts: FitOptions, dist: Any = None) -> TorchSteps:
    """Check the options, pick the device and threads, and put model and data on the device."""
    opts.validate()
    device = resolve_device(opts.device)
    local_world = getattr(dist, "local_world_size", 1) if dist is not None else 1
    torch.set_num_threads(opts.threads or default_threads(model, device, local_world))
    xt = as_tensor(x, torch.float32).to(device)
    yt = as_tensor(y, torch.int64).to(device)
    if xt.ndim != 3 or xt.shape[1:] != (28, 28) or len(xt) != len(yt):
        raise ConfigError(f"expected images (N, 28, 28) and N labels, got {tuple(xt.shape)} and {tuple(yt.shape)}")
    validation = None
    if validation_data is not None:
        validation = (as_tensor(validation_data[0], torch.float32).to(device),
                      as_tensor(validation_data[1], torch.int64).to(device))
    model.to(device)
    if device.type == "cpu" and model.image_input:
        model.to(memory_format=torch.channels_last)
    model.train()
    return TorchSteps(model, xt, yt, validation, opts, device, dist)


def fit(
    model: Net,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    options: FitOptions | None = None,
    *,
    quiet: bool = False,
    on_epoch_end: EpochHook | None = None,
    resume: Resume | None = None,
    dist: Any = None,
    **kwargs: Any,
) -> History:
    """Train ``model`` on float images ``x`` (N, 28, 28) in [0, 1] and integer labels ``y``.

    Keyword arguments not in the signature are :class:`FitOptions` fields, so the tutorial's
    ``fit(model, x, y, epochs=5, batch_size=32, validation_data=(xv, yv))`` reads the same.
    ``on_epoch_end(state, best_weights)`` runs after each completed epoch (checkpoints hook in there);
    ``resume`` continues from such a checkpoint.
    ``dist`` is a :class:`digitlab.training.distributed.Context` when several processes train together.
    """
    opts = options or FitOptions()
    for k, v in kwargs.items():
        if not hasattr(opts, k):
            raise TypeError(f"fit() got an unexpected keyword argument {k!r}")
        setattr(opts, k, v)
    return _run(prepare(model, x, y, validation_data, opts, dist), quiet, resume, on_epoch_end)


def _run(steps: TorchSteps, quiet: bool, resume: Resume | None, on_epoch_end: EpochHook | None) -> History:
    if resume is not None and resume.optimizer_state is not None:
        steps.load_optimizer(resume.optimizer_state)
    history = run_epochs(steps, steps.opts, len(steps.x), quiet=quiet or steps.rank != 0, resume=resume,
                         on_epoch_end=on_epoch_end, sigint=steps.rank == 0)
    steps.model.eval()
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
        self.steps: TorchSteps | None = None

    def build(self) -> None:
        torch.manual_seed(self.config.fit.seed)
        self.model = build_model(self.config.model, **self.config.model_options)

    def resume(self, run_path: Path) -> Resume:
        state, model_t, optim_t, optim_meta, best = runs.load_checkpoint(run_path)
        runs.load_state(self.model, model_t, run_path / runs.CHECKPOINT / runs.CKPT_MODEL)
        runs.check_optimizer_state(list(self.model.parameters()), optim_t, run_path / runs.CHECKPOINT / runs.CKPT_OPTIM)
        return Resume(EpochState.from_json(state), best, runs.unflatten_optimizer(optim_t, optim_meta))

    def fit(self, split: Split, quiet: bool, on_epoch_end: EpochHook | None, resume: Resume | None,
            busy: Any = None) -> History:
        validation = None if split.x_val is None else (to_float(split.x_val), split.y_val)
        self.steps = prepare(self.model, to_float(split.x_train), split.y_train, validation, self.config.fit,
                             self.dist)
        return _run(self.steps, quiet, resume, on_epoch_end)

    def checkpoint(self, run_path: Path, state: EpochState, best: Any) -> None:
        opt_tensors, opt_meta = runs.flatten_optimizer(self.steps.optimizer.state_dict())
        runs.save_checkpoint(run_path, self.model.state_dict(), opt_tensors, opt_meta, state.to_json(), best)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        device = next(self.model.parameters()).device
        xt = torch.from_numpy(to_float(x)).to(device)
        yt = torch.from_numpy(np.asarray(y, np.int64)).to(device)
        return _evaluate_maybe_sharded(self.model, xt, yt, self.config.fit.bf16, self.dist)

    def save_weights(self, run_path: Path) -> None:
        runs.save_weights(run_path, self.model)

    def info(self) -> dict[str, Any]:
        return {"params": count_params(self.model), "device": str(next(self.model.parameters()).device),
                "threads": torch.get_num_threads(), "engine": self.name, "torch": torch.__version__}

    def torch_model(self) -> Net:
        return self.model
