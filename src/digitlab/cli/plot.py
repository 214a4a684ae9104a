"""``digitlab plot weights``, ``plot curves`` and ``plot compare``: figures drawn from a run or experiment folder."""

from __future__ import annotations

from pathlib import Path

import typer

from digitlab.cli.app import QUIET, out, plot_app
from digitlab.errors import RunError
from digitlab.runs import CURVES, HISTORY_JSON, read_config, read_history, read_json
from digitlab.training.compare import COMPARE_JSON, COMPARE_PNG

RUN = typer.Argument(..., metavar="RUN", help="A run folder (made by 'digitlab train').")


@plot_app.command("weights")
def weights(
    run: Path = RUN,
    output: Path = typer.Option(None, "--output", "-o", help="PNG to write (default: RUN/weights.png)."),
    lang: str = typer.Option("en", "--lang", help="Language of the figure: en or zh (needs a CJK font)."),
    quiet: bool = QUIET,
) -> None:
    """The first layer's weights: one 28x28 tile per MLP unit, or one tile per CNN filter."""
    from digitlab.models import load_model
    from digitlab.plots import first_layer_weights, save_figure

    model, _ = load_model(run)
    path = save_figure(first_layer_weights(model, lang=lang), output or run / "weights.png")
    _report(path, quiet)


@plot_app.command("curves")
def curves(
    run: Path = RUN,
    output: Path = typer.Option(None, "--output", "-o", help="PNG to write (default: RUN/curves.png)."),
    lang: str = typer.Option("en", "--lang", help="Language of the figure: en or zh (needs a CJK font)."),
    quiet: bool = QUIET,
) -> None:
    """Loss and accuracy per epoch, training vs validation, from the run's history.json."""
    from digitlab.plots import save_figure, training_curves
    read_config(run)  # a clear error when RUN is not a run folder
    history = read_history(run)
    if not isinstance(history, list) or not any(isinstance(r, dict) for r in history):
        raise RunError(f"{run / HISTORY_JSON}: no training history to plot (missing or empty)")
    path = save_figure(training_curves(history, lang=lang), output or run / CURVES)
    _report(path, quiet)


@plot_app.command("compare")
def compare(
    folder: Path = typer.Argument(..., metavar="DIR", help="An experiment folder (made by 'digitlab compare')."),
    output: Path = typer.Option(None, "--output", "-o", help="PNG to write (default: DIR/compare.png)."),
    lang: str = typer.Option("en", "--lang", help="Language of the figure: en or zh (needs a CJK font)."),
    quiet: bool = QUIET,
) -> None:
    """Validation loss and accuracy of every variant of a comparison, from its compare.json."""
    from digitlab.plots import compare_figure, save_figure
    report = read_json(folder / COMPARE_JSON)
    path = save_figure(compare_figure(report["variants"], lang=lang), output or folder / COMPARE_PNG)
    _report(path, quiet)


def _report(path: Path, quiet: bool) -> None:
    # The written file is the command's result: its path goes to stdout (scripts can capture it).
    if not quiet:
        out.print(f"saved {path}", markup=False)
