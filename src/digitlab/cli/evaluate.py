"""``digitlab evaluate``: loss, accuracy, per-class metrics, confusion matrix and figures."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from digitlab.cli.app import JSON, QUIET, app, err, out, print_json
from digitlab.errors import RunError
from digitlab.evaluate import evaluate_predictor, load_split, save_calibration, save_figures
from digitlab.inference.predictor import load_predictor
from digitlab.runs import METRICS


def default_out_dir(model_path: Path) -> Path:
    """Where figures go by default: the run folder, or the folder holding an ``.onnx`` file."""
    return model_path.parent if model_path.suffix.lower() == ".onnx" else model_path


@app.command()
def evaluate(
    model_path: Path = typer.Argument(..., metavar="RUN_OR_ONNX",
                                      help="A run folder or an exported .onnx file."),
    split: str = typer.Option("test", "--split", help="test: the test set; val: the run's validation split."),
    dataset: str = typer.Option(None, "--dataset", help="Dataset to evaluate on (default: the run's)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder holding the dataset files."),
    out_dir: Path = typer.Option(None, "--out", help="Where to save the figures (default: the run folder)."),
    top: int = typer.Option(16, "--top", min=0, help="How many most confidently wrong images to show."),
    lang: str = typer.Option("en", "--lang", help="Language of the figures: en or zh (needs a CJK font)."),
    calibrate: bool = typer.Option(
        False, "--calibrate",
        help="Also find the confidence under which answers are shown as 'not sure' (below it, at least "
             "1 answer in 4 was wrong on this split) and save it in the run's metrics.json for the server."),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Measure a trained model: loss, accuracy, per-class precision/recall/F1 and the confusion matrix.

    Saves confusion.png and misclassified.png (the most confidently wrong images).
    """
    if calibrate and not (model_path / METRICS).is_file():
        raise RunError(f"{model_path}: --calibrate saves into a run folder's {METRICS}; this is not one")
    predictor = load_predictor(model_path)
    x, y, dataset_name = load_split(predictor.config, split, dataset, data_dir, quiet=quiet)
    if not quiet:
        err.print(f"evaluating {predictor.name} on {dataset_name} {split} ({len(x):,} images)",
                  soft_wrap=True, markup=False)
    result = evaluate_predictor(predictor, x, y, predictor.labels, top=top)
    result.extra = {"model": str(model_path), "dataset": dataset_name, "split": split}
    figures = save_figures(result, x, out_dir or default_out_dir(model_path), lang=lang)
    unsure = save_calibration(model_path, result, y, dataset=dataset_name, split=split) if calibrate else None

    if as_json:
        extra = {"unsure": unsure} if unsure is not None else {}
        print_json({**result.to_dict(), **extra, "figures": {k: str(v) for k, v in figures.items()}})
        return
    what = "Test" if split == "test" else "Validation"
    out.print(f"{what} loss: {result.loss:.4f}")
    out.print(f"{what} accuracy: {result.accuracy:.4f}  ({result.n - result.errors:,} of {result.n:,} right)")
    out.print(per_class_table(result))
    out.print(confusion_table(result))
    if unsure is not None:
        if unsure["answers_below"]:
            out.print(f"Not sure below {unsure['unsure_below']:.1%}: {unsure['answers_below']:,} answers there, "
                      f"{unsure['accuracy_below']:.1%} of them right ({unsure['accuracy_above']:.2%} above)")
        else:
            out.print("Not sure below 0%: no band of answers was wrong 1 time in 4")
    if not quiet:
        for path in figures.values():
            err.print(f"saved {path}", soft_wrap=True, markup=False)
        if unsure is not None:
            err.print(f"saved unsure_below in {model_path / METRICS}", soft_wrap=True, markup=False)


def per_class_table(result) -> Table:
    table = Table(title="Per-class metrics", title_justify="left")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for i, name in enumerate(result.class_names):
        table.add_row(Text(name), f"{result.precision[i]:.4f}", f"{result.recall[i]:.4f}",
                      f"{result.f1[i]:.4f}", f"{int(result.support[i]):,}")
    table.add_section()
    for label, avg in (("macro avg", result.macro()), ("weighted avg", result.weighted())):
        table.add_row(label, f"{avg['precision']:.4f}", f"{avg['recall']:.4f}", f"{avg['f1']:.4f}",
                      f"{result.n:,}")
    return table


def confusion_table(result) -> Table:
    table = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("true \\ pred")
    k = len(result.class_names)
    for j in range(k):
        table.add_column(str(j), justify="right")
    for i, name in enumerate(result.class_names):
        cells = [Text(str(v), style="bold green" if i == j else ("red" if v else "dim"))
                 for j, v in enumerate(result.confusion[i].tolist())]
        table.add_row(Text(name if name == str(i) else f"{i} {name}"), *cells)
    return table
