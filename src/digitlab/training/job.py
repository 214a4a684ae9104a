"""A whole training job: data -> model -> fit -> test -> run folder, on one of two engines.

The **native** engine (:mod:`digitlab.training.native`) trains ReLU MLPs with Adam on the CPU without
importing torch; the **torch** engine (:mod:`digitlab.training.torch_engine`) trains everything. ``engine="auto"``
(the default) takes the native one when it can run the config, so the tutorial's protocol starts
training before torch would have finished importing. Both write the same run folder: the same
weight names and shapes, the same checkpoint files, the same history and metrics.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digitlab import runs
from digitlab.config import TrainConfig
from digitlab.curves_worker import CurvesRenderer
from digitlab.data.datasets import load_data
from digitlab.data.preprocess import train_val_split
from digitlab.errors import ConfigError, DigitlabError, Interrupted
from digitlab.training import native
from digitlab.training.board import Board, finish_run
from digitlab.training.engine import Engine, Split
from digitlab.training.loop import EpochState, History


class TrainResult:
    """``run_dir``, ``history``, ``metrics``; ``model`` is the trained network as a torch ``Net``
    (built from the native engine's weights on first use, so torch is imported only if asked)."""

    def __init__(self, run_dir: str | None, history: History, metrics: dict[str, Any], engine: Engine):
        self.run_dir, self.history, self.metrics, self.engine = run_dir, history, metrics, engine
        self._model = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self.engine.torch_model()
        return self._model


def choose_engine(config: TrainConfig, dist: Any = None) -> str:
    """``native`` or ``torch`` for this config (``config.fit.engine`` may force one)."""
    too_large = native.too_large(config)  # for every engine: the weights alone would not fit
    if too_large is not None:
        raise ConfigError(too_large)
    wanted = config.fit.engine
    if wanted == "torch":
        return "torch"
    reason = "data-parallel training needs the torch engine" if dist is not None else native.unsupported(config)
    if reason is None:
        return "native"
    if wanted == "native":
        raise ConfigError(f"the native engine cannot run this config: {reason}")
    return "torch"


def make_engine(config: TrainConfig, dist: Any = None) -> Engine:
    if choose_engine(config, dist) == "native":
        return native.NativeEngine(config)
    from digitlab.training.torch_engine import TorchEngine  # imports torch: only when it trains

    return TorchEngine(config, dist)


def load_split(config: TrainConfig, data: Any, data_dir: str | os.PathLike | None, quiet: bool) -> Split:
    """The run's arrays from ``data`` (arrays, a future of them, or None: load now)."""
    if data is None:
        data = load_data(config.dataset, data_dir=data_dir, quiet=quiet)
    elif hasattr(data, "result"):
        try:
            data = data.result()
        except DigitlabError:  # e.g. a corrupt cached file: load again in the foreground, with messages
            data = load_data(config.dataset, data_dir=data_dir, quiet=quiet)
    (x_train, y_train), (x_test, y_test) = data
    if config.val_split > 0:
        (x_tr, y_tr), (x_val, y_val) = train_val_split(x_train, y_train, config.val_split, config.split_seed)
        return Split(x_tr, y_tr.astype(np.int64), x_val, y_val.astype(np.int64), x_test, y_test.astype(np.int64))
    return Split(x_train, y_train.astype(np.int64), None, None, x_test, y_test.astype(np.int64))


def train(
    config: TrainConfig | None,
    run_dir: str | os.PathLike | None,
    *,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    quiet: bool = False,
    plots: bool = True,
    dist: Any = None,
    log: Callable[[str], None] | None = None,
    data: Any = None,
    tensorboard: str | os.PathLike | None = None,
) -> TrainResult:
    """Load the data, build the model, fit with a checkpoint per epoch, evaluate on the test set and
    write the run folder (when ``run_dir`` is given; only rank 0 writes).

    ``data`` may hold the dataset's arrays already, or a future that will (the CLI starts reading the
    files while the engine loads). ``tensorboard``: a folder for TensorBoard event files (digitlab.training.board)."""
    writer = dist is None or dist.rank == 0
    say = log or (lambda msg: None if quiet or not writer else print(msg, file=sys.stderr, flush=True))
    run_path = Path(run_dir) if run_dir is not None else None
    if resume:
        if run_path is None:
            raise ConfigError("--resume needs a run folder")
        saved = runs.read_config(run_path)
        config = TrainConfig.from_json(saved) if config is None else config
        runs.check_checkpoint(run_path)
    if config is None:
        raise ConfigError("train() needs a TrainConfig, or resume=True with the folder of a run")
    config.validate()
    engine = make_engine(config, dist)
    board = None
    if tensorboard is not None and writer:
        board = Board(tensorboard)
    if run_path is not None and writer and not resume and runs.is_run(run_path):
        raise ConfigError(f"{run_path} already holds a run; pick another --name or continue it with --resume")

    curves = None
    if run_path is not None and writer and plots:
        curves = CurvesRenderer(run_path / runs.CURVES)  # a helper process imports matplotlib meanwhile
    made: list[Path] = []  # what a failed start removes again: the run folder appears only once training starts
    try:
        split = load_split(config, data, data_dir, quiet or not writer)
        engine.build()
        if run_path is not None and writer and not resume:
            made = runs.make_run_dir(run_path)
            runs.write_json(run_path / runs.CONFIG, config.to_json())
    except BaseException:
        if curves is not None:
            curves.cancel()
        runs.remove_made(made)
        raise
    resumed = None
    if run_path is not None and resume:
        resumed = engine.resume(run_path)
        done = resumed.state.epoch
        if done >= config.fit.epochs:
            say(f"{run_path} already completed {done} epochs; evaluating")
        else:
            say(f"Resuming {run_path} after epoch {done} of {config.fit.epochs}")

    def checkpoint(state: EpochState, best: Any) -> None:
        if run_path is not None and writer:
            engine.checkpoint(run_path, state, best if config.fit.early_stopping else None)
            runs.save_history(run_path, state.history)
        if board is not None:
            board.history(state.history)

    t0 = time.perf_counter()
    try:
        history = engine.fit(split, quiet, checkpoint, resumed, busy=curves.busy if curves is not None else None)
    except BaseException:
        if curves is not None:
            curves.cancel()
        if run_path is not None and writer and not (run_path / runs.CHECKPOINT).is_dir():
            runs.remove_made(made)  # no epoch completed: nothing to resume, nothing left behind
        raise
    train_s = time.perf_counter() - t0
    if history.interrupted:
        if curves is not None:
            curves.cancel()
        if board is not None:
            board.close()
        done = len(history.rows)
        if run_path is not None and not (run_path / runs.CHECKPOINT).is_dir():
            if writer:
                runs.remove_made(made)
            raise Interrupted(f"interrupted during epoch {done + 1}, before any checkpoint; nothing was saved")
        raise Interrupted(f"interrupted during epoch {done + 1}; the checkpoint of epoch {done} is saved"
                          + (f"; continue with: digitlab train --resume {run_path}" if run_path else ""))

    test_loss, test_acc = engine.evaluate(split.x_test, split.y_test)
    last = history.rows[-1] if history.rows else {}
    epoch_times = [r["time"] for r in history.rows]
    new_epochs = epoch_times[resumed.state.epoch:] if resumed else epoch_times
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
        "samples_per_s": (len(split.x_train) * len(new_epochs) / sum(new_epochs))
        if new_epochs and sum(new_epochs) else None,
        **engine.info(),
        "world_size": dist.world_size if dist is not None else 1,
    }
    if run_path is not None and writer:
        engine.save_weights(run_path)
        runs.save_history(run_path, history.rows)
        runs.write_json(run_path / runs.METRICS, metrics)
        if curves is not None:
            curves.render(history.rows)
    result = TrainResult(str(run_path) if run_path else None, history, metrics, engine)
    if board is not None:
        finish_run(board, result, config, split.x_test, split.y_test)
    return result

