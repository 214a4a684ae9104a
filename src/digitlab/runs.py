"""A run directory: config, weights (safetensors), history, metrics. Load and save.

```
runs/<name>/
  config.json        everything needed to rebuild the model and repeat the run
  model.safetensors  final weights (never pickle)
  history.json/.csv  one row per epoch
  metrics.json       test loss/accuracy, time per epoch, samples/s
  curves.png         loss and accuracy, train vs val
  checkpoint/        last completed epoch: weights + optimizer state + RNG, for --resume
```
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file as load_arrays
from safetensors.numpy import save as save_arrays

from digitlab.config import RunConfigSchema
from digitlab.data.formats import atomic_write_bytes
from digitlab.data.registry import DATASETS
from digitlab.errors import RunError
from digitlab.schema import CheckpointStateSchema, check

if TYPE_CHECKING:  # torch is imported only by the functions that need it
    import torch

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS = "metrics.json"
CURVES = "curves.png"
CHECKPOINT = "checkpoint"


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None


def save_tensors(path: str | os.PathLike, tensors: dict[str, Any], metadata: dict[str, str] | None = None):
    """Write torch tensors, or numpy arrays (the native engine's), as one safetensors file: the same
    bytes for the same names, dtypes, shapes and values either way."""
    if all(isinstance(v, np.ndarray) for v in tensors.values()):
        arrays = {k: np.asarray(v, order="C") for k, v in tensors.items()}  # (ascontiguousarray makes 0-d 1-d)
        return atomic_write_bytes(path, save_arrays(arrays, metadata=metadata))
    from safetensors.torch import save  # imports torch: only for torch tensors

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_tensors(path: str | os.PathLike, arrays: bool = False) -> dict[str, Any]:
    """A safetensors file's tensors (torch), or numpy arrays with ``arrays=True``."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: missing")
    try:
        if arrays:
            return load_arrays(path)
        from safetensors.torch import load_file  # imports torch: only for torch tensors

        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise RunError(f"{path}: not a readable safetensors file ({e})") from None


def save_weights(run_dir: str | os.PathLike, model: torch.nn.Module) -> Path:
    return save_tensors(Path(run_dir) / WEIGHTS, model.state_dict(), {"format": "pt"})


def save_history(run_dir: str | os.PathLike, history: list[dict[str, float]]) -> None:
    run_dir = Path(run_dir)
    write_json(run_dir / HISTORY_JSON, history)
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
    atomic_write_bytes(run_dir / HISTORY_CSV, buf.getvalue().encode())


def make_run_dir(path: str | os.PathLike) -> list[Path]:
    """Create a run folder (and missing parents); the folders it made, deepest first, for :func:`remove_made`.

    A path that cannot be made (a file in the way, no permission, a full disk) is one RunError line."""
    path = Path(path)
    made = [p for p in [path, *path.parents] if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        in_the_way = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        why = f"{in_the_way} is a file, not a folder" if in_the_way is not None else e.strerror or str(e)
        raise RunError(f"{path}: cannot create the run folder ({why})") from None
    return made


def remove_made(made: list[Path]) -> None:
    """Remove folders made by :func:`make_run_dir` again, with what was written into them."""
    for i, p in enumerate(made):
        if i == 0:
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                p.rmdir()  # a parent only while it is still empty
            except OSError:
                break


def is_run(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG).is_file()


def read_config(run_dir: str | os.PathLike) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    if not is_run(run_dir):
        raise RunError(f"{run_dir}: not a digitlab run (no {CONFIG}); train one with 'digitlab train'")
    config = read_json(run_dir / CONFIG)
    if not isinstance(config, dict) or "model" not in config:
        raise RunError(f"{run_dir / CONFIG}: has no 'model' section")
    check(RunConfigSchema, config, run_dir / CONFIG, RunError)
    return config


def run_labels(config: dict) -> list[str]:
    """A run's class names: config.json's ``labels``, else its dataset's classes, else "0".."9"."""
    if config.get("labels"):
        return [str(s) for s in config["labels"]]
    ds = DATASETS.get(config.get("dataset", "mnist"))
    return list(ds.classes) if ds else [str(i) for i in range(10)]


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | os.PathLike) -> torch.nn.Module:
    """Load weights into a model, with a one-line error when they do not fit its config."""
    check_weights(model.state_dict(), tensors, source)
    model.load_state_dict(tensors)
    return model


def check_weights(expected: dict[str, Any], tensors: dict[str, Any], source: str | os.PathLike) -> None:
    """One-line RunError unless ``tensors`` has exactly ``expected``'s names and shapes (torch or numpy)."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        if wrong:
            k = wrong[0]
            parts.append(f"{k} has shape {tuple(tensors[k].shape)}, config needs {tuple(expected[k].shape)}")
        raise RunError(f"{source}: weights do not match the model in config.json ({'; '.join(parts)})")
    for k, want in expected.items():
        got = tensors[k]
        if _dtype_name(got) != _dtype_name(want):
            raise RunError(f"{source}: {k} is stored as {_dtype_name(got)}, the model needs {_dtype_name(want)}; "
                           "the weights were not written by digitlab or were altered")
        if _dtype_name(got).startswith(("float", "bfloat")) and not _all_finite(got):
            raise RunError(f"{source}: {k} holds NaN or infinite values; the weights are unusable "
                           "(a diverged training run, or a damaged file)")


def check_optimizer_state(params: list[Any], tensors: dict[str, Any], source: str | os.PathLike) -> None:
    """One-line RunError unless every per-parameter optimizer tensor (``state.<i>.<key>``) has the shape of
    parameter ``i`` (a scalar such as Adam's step count excepted): nothing is broadcast into place."""
    for name, value in tensors.items():
        try:
            _, pid, key = name.split(".", 2)
            param = params[int(pid)]
        except (ValueError, IndexError):
            raise RunError(f"{source}: optimizer state {name!r} belongs to no parameter of the model") from None
        if len(value.shape) and tuple(value.shape) != tuple(param.shape):
            raise RunError(f"{source}: optimizer state {name} has shape {tuple(value.shape)}, its parameter "
                           f"has {tuple(param.shape)}; the checkpoint does not belong to this model")


def _dtype_name(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


def _all_finite(t: Any) -> bool:
    if hasattr(t, "isfinite") and callable(t.isfinite):  # torch
        return bool(t.float().isfinite().all())
    return bool(np.isfinite(np.asarray(t, dtype=np.float32)).all())


def read_metrics(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / METRICS
    return read_json(path) if path.is_file() else None


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    path = Path(run_dir) / HISTORY_JSON
    return read_json(path) if path.is_file() else []


# --- checkpoints (the last completed epoch, for --resume) -------------------------------------

CKPT_STATE = "state.json"
CKPT_MODEL = "model.safetensors"
CKPT_OPTIM = "optimizer.safetensors"
CKPT_BEST = "best.safetensors"
CKPT_NEW = CHECKPOINT + ".new"  # the next checkpoint while it is written
CKPT_OLD = CHECKPOINT + ".old"  # the previous one while the new one is switched in


# The Adam state both engines write (torch.optim.Adam's own state_dict() layout, so a checkpoint loads
# in torch.optim.Adam too): one param group, and per parameter (numbered in model.parameters() order)
# tensors named state.<param>.step / exp_avg / exp_avg_sq, moments in the parameter's torch shape.
ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")


def adam_param_group(lr: float, betas: tuple[float, float], eps: float, weight_decay: float, decoupled: bool,
                     params: list[Any]) -> dict[str, Any]:
    """The one param group of an Adam / AdamW optimizer, as ``torch.optim.Adam(fused=True)`` lays it out."""
    return {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": False,
            "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": True,
            "decoupled_weight_decay": decoupled, "params": params}


def adam_tensor_name(param: int, key: str) -> str:
    """``state.<param>.<key>``: where a parameter's ``step``, ``exp_avg`` or ``exp_avg_sq`` is stored."""
    return f"state.{param}.{key}"


def flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """A torch optimizer's ``state_dict()`` as ``(tensors, meta)``: tensors named ``state.<param>.<key>``."""
    import torch  # the torch engine's optimizer: torch is loaded already

    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict] = {}
    for pid, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[adam_tensor_name(pid, key)] = value
            else:
                plain.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain": plain}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta.get("plain", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: str | os.PathLike, weights: dict[str, Any], optimizer_tensors: dict[str, Any],
                    optimizer_meta: dict, state: dict, best_weights: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint of a completed epoch beside the previous one, then switch to it.

    Every file goes into ``checkpoint.new/`` first; then ``checkpoint/`` becomes ``checkpoint.old/``,
    ``checkpoint.new/`` becomes ``checkpoint/`` and the old one is removed. A crash at any step leaves
    either folder whole, and :func:`recover_checkpoint` (run before every read and write) puts the
    last complete one back in place: the last good checkpoint is never lost."""
    run_dir = Path(run_dir)
    ckpt, new, old = (run_dir / name for name in (CHECKPOINT, CKPT_NEW, CKPT_OLD))
    recover_checkpoint(run_dir)
    if new.exists():
        shutil.rmtree(new)
    new.mkdir(parents=True)
    epoch = str(state["epoch"])
    save_tensors(new / CKPT_MODEL, weights, {"epoch": epoch})
    save_tensors(new / CKPT_OPTIM, optimizer_tensors, {"epoch": epoch})
    if best_weights is not None:
        save_tensors(new / CKPT_BEST, best_weights, {"epoch": epoch})
    write_json(new / CKPT_STATE, {**state, "optimizer": optimizer_meta, "has_best": best_weights is not None})
    _sync_dir(new)
    if ckpt.exists():
        os.replace(ckpt, old)
    os.replace(new, ckpt)
    _sync_dir(run_dir)
    if old.exists():
        shutil.rmtree(old)
    return ckpt


def recover_checkpoint(run_dir: str | os.PathLike) -> None:
    """Finish or undo a checkpoint switch that a crash interrupted (see :func:`save_checkpoint`)."""
    run_dir = Path(run_dir)
    ckpt, new, old = (run_dir / name for name in (CHECKPOINT, CKPT_NEW, CKPT_OLD))
    try:
        if old.is_dir():
            if ckpt.is_dir():  # crashed after the switch, before the old one was removed
                shutil.rmtree(old)
            else:  # crashed between the two renames: the previous checkpoint goes back
                os.replace(old, ckpt)
        if new.is_dir():  # an unfinished new checkpoint: the epoch it was for is done again on resume
            shutil.rmtree(new)
    except FileNotFoundError:  # another process of the same job recovered it first
        pass
    except OSError as e:
        raise RunError(f"{run_dir}: cannot put the checkpoint back in order ({e.strerror or e})") from None


def _sync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _epoch_of(path: Path) -> str | None:
    try:
        with safe_open(path, framework="numpy") as f:
            return (f.metadata() or {}).get("epoch")
    except (SafetensorError, OSError) as e:
        raise RunError(f"{path}: not a readable safetensors file ({e})") from None


def check_checkpoint(run_dir: str | os.PathLike) -> dict:
    """The checkpoint's ``state.json``, after checking that every file it needs is there and of its epoch."""
    ckpt = Path(run_dir) / CHECKPOINT
    recover_checkpoint(run_dir)
    if not (ckpt / CKPT_STATE).is_file():
        raise RunError(f"{run_dir}: has no checkpoint to resume from (no {CHECKPOINT}/{CKPT_STATE})")
    state = read_json(ckpt / CKPT_STATE)
    check(CheckpointStateSchema, state, ckpt / CKPT_STATE, RunError)
    epoch = str(state.get("epoch"))
    names = [CKPT_MODEL, CKPT_OPTIM] + ([CKPT_BEST] if state.get("has_best") else [])
    for name in names:
        if not (ckpt / name).is_file():
            raise RunError(f"{ckpt / name}: missing; the checkpoint is incomplete")
        if _epoch_of(ckpt / name) != epoch:
            raise RunError(f"{ckpt / name}: belongs to another epoch than {CKPT_STATE} (epoch {epoch}); "
                           "the checkpoint is inconsistent")
    return state


def load_checkpoint(run_dir: str | os.PathLike, arrays: bool = False) -> tuple[dict, dict, dict, dict, dict | None]:
    """``(state, model_tensors, optimizer_tensors, optimizer_meta, best_weights)`` of a run's last
    completed epoch; torch tensors, or numpy arrays with ``arrays=True``."""
    ckpt = Path(run_dir) / CHECKPOINT
    state = check_checkpoint(run_dir)
    model_t = load_tensors(ckpt / CKPT_MODEL, arrays)
    optim_t = load_tensors(ckpt / CKPT_OPTIM, arrays)
    meta = state.pop("optimizer")
    best = load_tensors(ckpt / CKPT_BEST, arrays) if state.get("has_best") else None
    return state, model_t, optim_t, meta, best
