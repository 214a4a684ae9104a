"""The epoch driver both engines train through: one loop a reader can hold in their head.

Each epoch the driver draws the epoch's permutation of the training set from the seed with
:func:`permutation` (one generator for both engines, every rank and every resume), hands it to the
engine in spans of steps with each step's learning-rate factor, checks Ctrl-C and draws the progress line in
between, then writes the history row, keeps the best weights for early stopping and calls the hook.
The engine (:class:`Steps`) only runs steps and reports; it never sees the bookkeeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from digitlab.training.loop import EpochBook, EpochState, History, Progress, SigintGuard, epoch_seed

# What the driver calls after every completed epoch: the epoch's state and the best weights so far.
EpochHook = Callable[[EpochState, Any], None]


@dataclass
class Resume:
    """Where a run continues: the bookkeeping of its last completed epoch and its best weights so far.

    ``optimizer_state`` is a torch optimizer's ``state_dict()`` for the torch engine to load once its
    optimizer exists; the native engine restores its Adam state itself and leaves it None."""

    state: EpochState
    best_weights: dict[str, Any] | None = None
    optimizer_state: dict | None = None


def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which ``epoch`` (0-based) visits the ``n`` training samples (numpy's generator):
    the same for every rank and every resume."""
    return np.random.default_rng(epoch_seed(seed, epoch)).permutation(n)


class Steps(Protocol):
    """What an engine does for the driver."""

    chunk: int  # steps per call of :meth:`train`: Ctrl-C and the progress line are looked at in between

    def start_epoch(self, epoch: int) -> None:
        """Get ready for ``epoch`` (0-based): reset the epoch's totals, seed its augmentation."""
    def train(self, idx: np.ndarray, lr_factors: np.ndarray) -> None:
        """Steps over the samples ``idx`` in batches of ``batch_size``, step i at the base learning rate
        times ``lr_factors[i]``."""
    def totals(self, final: bool = False) -> tuple[float, int, int]:
        """Summed loss, correct predictions and samples of the epoch so far (every rank's when ``final``)."""
    def validate(self) -> tuple[float, float] | None: ...
    def lr(self) -> float: ...
    def snapshot(self) -> Any: ...
    def restore(self, weights: Any) -> None: ...


def run_epochs(engine: Steps, opts: Any, n: int, *, quiet: bool = False, resume: Resume | None = None,
               on_epoch_end: EpochHook | None = None, sigint: bool = True) -> History:
    """Train ``engine`` for ``opts.epochs`` epochs (a :class:`~digitlab.config.FitOptions`) over ``n``
    samples, from the start or from ``resume``; returns the history (``interrupted`` after Ctrl-C)."""
    book = EpochBook(opts, quiet, resume.state if resume is not None else None)
    best = resume.best_weights if resume is not None else None
    batch = opts.batch_size
    steps = math.ceil(n / batch)
    progress = Progress(opts.epochs, steps, quiet)
    with SigintGuard(active=sigint) as guard:
        for epoch in range(book.start_epoch, opts.epochs):
            perm = permutation(opts.seed, epoch, n)
            engine.start_epoch(epoch)
            factors = book.lr_factors(epoch, steps)
            progress.start_epoch(epoch)
            for s0 in range(0, steps, engine.chunk):
                if guard.stop:
                    break
                s1 = min(steps, s0 + engine.chunk)
                engine.train(perm[s0 * batch : s1 * batch], factors[s0:s1])
                if progress.live:
                    progress.update(s1, *engine.totals())
            if guard.stop:
                break
            loss_sum, correct, seen = engine.totals(final=True)
            elapsed = time.perf_counter() - progress.t0
            row: dict[str, float] = {"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": correct / seen}
            validation = engine.validate()
            if validation is not None:
                row["val_loss"], row["val_accuracy"] = validation
            row["lr"] = engine.lr()
            row["time"] = elapsed
            improved, stop = book.end_epoch(row, progress)
            if improved:
                best = engine.snapshot()
            if on_epoch_end is not None:
                on_epoch_end(book.state(), best)
            if stop:
                break
    if opts.early_stopping and best is not None and not guard.stop:
        engine.restore(best)
    book.history.interrupted = guard.stop
    return book.history
