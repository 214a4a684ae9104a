"""``digitlab compare``: train variants of one protocol side by side and show the difference."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.live import Live
from rich.table import Table

from digitlab.cli.app import JSON, QUIET, app, err, out, print_json
from digitlab.errors import ConfigError
from digitlab.training.compare import compare as run_compare


def _split(value: str | None, kind: type, what: str) -> list | None:
    if not value:
        return None
    try:
        return [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} takes comma-separated values, got {value!r}") from None


def _hidden_variants(value: str | None) -> list[list[int]] | None:
    """``"32 128,64 512,256"``: variants separated by spaces, each a comma-separated list of sizes."""
    if not value:
        return None
    try:
        return [[int(h) for h in v.split(",") if h] for v in value.split()]
    except ValueError:
        raise ConfigError(f"--hidden takes space-separated variants such as \"32 128,64 512,256\", got {value!r}") \
            from None


class _Progress:
    """Every run's line: a live table on a terminal, one line per finished epoch otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.live = None
        self.seen: dict[tuple[str, int], tuple[str, int]] = {}
        if not quiet and err.is_terminal:
            self.live = Live(console=err, refresh_per_second=4, transient=False)
            self.live.start()

    def __call__(self, states: list[dict]) -> None:
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(self._table(states))
            return
        for s in states:
            key = (s["variant"], s["seed"])
            now = (s["status"], s["epoch"])
            if self.seen.get(key) == now or s["status"] == "waiting":
                continue
            self.seen[key] = now
            acc = f" val_accuracy {s['val_accuracy']:.4f}" if s.get("val_accuracy") is not None else ""
            err.print(f"{s['variant']} seed {s['seed']}: {s['status']}, epoch {s['epoch']}/{s['epochs']}{acc} "
                      f"({s['elapsed_s']:.0f}s)", markup=False)

    @staticmethod
    def _table(states: list[dict]) -> Table:
        t = Table(title="digitlab compare", title_justify="left")
        for col in ("variant", "seed", "status", "epoch", "val_accuracy", "val_loss", "time"):
            t.add_column(col, justify="left" if col in ("variant", "status") else "right")
        for s in states:
            bar_n = int(10 * s["epoch"] / max(1, s["epochs"]))
            t.add_row(s["variant"], str(s["seed"]), s["status"], f"{'━' * bar_n}{' ' * (10 - bar_n)} "
                      f"{s['epoch']}/{s['epochs']}",
                      f"{s['val_accuracy']:.4f}" if s.get("val_accuracy") is not None else "",
                      f"{s['val_loss']:.4f}" if s.get("val_loss") is not None else "", f"{s['elapsed_s']:.0f}s")
        return t

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


@app.command()
def compare(
    optimizer: str = typer.Option(None, "--optimizer", "-o", help="Variants, e.g. adam,sgd,adagrad,rmsprop,adadelta."),
    activation: str = typer.Option(None, "--activation", help="Variants, e.g. relu,sigmoid,tanh (MLP)."),
    hidden: str = typer.Option(None, "--hidden",
                               help='MLP hidden sizes, variants separated by spaces: "32 128,64 512,256".'),
    batch_size: str = typer.Option(None, "--batch-size", "-b", help="Variants, e.g. 8,32,256."),
    lr: str = typer.Option(None, "--lr", help="Learning-rate variants, e.g. 0.001,0.01,1.0."),
    model: str = typer.Option(None, "--model", "-m", help="Variants, e.g. mlp,cnn."),
    epochs: int = typer.Option(None, "--epochs", "-e", help="Epochs of every run (the best one is marked)."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds per variant (mean and spread over them)."),
    seed: int = typer.Option(0, "--seed", help="First seed; the others follow it."),
    preset: str = typer.Option("tutorial", "--preset", help="Protocol every variant starts from."),
    dataset: str = typer.Option(None, "--dataset", help="mnist or fashion-mnist."),
    val_split: float = typer.Option(None, "--val-split", help="Validation fraction (tutorial: 0.2)."),
    engine: str = typer.Option(None, "--engine", help="auto, native or torch for every run."),
    out_dir: Path = typer.Option(None, "--out", help="Experiment folder (default: runs/compare-<timestamp>)."),
    jobs: int = typer.Option(None, "--jobs", "-j", help="Runs at once (default: one per CPU core)."),
    data_dir: str = typer.Option(None, "--data-dir", help="Folder holding <dataset>/ (or $DIGITLAB_DATA_DIR)."),
    tensorboard: Path = typer.Option(None, "--tensorboard", help="TensorBoard log folder (one sub-folder per run)."),
    lang: str = typer.Option("en", "--lang", help="Language of the figure: en or zh."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Train variants of one protocol (several seeds each) side by side; print a table and save
    compare.json, compare.csv and compare.png. Every run is an ordinary run folder."""
    base = {"preset": preset, "dataset": dataset, "val_split": val_split, "engine": engine}
    progress = _Progress(quiet or json_out)
    try:
        result = run_compare(
            optimizer=_split(optimizer, str, "--optimizer"), activation=_split(activation, str, "--activation"),
            hidden=_hidden_variants(hidden), batch_size=_split(batch_size, int, "--batch-size"),
            lr=_split(lr, float, "--lr"), model=_split(model, str, "--model"), epochs=epochs, seeds=seeds,
            seed=seed, out_dir=out_dir, base=base, jobs=jobs, data_dir=data_dir, tensorboard=tensorboard,
            lang=lang, progress=progress)
    finally:
        progress.stop()
    if json_out:
        print_json(result.to_dict())
        return
    out.print(summary_table(result), width=None if out.is_terminal else 120)
    if not quiet:
        err.print(f"Saved {', '.join(result.files.values())}; run folders in {result.out_dir}", markup=False)


def summary_table(result) -> Table:
    seeds = len(result.seeds)
    t = Table(title=f"{result.epochs} epochs, {seeds} seed{'s' if seeds != 1 else ''} per variant",
              title_justify="left")
    t.add_column("variant")
    t.add_column("test accuracy", justify="right")
    t.add_column("± (std)" if seeds > 1 else "±", justify="right")
    t.add_column("min–max", justify="right")
    t.add_column("best epoch", justify="right")
    t.add_column("val acc there", justify="right")
    t.add_column("time", justify="right")
    for v in result.variants:
        t.add_row(v.name, f"{v.test_accuracy_mean:.4f}", f"{v.test_accuracy_std:.4f}" if seeds > 1 else "",
                  f"{v.test_accuracy_min:.4f}–{v.test_accuracy_max:.4f}" if seeds > 1 else "",
                  str(v.best_epoch) if v.best_epoch is not None else "",
                  f"{v.best_val_accuracy:.4f}" if v.best_val_accuracy is not None else "",
                  f"{v.train_time_s:.1f}s")
    return t
