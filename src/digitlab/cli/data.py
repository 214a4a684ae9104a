"""``digitlab data info | samples | extract | split``: thin wrappers over :mod:`digitlab.data.reports`."""

from __future__ import annotations

from pathlib import Path

import typer

from digitlab.cli.app import JSON, QUIET, data_app, out, print_json
from digitlab.data.registry import get_dataset
from digitlab.data.reports import data_info, extract_pngs, first_samples, split_info
from digitlab.errors import ConfigError

DATASET = typer.Option("mnist", "--dataset", "-d", help="Dataset name: mnist or fashion-mnist.")
DATA_DIR = typer.Option(
    None,
    "--data-dir",
    help="Folder holding <dataset>/ (4 IDX files) or <dataset>.npz (default: $DIGITLAB_DATA_DIR).",
)
SPLIT = typer.Option("train", "--split", help="Which split: train or test.")


def _grid(text: str | None, count: int) -> tuple[int, int]:
    """Parse ``--grid RxC``; without it, at most 5 columns."""
    if text is None:
        cols = min(count, 5)
        return -(-count // cols), cols
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--grid must look like 2x5, got {text!r}") from None
    if rows < 1 or cols < 1 or rows * cols < count:
        room = max(rows, 0) * max(cols, 0)
        raise ConfigError(f"--grid {text} has room for {room} images, --count is {count}")
    return rows, cols


@data_app.command()
def info(
    dataset: str = DATASET,
    data_dir: Path = DATA_DIR,
    quiet: bool = QUIET,
    as_json: bool = JSON,
) -> None:
    """Array names, shapes and dtypes, class counts, pixel range, and where the files were read from."""
    i = data_info(dataset, data_dir, quiet=quiet)
    if as_json:
        print_json(i.to_dict())
        return
    lines = [f"dataset: {i.dataset}", f"source: {i.source.describe()}"]
    lines += [f"  {p}" for p in i.source.paths]
    lines.append(f"arrays: {', '.join(i.arrays)}")
    lines += [f"{name}: {shape} {dtype}" for name, (shape, dtype) in i.arrays.items()]
    lines += [f"pixel range ({split}): {lo}-{hi}" for split, (lo, hi) in i.pixel_range.items()]
    named = list(i.classes) != [str(k) for k in range(len(i.classes))]
    width = max(len("class"), *(len(c) for c in i.classes)) if named else 0
    lines.append("class counts:")
    lines.append(f"  {'label':>5}  {'class':<{width}}  {'train':>6}  {'test':>6}" if named
                 else f"  {'label':>5}  {'train':>6}  {'test':>6}")
    rows = [(str(k), i.classes[k], i.class_counts["train"][k], i.class_counts["test"][k])
            for k in range(len(i.classes))]
    rows.append(("total", "", sum(i.class_counts["train"]), sum(i.class_counts["test"])))
    for label, name, train, test in rows:
        lines.append(f"  {label:>5}  {name:<{width}}  {train:>6}  {test:>6}" if named
                     else f"  {label:>5}  {train:>6}  {test:>6}")
    _say(lines)


def _say(lines: list[str] | str) -> None:
    """Results to stdout, verbatim (no rich markup: paths may hold brackets)."""
    for line in [lines] if isinstance(lines, str) else lines:
        out.print(line, markup=False)


@data_app.command()
def samples(
    output: Path = typer.Option(None, "--output", "-o", help="PNG file (default: <dataset>_samples.png)."),
    count: int = typer.Option(10, "--count", "-n", help="How many images, from the first."),
    split: str = SPLIT,
    grid: str = typer.Option(None, "--grid", help="Rows x columns, e.g. 2x5 (default: up to 5 columns)."),
    lang: str = typer.Option("en", "--lang", help="Language of the figure: en or zh (\"标签: 5\"; needs a CJK font)."),
    dataset: str = DATASET,
    data_dir: Path = DATA_DIR,
    quiet: bool = QUIET,
) -> None:
    """Save the first N images of a split in a grid, each titled with its label."""
    from digitlab.plots import samples_grid, save_figure

    if count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    rows, cols = _grid(grid, count)
    x, y = first_samples(dataset, split, count, data_dir, quiet=quiet)
    fig = samples_grid(x, y, rows, cols, class_names=get_dataset(dataset).classes, lang=lang)
    path = save_figure(fig, output or Path(f"{dataset}_samples.png"))
    _say(f"saved {count} {split} images ({rows}x{cols}) to {path}")


@data_app.command()
def extract(
    output: Path = typer.Option(None, "--output", "-o", help="Folder (default: <dataset>_extracted/)."),
    count: int = typer.Option(20, "--count", "-n", help="How many images, from the first."),
    split: str = SPLIT,
    dataset: str = DATASET,
    data_dir: Path = DATA_DIR,
    quiet: bool = QUIET,
) -> None:
    """Write the first N images as 28x28 grayscale PNGs named <split>_<i>_label_<y>.png."""
    x, y = first_samples(dataset, split, count, data_dir, quiet=quiet)
    folder = output or Path(f"{dataset}_extracted")
    paths = extract_pngs(x, y, folder, prefix=split)
    _say(f"extracted {len(paths)} {split} images to {folder}/ ({paths[0].name} ... {paths[-1].name})")


@data_app.command()
def split(
    val_split: float = typer.Option(0.2, "--val-split", help="Fraction of the training set held out."),
    split_seed: int = typer.Option(42, "--split-seed", help="Seed of the split (sklearn's random_state)."),
    dataset: str = DATASET,
    data_dir: Path = DATA_DIR,
    quiet: bool = QUIET,
    as_json: bool = JSON,
) -> None:
    """Shapes after preprocessing: pixels scaled to float32 [0, 1], a validation part held out."""
    s = split_info(dataset, data_dir, val_split, split_seed, quiet=quiet)
    if as_json:
        print_json(s.to_dict())
        return
    _say(f"{s.dataset}: validation = {s.val_fraction:g} of train, split seed {s.seed}")
    width = max(len(p) for p in s.parts)
    for part, d in s.parts.items():
        _say(
            f"{part + ':':<{width + 1}} images {tuple(d['x_shape'])} {d['x_dtype']} "
            f"range [{d['min']:g}, {d['max']:g}], labels {tuple(d['y_shape'])} {d['y_dtype']}"
        )
