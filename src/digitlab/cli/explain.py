"""``digitlab explain RUN PICTURE``: a figure of the pixels that pushed the answer up or down."""

from __future__ import annotations

from pathlib import Path

import typer

from digitlab.cli.app import JSON, QUIET, app, out, print_json
from digitlab.inference.explain import explain as run_explain


@app.command()
def explain(
    model: Path = typer.Argument(..., metavar="RUN", help="A run folder or an exported .onnx file."),
    picture: Path = typer.Argument(..., metavar="PICTURE", help="A picture of one digit."),
    output: Path = typer.Option(None, "--output", "-o", help="PNG to write (default: PICTURE-explain.png here)."),
    method: str = typer.Option("occlusion", "--method",
                               help="occlusion (any model) or gradient (integrated gradients; run folders)."),
    lang: str = typer.Option("en", "--lang", help="Language of the figure: en or zh."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Save the input, the map of the pixels that pushed the answer up (red) or down (blue), and the
    runner-up class's map."""
    target = output or Path(f"{picture.stem}-explain.png")
    e = run_explain(model, picture, method=method, output=target, lang=lang)
    if json_out:
        print_json({**e.to_dict(), "figure": str(e.figure)})
        return
    out.print(f"{picture}: {e.name} ({100 * e.confidence:.1f}%), runner-up {e.labels[e.runner_up]} "
              f"({100 * float(e.probabilities[e.runner_up]):.1f}%)", markup=False)
    if not quiet:
        out.print(f"saved {e.figure}", markup=False)
