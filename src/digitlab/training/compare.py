"""Side-by-side experiments: train variants of one protocol, several seeds each, and compare them.

Every (variant, seed) pair is an ordinary run folder made by :func:`digitlab.training.job.train`, so
``evaluate``, ``predict`` and ``serve`` work on each. The runs go to parallel worker processes with the
CPU cores split between them (``cpu_cores() // jobs`` threads each); the parent follows each run's
``history.json`` (written after every epoch) to show progress, then writes ``compare.json``,
``compare.csv`` and ``compare.png`` in the experiment folder.

    import digitlab as dl
    result = dl.compare(optimizer=["adam", "sgd"], seeds=2, epochs=5, out_dir="runs/optimizers")
    for v in result.variants:
        print(v.name, v.test_accuracy_mean, v.test_accuracy_std)
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitlab import runs
from digitlab.config import TrainConfig, cpu_cores, default_run_dir
from digitlab.data.formats import atomic_write_bytes
from digitlab.errors import ConfigError, DigitlabError, Interrupted, RunError
from digitlab.training.job import train

COMPARE_JSON = "compare.json"
COMPARE_CSV = "compare.csv"
COMPARE_PNG = "compare.png"
LOG = "train.log"

# The options a comparison may vary, in the order variant names list them.
AXES = ("model", "hidden", "activation", "optimizer", "lr", "batch_size")


def _label(axis: str, value: Any) -> str:
    if axis == "hidden":
        return "h" + "-".join(str(h) for h in value)
    if axis == "batch_size":
        return f"b{value}"
    if axis == "lr":
        return f"lr{value:g}"
    return str(value)


def _display(axis: str, value: Any) -> str:
    if axis == "hidden":
        return ",".join(str(h) for h in value)
    if axis == "lr":
        return f"{value:g}"
    return str(value)


@dataclass
class Variant:
    """One point of the comparison: the options it sets and, once run, its seeds' results."""

    name: str
    options: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)

    # filled in by summarise()
    test_accuracy_mean: float | None = None
    test_accuracy_std: float | None = None
    test_accuracy_min: float | None = None
    test_accuracy_max: float | None = None
    test_loss_mean: float | None = None
    best_epoch: int | None = None
    best_val_loss: float | None = None
    best_val_accuracy: float | None = None
    train_time_s: float | None = None
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": self.options,
                "test_accuracy_mean": self.test_accuracy_mean, "test_accuracy_std": self.test_accuracy_std,
                "test_accuracy_min": self.test_accuracy_min, "test_accuracy_max": self.test_accuracy_max,
                "test_loss_mean": self.test_loss_mean, "best_epoch": self.best_epoch,
                "best_val_loss": self.best_val_loss, "best_val_accuracy": self.best_val_accuracy,
                "train_time_s": self.train_time_s, "curves": self.curves, "runs": self.runs}


@dataclass
class CompareResult:
    out_dir: str
    epochs: int
    seeds: list[int]
    axes: dict[str, list[Any]]
    variants: list[Variant]
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": self.out_dir, "epochs": self.epochs, "seeds": self.seeds,
                "axes": {k: [_display(k, v) for v in vs] for k, vs in self.axes.items()},
                "spread": "test_accuracy_std is the sample standard deviation over seeds; curves hold the "
                          "mean, min and max over seeds per epoch",
                "best_epoch": "the epoch with the lowest mean validation loss",
                "variants": [v.to_dict() for v in self.variants], "files": self.files}


def variant_grid(axes: dict[str, Sequence[Any]]) -> list[Variant]:
    """Every combination of the varied options (the cartesian product, in AXES order)."""
    names = [a for a in AXES if axes.get(a)]
    unknown = set(axes) - set(AXES)
    if unknown:
        raise ConfigError(f"cannot vary {', '.join(sorted(unknown))}; compare varies {', '.join(AXES)}")
    if not names:
        return [Variant("base", {})]
    variants = []
    for combo in itertools.product(*(axes[a] for a in names)):
        options = dict(zip(names, combo, strict=True))
        label = "_".join(_label(a, v) for a, v in options.items())
        variants.append(Variant(label, options))
    seen = [v.name for v in variants]
    if len(set(seen)) != len(seen):
        raise ConfigError(f"the variants repeat themselves: {', '.join(seen)}")
    return variants


def variant_config(base: dict[str, Any], options: dict[str, Any], seed: int, epochs: int | None,
                   threads: int) -> TrainConfig:
    """The TrainConfig of one run: the shared options, the variant's options, its seed and thread count."""
    preset = base.get("preset") or "tutorial"
    fixed = {k: v for k, v in base.items() if k not in ("preset", "model_options") and v is not None}
    fit_over = {k: v for k, v in options.items() if k in ("optimizer", "lr", "batch_size", "model")}
    config = TrainConfig.from_preset(preset, **{**fixed, **fit_over, "epochs": epochs, "seed": seed,
                                                "threads": threads})
    model_options = dict(base.get("model_options") or {})
    for key in ("hidden", "activation"):
        if key in options:
            if config.model != "mlp":
                raise ConfigError(f"--{key} varies the MLP, but this variant's model is {config.model}")
            model_options[key] = list(options[key]) if key == "hidden" else options[key]
    if config.model != "mlp":
        model_options = {k: v for k, v in model_options.items() if k not in ("hidden", "activation")}
    config.model_options = model_options
    config.validate()
    return config


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _std(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def summarise(variant: Variant) -> None:
    """Aggregate a variant's finished runs: test accuracy mean/std/min/max, curves, best epoch."""
    done = [r for r in variant.runs if r.get("test_accuracy") is not None]
    if not done:
        return
    accs = [r["test_accuracy"] for r in done]
    variant.test_accuracy_mean, variant.test_accuracy_std = _mean(accs), _std(accs)
    variant.test_accuracy_min, variant.test_accuracy_max = min(accs), max(accs)
    variant.test_loss_mean = _mean([r["test_loss"] for r in done])
    variant.train_time_s = _mean([r["train_time_s"] for r in done])
    n = min(len(r["history"]) for r in done)
    curves: dict[str, dict[str, list[float]]] = {}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        cols = [[row.get(key) for row in r["history"][:n]] for r in done]
        if any(v is None for c in cols for v in c):
            continue
        per_epoch = list(zip(*cols, strict=True))
        curves[key] = {"mean": [_mean(e) for e in per_epoch], "min": [min(e) for e in per_epoch],
                       "max": [max(e) for e in per_epoch]}
    variant.curves = curves
    if "val_loss" in curves:
        means = curves["val_loss"]["mean"]
        i = min(range(len(means)), key=means.__getitem__)
        variant.best_epoch = i + 1
        variant.best_val_loss = means[i]
        variant.best_val_accuracy = curves["val_accuracy"]["mean"][i]


def _run_record(run_dir: Path, seed: int) -> dict[str, Any]:
    metrics = runs.read_json(run_dir / runs.METRICS)
    history = runs.read_json(run_dir / runs.HISTORY_JSON)
    val_losses = [r.get("val_loss") for r in history]
    best = (min(range(len(val_losses)), key=lambda i: val_losses[i]) + 1) if val_losses and None not in val_losses \
        else None
    return {"run_dir": str(run_dir), "seed": seed, "test_accuracy": metrics["test_accuracy"],
            "test_loss": metrics["test_loss"], "val_accuracy": metrics.get("val_accuracy"),
            "val_loss": metrics.get("val_loss"), "best_epoch": best, "epochs": metrics.get("epochs"),
            "train_time_s": metrics.get("train_time_s"), "engine": metrics.get("engine"),
            "threads": metrics.get("threads"), "history": history}


@dataclass
class _Job:
    variant: Variant
    seed: int
    run_dir: Path
    config: TrainConfig
    tensorboard: str | None
    proc: subprocess.Popen | None = None
    log: Any = None
    started: float | None = None
    finished: float | None = None
    status: str = "waiting"  # waiting, running, done, failed
    epoch: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _worker_command(job: _Job, data_dir: str | None) -> list[str]:
    spec = {"config": job.config.to_json(), "run_dir": str(job.run_dir), "data_dir": data_dir,
            "tensorboard": job.tensorboard}
    return [sys.executable, "-m", "digitlab.training.compare", json.dumps(spec)]


def _poll_history(job: _Job) -> None:
    try:
        rows = json.loads((job.run_dir / runs.HISTORY_JSON).read_text())
    except (OSError, ValueError):
        return
    if isinstance(rows, list) and rows:
        job.epoch, job.last = len(rows), rows[-1]


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


ProgressFn = Callable[[list[dict[str, Any]]], None]


def _states(jobs: list[_Job], epochs: int) -> list[dict[str, Any]]:
    now = time.perf_counter()
    return [{"variant": j.variant.name, "seed": j.seed, "status": j.status, "epoch": j.epoch, "epochs": epochs,
             "val_accuracy": j.last.get("val_accuracy"), "val_loss": j.last.get("val_loss"),
             "accuracy": j.last.get("accuracy"),
             "elapsed_s": ((j.finished or now) - j.started) if j.started else 0.0, "run_dir": str(j.run_dir)}
            for j in jobs]


def _on_sigterm() -> Any:
    """SIGTERM stops the comparison like Ctrl-C (its runs are ended too); only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def compare(
    *,
    optimizer: Sequence[str] | None = None,
    activation: Sequence[str] | None = None,
    hidden: Sequence[Sequence[int]] | None = None,
    batch_size: Sequence[int] | None = None,
    lr: Sequence[float] | None = None,
    model: Sequence[str] | None = None,
    epochs: int | None = None,
    seeds: int = 1,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    base: dict[str, Any] | None = None,
    jobs: int | None = None,
    data_dir: str | os.PathLike | None = None,
    tensorboard: str | os.PathLike | None = None,
    lang: str = "en",
    figure: bool = True,
    progress: ProgressFn | None = None,
    poll_s: float = 0.5,
) -> CompareResult:
    """Train every variant (the cartesian product of the given option lists) with ``seeds`` seeds each
    (``seed``, ``seed + 1``, ...) and compare them.

    ``base`` holds the options every run shares (``preset``, ``dataset``, ``val_split``, ``engine``,
    ``model_options``, any FitOptions field). ``jobs`` runs go at once (default: one per core, at most
    one per run); each gets ``cpu_cores() // jobs`` threads. ``progress`` is called with every run's
    state about twice a second. Writes ``compare.json``, ``compare.csv`` and ``compare.png`` (unless
    ``figure=False``) in ``out_dir``; ``tensorboard`` gets one sub-folder per run."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    axes: dict[str, list[Any]] = {}
    for name, values in (("model", model), ("hidden", hidden), ("activation", activation),
                         ("optimizer", optimizer), ("lr", lr), ("batch_size", batch_size)):
        if values:
            axes[name] = [tuple(int(h) for h in v) for v in values] if name == "hidden" else list(values)
    variants = variant_grid(axes)
    base = dict(base or {})
    if out_dir is None:
        out_dir = default_run_dir("compare")
    out = Path(out_dir)
    if (out / COMPARE_JSON).exists():
        raise ConfigError(f"{out} already holds a comparison; pick another --out")
    seed_list = [seed + k for k in range(seeds)]
    n_runs = len(variants) * len(seed_list)
    cores = cpu_cores()
    jobs = max(1, min(jobs or cores, n_runs))
    threads = base.pop("threads", None) or max(1, cores // jobs)


    planned: list[_Job] = []
    for v in variants:
        for s in seed_list:
            config = variant_config(base, v.options, s, epochs, threads)
            run_dir = out / f"{v.name}-seed{s}"
            if runs.is_run(run_dir):
                raise ConfigError(f"{run_dir} already holds a run; pick another --out")
            tb = str(Path(tensorboard) / run_dir.name) if tensorboard is not None else None
            planned.append(_Job(v, s, run_dir, config, tb))
    epochs_n = planned[0].config.fit.epochs
    if figure:
        from digitlab.plots import font_for  # fail before training when --lang zh has no font

        font_for(lang)

    out.mkdir(parents=True, exist_ok=True)
    dd = str(data_dir) if data_dir is not None else None
    waiting = list(planned)
    running: list[_Job] = []
    previous = _on_sigterm()
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                job = waiting.pop(0)
                job.run_dir.mkdir(parents=True, exist_ok=True)
                job.log = open(job.run_dir / LOG, "wb")  # noqa: SIM115  (closed when the run ends)
                job.proc = subprocess.Popen(_worker_command(job, dd), stdin=subprocess.DEVNULL,
                                            stdout=job.log, stderr=subprocess.STDOUT)
                job.started, job.status = time.perf_counter(), "running"
                running.append(job)
            time.sleep(poll_s)
            for job in list(running):
                _poll_history(job)
                rc = job.proc.poll()
                if rc is None:
                    continue
                job.finished = time.perf_counter()
                job.log.close()
                running.remove(job)
                if rc == 0:
                    job.status = "done"
                    job.variant.runs.append(_run_record(job.run_dir, job.seed))
                else:
                    job.status, job.error = "failed", _tail(job.run_dir / LOG)
            if progress is not None:
                progress(_states(planned, epochs_n))
    except KeyboardInterrupt:
        for job in running:
            job.proc.terminate()
        for job in running:
            try:
                job.proc.wait(10)
            except subprocess.TimeoutExpired:
                job.proc.kill()
            job.log.close()
        raise Interrupted(f"comparison interrupted; finished runs are in {out}") from None
    finally:
        _restore_sigterm(previous)

    failed = [j for j in planned if j.status == "failed"]
    if failed:
        j = failed[0]
        raise RunError(f"{len(failed)} of {n_runs} runs failed; {j.run_dir}: {j.error or 'no output'}"
                       f" (see {j.run_dir / LOG})")
    for v in variants:
        v.runs.sort(key=lambda r: r["seed"])
        summarise(v)
    files = {"json": str(out / COMPARE_JSON), "csv": str(out / COMPARE_CSV)}
    if figure:
        files["figure"] = str(out / COMPARE_PNG)
    result = CompareResult(str(out), epochs_n, seed_list, axes, variants, files)
    write_outputs(result, lang=lang, figure=figure)
    return result


def write_outputs(result: CompareResult, lang: str = "en", figure: bool = True) -> None:
    out = Path(result.out_dir)
    runs.write_json(out / COMPARE_JSON, result.to_dict())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    axis_names = list(result.axes)
    w.writerow(["variant", *axis_names, "seeds", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_min",
                "test_accuracy_max", "test_loss_mean", "best_epoch", "best_val_loss", "best_val_accuracy",
                "train_time_s"])
    for v in result.variants:
        w.writerow([v.name, *(_display(a, v.options[a]) for a in axis_names), len(v.runs), v.test_accuracy_mean,
                    v.test_accuracy_std, v.test_accuracy_min, v.test_accuracy_max, v.test_loss_mean, v.best_epoch,
                    v.best_val_loss, v.best_val_accuracy, v.train_time_s])
    atomic_write_bytes(out / COMPARE_CSV, buf.getvalue().encode())
    if figure:
        from digitlab.plots import compare_figure, save_figure

        save_figure(compare_figure([v.to_dict() for v in result.variants], lang=lang), out / COMPARE_PNG)


def _worker(spec: dict[str, Any]) -> int:
    config = TrainConfig.from_json(spec["config"])
    kwargs: dict[str, Any] = {}
    if spec.get("tensorboard"):
        kwargs["tensorboard"] = spec["tensorboard"]
    try:
        train(config, spec["run_dir"], data_dir=spec.get("data_dir"), quiet=True, plots=True, **kwargs)
    except DigitlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(_worker(json.loads(sys.argv[1])))
