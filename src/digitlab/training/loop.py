"""The bookkeeping of a training loop that does not depend on the engine: learning-rate schedules,
the Keras-like progress line, per-epoch history, early stopping, Ctrl-C and checkpoint state.
:mod:`digitlab.training.driver` runs the epochs with it."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from digitlab.errors import ConfigError


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

    def update(self, step: int, loss_sum: float, correct: int, seen: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.1:
            return
        self.last = now
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

    def to_json(self) -> dict[str, Any]:
        """A checkpoint's ``state.json`` fields (besides the optimizer's)."""
        return {"epoch": self.epoch, "history": self.history, "plateau": self.plateau, "best_value": self.best_value,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> EpochState:
        return cls(epoch=state["epoch"], history=state["history"], plateau=state["plateau"],
                   best_value=state.get("best_value"), best_epoch=state.get("best_epoch"),
                   bad_epochs=state.get("bad_epochs", 0))


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63 - 1)


class EpochBook:
    """What happens between epochs, the same for every engine: the history row and progress line,
    reduce-on-plateau, and early stopping (the engine snapshots the weights when told to)."""

    def __init__(self, opts: Any, quiet: bool = False, resume: EpochState | None = None):
        self.opts, self.quiet = opts, quiet
        self.history = History()
        self.plateau = Plateau()
        self.best_value: float | None = None
        self.bad_epochs = 0
        self.start_epoch = 0
        self.higher_better = opts.monitor.endswith("accuracy")
        if resume is not None:
            self.start_epoch = resume.epoch
            self.history.rows = list(resume.history)
            self.plateau.load(resume.plateau)
            self.best_value, self.history.best_epoch, self.bad_epochs = (resume.best_value, resume.best_epoch,
                                                                         resume.bad_epochs)

    def lr_scale(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """Multiplier of the base learning rate for ``step`` of ``epoch`` (both 0-based)."""
        if self.opts.schedule in ("cosine", "onecycle"):
            return lr_factor(self.opts.schedule, epoch * steps_per_epoch + step,
                             steps_per_epoch * self.opts.epochs) * self.plateau.scale
        return self.plateau.scale

    def lr_factors(self, epoch: int, steps_per_epoch: int) -> np.ndarray:
        """The learning-rate multiplier of each step of ``epoch`` (float64, one per step)."""
        if self.opts.schedule in ("cosine", "onecycle"):
            return np.array([self.lr_scale(epoch, s, steps_per_epoch) for s in range(steps_per_epoch)])
        return np.full(steps_per_epoch, self.plateau.scale)

    def end_epoch(self, row: dict[str, float], progress: Progress) -> tuple[bool, bool]:
        """Record a finished epoch; returns ``(improved, stop)`` for early stopping."""
        self.history.rows.append(row)
        progress.end_epoch(row)
        if self.opts.schedule == "plateau":
            self.plateau.update(row.get("val_loss", row["loss"]))
        if not self.opts.early_stopping:
            return False, False
        monitor = self.opts.monitor
        if monitor not in row:
            raise ConfigError(f"early stopping monitors {monitor}, which needs validation data")
        value = row[monitor]
        best = self.best_value
        if best is None or (value > best if self.higher_better else value < best):
            self.best_value, self.history.best_epoch, self.bad_epochs = value, int(row["epoch"]), 0
            return True, False
        self.bad_epochs += 1
        stop = self.bad_epochs >= self.opts.early_stopping
        if stop:
            self.history.stopped_early = True
            if not self.quiet:
                print(f"Early stopping: {monitor} has not improved for {self.bad_epochs} epochs; "
                      f"restoring the weights of epoch {self.history.best_epoch}", file=sys.stderr)
        return False, stop

    def state(self) -> EpochState:
        return EpochState(len(self.history.rows), list(self.history.rows), self.plateau.state(), self.best_value,
                          self.history.best_epoch, self.bad_epochs)


class SigintGuard:
    """The first Ctrl-C asks to stop after the current step (``.stop``); a second one stops at once.
    Only where Python's default handler is in place, and only in the main process (``active``)."""

    def __init__(self, active: bool = True):
        self.stop = False
        self.active = active
        self.previous: Any = None

    def _handler(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __enter__(self) -> SigintGuard:
        self.previous = signal.getsignal(signal.SIGINT)
        self.active = (self.active and self.previous is signal.default_int_handler
                       and threading.current_thread() is threading.main_thread())
        if self.active:
            signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self.previous)
