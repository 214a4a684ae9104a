"""``digitlab train`` and ``digitlab summary``."""

from __future__ import annotations

import typer
from rich.table import Table

from digitlab.cli.app import app, out


@app.command()
def summary(
    model: str = typer.Option("mlp", "--model", "-m", help="Model name: mlp, cnn, cnn_bn."),
    hidden: str = typer.Option(None, "--hidden", help="MLP hidden sizes, e.g. 256,128."),
    activation: str = typer.Option(None, "--activation", help="MLP activation: relu, sigmoid, tanh, gelu."),
) -> None:
    """Print a Keras-like table of a model's layers, output shapes and parameter counts."""
    from digitlab.models import build_model, count_params, summary_rows

    options = {}
    if hidden:
        options["hidden"] = [int(h) for h in hidden.split(",")]
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
    out.print(f" Total params: {total:,}\n Trainable params: {trainable:,}\n Non-trainable params: {total - trainable:,}")
