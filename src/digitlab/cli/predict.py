"""``digitlab predict``: the first test images (the tutorial's step), or your own pictures."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from digitlab.cli.app import JSON, QUIET, app, csv_cell, err, out, print_json, visible
from digitlab.cli.evaluate import default_out_dir
from digitlab.errors import ConfigError, ImageError
from digitlab.evaluate import load_split
from digitlab.inference.predictor import load_predictor, predict_arrays, predict_files

PREDICTIONS_PNG = "predictions.png"
CSV_FIELDS = ("path", "label", "name", "probability", "top2_label", "top2_probability",
              "top3_label", "top3_probability", "is_digit", "digit_score", "error")


@app.command()
def predict(
    model_path: Path = typer.Argument(..., metavar="RUN_OR_ONNX",
                                      help="A run folder or an exported .onnx file."),
    inputs: list[Path] = typer.Argument(None, metavar="IMAGE_OR_FOLDER",
                                        help="Pictures of digits, or folders of them."),
    count: int = typer.Option(10, "--count", "-n", min=1,
                              help="Without inputs: how many test images to print."),
    dataset: str = typer.Option(None, "--dataset", help="Without inputs: dataset (default: the run's)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder holding the dataset files."),
    out_dir: Path = typer.Option(None, "--out", help="Without inputs: where predictions.png goes "
                                                     "(default: the run folder)."),
    save_inputs: Path = typer.Option(None, "--save-inputs",
                                     help="Save the 28x28 images the model saw as PNGs in this folder."),
    as_json: bool = JSON,
    as_csv: bool = typer.Option(False, "--csv", help="Print the predictions as CSV on stdout."),
    no_reject: bool = typer.Option(False, "--no-reject",
                                   help="Give a label even to pictures that hold no digit ('not a digit' otherwise)."),
    single: bool = typer.Option(False, "--single", help="Read each picture as one digit (not a number)."),
    quiet: bool = QUIET,
) -> None:
    """Predict digits.

    Without pictures: print 'sample i: predicted = p, true = t' for the first test images and save
    the 5x3 prediction grid (predictions.png). With pictures: what is written (one digit or a
    number of up to 12 digits on one line), its probability and the top 3 for a single digit;
    --single reads each picture as one digit. A picture that holds no digit at all (clothing,
    letters, scribbles) is "not a digit" (an empty label, is_digit false), unless --no-reject.
    """
    if as_json and as_csv:
        raise ConfigError("choose one of --json and --csv")
    predictor = load_predictor(model_path)
    if inputs:
        _predict_files(predictor, inputs, save_inputs, as_json, as_csv, quiet, reject=not no_reject, single=single)
    else:
        if save_inputs is not None:
            raise ConfigError("--save-inputs needs pictures to predict")
        _predict_test_set(predictor, model_path, count, dataset, data_dir, out_dir, as_json, as_csv, quiet)


def _predict_test_set(predictor, model_path, count, dataset, data_dir, out_dir, as_json, as_csv, quiet):
    from digitlab.plots import prediction_grid, save_figure

    x, y, _ = load_split(predictor.config, "test", dataset, data_dir, quiet=quiet)
    rows, cols = 5, 3
    n = min(max(count, rows * cols), len(x))
    labels, probs = predict_arrays(predictor, x[:n])
    names = predictor.labels
    figure = save_figure(prediction_grid(x, probs, y, rows, cols, class_names=names),
                         (out_dir or default_out_dir(model_path)) / PREDICTIONS_PNG)
    shown = range(min(count, n))
    if as_json:
        print_json({"samples": [{"index": i, "predicted": int(labels[i]), "true": int(y[i]),
                                 "predicted_name": names[labels[i]], "true_name": names[y[i]],
                                 "probability": float(probs[i, labels[i]])} for i in shown],
                    "figure": str(figure)})
    elif as_csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["index", "predicted", "true", "probability"])
        w.writerows([i, int(labels[i]), int(y[i]), f"{probs[i, labels[i]]:.6f}"] for i in shown)
        sys.stdout.write(buf.getvalue())
    else:
        for i in shown:
            out.print(f"sample {i}: predicted = {names[labels[i]]}, true = {names[y[i]]}", markup=False)
    if not quiet:
        err.print(f"saved {figure}", soft_wrap=True, markup=False)


def _predict_files(predictor, inputs, save_inputs, as_json, as_csv, quiet, reject=True, single=True):
    results = predict_files(predictor, inputs, save_inputs=save_inputs, reject=reject, single=single)
    failed = [r for r in results if not r.ok]
    if len(failed) == len(results):  # nothing to show: only the errors
        if len(failed) == 1:
            raise ImageError(failed[0].error)
        _print_errors(failed)
        raise ImageError(f"none of the {len(results)} images could be read (listed above)")
    if as_json:
        print_json([r.to_dict() for r in results])
    elif as_csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for r in results:
            top = [(c, f"{p:.6f}") for c, _, p in r.top[1:3]]
            top += [("", "")] * (2 - len(top))
            label = r.number if r.number is not None else r.label  # the string read: "2026"
            w.writerow([csv_cell(str(r.path)), "" if label is None else label, csv_cell(r.name or ""),
                        "" if r.probability is None else f"{r.probability:.6f}",
                        *top[0], *top[1], "" if r.is_digit is None else str(r.is_digit).lower(),
                        "" if r.digit_score is None else f"{r.digit_score:.4f}", csv_cell(r.error or "")])
        sys.stdout.write(buf.getvalue())
    else:
        table = Table()
        table.add_column("file", overflow="fold")
        table.add_column("label", justify="right", no_wrap=True)
        table.add_column("probability", justify="right", no_wrap=True)
        table.add_column("top 3", no_wrap=True)
        for r in results:
            if r.ok and len(r.digits) > 1:  # a number: the digits' own probabilities
                each = " ".join(f"{d.label or '?'} {100 * d.confidence:.0f}%" for d in r.digits)
                table.add_row(Text(visible(r.path)), Text(r.number or "-"), f"{100 * r.probability:.1f}%", Text(each))
            elif r.ok and r.label is None:
                top3 = ", ".join(f"{n} {100 * p:.1f}%" for _, n, p in r.top)
                table.add_row(Text(visible(r.path)), Text("not a digit", style="yellow"), "", Text(top3, style="dim"))
            elif r.ok:
                top3 = ", ".join(f"{n} {100 * p:.1f}%" for _, n, p in r.top)
                table.add_row(Text(visible(r.path)), Text(visible(r.name)), f"{100 * r.probability:.1f}%",
                              Text(visible(top3)))
            else:
                table.add_row(Text(visible(r.path)), Text("-", style="red"), "", Text("unreadable", style="red"))
        out.print(table)
    if save_inputs is not None and not quiet:
        err.print(f"saved the 28x28 inputs in {save_inputs}", soft_wrap=True, markup=False)
    if failed:
        _print_errors(failed)
        raise ImageError(f"{len(failed)} of {len(results)} images could not be read (listed above); "
                         "the others were predicted")


def _print_errors(failed) -> None:
    for r in failed:
        err.print(Text(visible(r.error), style="red"), soft_wrap=True)
