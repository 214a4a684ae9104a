"""``digitlab train`` and ``digitlab summary``."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import typer
from rich.table import Table

from digitlab.cli.app import JSON, QUIET, app, err, out, print_json, visible
from digitlab.config import TrainConfig, default_run_dir
from digitlab.data.datasets import load_data
from digitlab.data.locate import locate
from digitlab.errors import ConfigError, DigitlabError
from digitlab.training.job import train as run_training


@app.command()
def summary(
    model: str = typer.Option("mlp", "--model", "-m", help="Model name: mlp, cnn, cnn_bn."),
    hidden: str = typer.Option(None, "--hidden", help="MLP hidden sizes, e.g. 256,128."),
    activation: str = typer.Option(None, "--activation", help="MLP activation: relu, sigmoid, tanh, gelu."),
) -> None:
    """Print a Keras-like table of a model's layers, output shapes and parameter counts."""
    from digitlab.models import build_model, count_params, summary_rows  # imports torch: this command only

    options = {}
    if hidden:
        options["hidden"] = _hidden(hidden)
    if activation:
        options["activation"] = activation
    net = build_model(model, **options)
    table = Table(title=f'Model: "{net.name}"', title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    for r in summary_rows(net):
        table.add_row(f"{r.name} ({r.kind})", str(r.output_shape), f"{r.params:,}")
    out.print(table)
    total, trainable = count_params(net), count_params(net, trainable_only=True)
    out.print(f" Total params: {total:,}\n Trainable params: {trainable:,}\n"
              f" Non-trainable params: {total - trainable:,}")


def _run_name(name: str) -> str:
    """A run name is one path component: never '', '.', '..', a path, or control characters."""
    bad_chars = any(ord(c) < 32 or c in "/\\" for c in name)
    if not name.strip() or name in (".", "..") or bad_chars or os.path.isabs(name):
        raise ConfigError(f"--name must be a single folder name (no '/', '\\', '.', '..' or control "
                          f"characters), got {visible(repr(name))}; use --runs-dir for where it goes")
    return name


def _hidden(value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(h) for h in value.split(",") if h.strip()]
    except ValueError:
        raise ConfigError(f"--hidden takes comma-separated integers such as 256,128, got {value!r}") from None


def _start_loading(resume: str | None, dataset: str | None, data_dir: str | None, quiet: bool):
    """Read the dataset in a thread (gzip releases the GIL) while the caller imports torch."""
    name = dataset or "mnist"
    if resume:
        try:
            name = json.loads((Path(resume) / "config.json").read_text()).get("dataset", "mnist")
        except (OSError, ValueError, AttributeError):
            return None  # train() reports the bad run folder
    try:
        if locate(name, data_dir) is None:
            return None  # nothing local: train() downloads in the foreground, after checking the options
    except DigitlabError:
        return None
    pool = ThreadPoolExecutor(1)
    future = pool.submit(load_data, name, data_dir, download_missing=False, quiet=True)
    pool.shutdown(wait=False)
    return future


@app.command()
def train(
    model: str = typer.Option(None, "--model", "-m", help="mlp (the tutorial's), cnn (the tutorial's CNN), cnn_bn."),
    preset: str = typer.Option("tutorial", "--preset", help="tutorial (the tutorial's protocol) or best."),
    hidden: str = typer.Option(None, "--hidden", help="MLP hidden sizes, e.g. 256,128 (default 128,64)."),
    activation: str = typer.Option(None, "--activation", help="MLP activation: relu, sigmoid, tanh, gelu."),
    dropout: float = typer.Option(None, "--dropout", help="Dropout after each hidden layer (mlp, cnn_bn)."),
    dataset: str = typer.Option(None, "--dataset", help="mnist or fashion-mnist."),
    data_dir: str = typer.Option(None, "--data-dir", help="Folder holding <dataset>/ (or $DIGITLAB_DATA_DIR)."),
    epochs: int = typer.Option(None, "--epochs", "-e", help="Passes over the training set (tutorial: 5)."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", help="Images per step (tutorial: 32)."),
    optimizer: str = typer.Option(None, "--optimizer", "-o",
                                  help="adam, adamw, sgd, adagrad, rmsprop, adadelta (Keras defaults)."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default: the optimizer's Keras default)."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="L2 penalty (decoupled for adamw)."),
    momentum: float = typer.Option(None, "--momentum", help="Momentum for sgd and rmsprop (default 0)."),
    nesterov: bool = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum (sgd)."),
    schedule: str = typer.Option(None, "--schedule", help="constant, cosine, onecycle or plateau."),
    augment: bool = typer.Option(None, "--augment/--no-augment", help="Random shifts, rotations, scaling."),
    label_smoothing: float = typer.Option(None, "--label-smoothing", help="Cross-entropy label smoothing."),
    early_stopping: int = typer.Option(None, "--early-stopping", metavar="PATIENCE",
                                       help="Stop after PATIENCE epochs without improvement; keep the best weights."),
    monitor: str = typer.Option(None, "--monitor", help="Metric early stopping watches (default val_loss)."),
    val_split: float = typer.Option(None, "--val-split", help="Validation fraction (tutorial: 0.2; 0 = none)."),
    split_seed: int = typer.Option(None, "--split-seed", help="Seed of the validation split (tutorial: 42)."),
    seed: int = typer.Option(None, "--seed", help="Seed of initialisation, shuffling, augmentation (default 0)."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or mps."),
    bf16: bool = typer.Option(None, "--bf16/--no-bf16", help="bfloat16 autocast (GPU, or CPUs with AVX512-BF16)."),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    threads: int = typer.Option(None, "--threads",
                                help="CPU threads (default: all cores; 1 for the MLP on the torch engine)."),
    engine: str = typer.Option(None, "--engine",
                               help="auto (native where it can: ReLU MLPs and the CNN with Adam on the CPU), "
                                    "native or torch."),
    name: str = typer.Option(None, "--name", help="Run folder name under --runs-dir (default: model-timestamp)."),
    runs_dir: str = typer.Option("runs", "--runs-dir", help="Where run folders go."),
    resume: str = typer.Option(None, "--resume", metavar="RUN", help="Continue an interrupted run folder."),
    nproc: int = typer.Option(None, "--nproc", help="Train data-parallel in N processes (launches torchrun)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Save curves.png in the run folder."),
    tensorboard: str = typer.Option(None, "--tensorboard", metavar="DIR",
                                    help="Write TensorBoard event files to DIR (needs digitlab[tensorboard])."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Train a model (the tutorial's protocol by default), evaluate it on the test set, save a run folder."""
    if nproc is not None and nproc > 1:
        from digitlab.training.distributed import launch  # imports torch: data-parallel runs only

        raise typer.Exit(launch(nproc, sys.argv[1:]))
    data = _start_loading(resume, dataset, data_dir, quiet)  # reads the files while the engine loads
    dist = None
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # under torchrun (--nproc)
        from digitlab.training.distributed import context_from_env  # imports torch

        dist = context_from_env()
    if resume:
        config, run_dir = None, resume
    else:
        config = TrainConfig.from_preset(
            preset, model=model, dataset=dataset, val_split=val_split, split_seed=split_seed, epochs=epochs,
            batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum,
            nesterov=nesterov, schedule=schedule, augment=augment, label_smoothing=label_smoothing,
            early_stopping=early_stopping, monitor=monitor, seed=seed, device=device, bf16=bf16,
            compile=compile, threads=threads, engine=engine)
        options = dict(config.model_options)
        if hidden:
            options["hidden"] = _hidden(hidden)
        if activation:
            options["activation"] = activation
        if dropout is not None:
            options["dropout"] = dropout
        config.model_options = options
        config.validate()
        run_dir = f"{runs_dir}/{_run_name(name)}" if name is not None else None
        if run_dir is None:
            run_dir = default_run_dir(config.model, runs_dir)
    finished = False
    try:
        result = run_training(config, run_dir, data_dir=data_dir, resume=bool(resume), quiet=quiet,
                              plots=plots, dist=dist, data=data, tensorboard=tensorboard)
        finished = True
    finally:
        if dist is not None:
            dist.close(wait=finished)
    if dist is None or dist.rank == 0:
        _report(result, quiet, json_out)


def _report(result, quiet: bool, json_out: bool) -> None:
    m = result.metrics
    if json_out:
        print_json({"run_dir": result.run_dir, **m, "history": result.history.rows})
        return
    out.print(f"Test accuracy: {m['test_accuracy']:.4f}  (test loss {m['test_loss']:.4f})")
    if not quiet:
        per_epoch = ", ".join(f"{t:.2f}" for t in m["epoch_time_s"])
        err.print(f"Run saved to {result.run_dir}  (epochs {m['epochs']}, seconds per epoch: {per_epoch})")
