"""``digitlab export``: a run as a portable ONNX file, checked against PyTorch before it is written."""

from __future__ import annotations

from pathlib import Path

import typer

from digitlab.cli.app import JSON, QUIET, app, err, out, print_json
from digitlab.errors import ExportError
from digitlab.export import FORMATS, export_onnx


@app.command()
def export(
    run: Path = typer.Argument(..., metavar="RUN", help="A run folder from 'digitlab train'."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="Export format (onnx)."),
    output: Path = typer.Option(None, "--output", "-o", help="Where to write the file (default: RUN/model.onnx)."),
    data_dir: Path = typer.Option(None, "--data-dir",
                                  help="Folder holding the dataset, for the parity check (or $DIGITLAB_DATA_DIR)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version (17 or newer)."),
    activations: bool = typer.Option(True, "--activations/--no-activations",
                                     help="Also export the hidden activations as named outputs."),
    exporter: str = typer.Option("auto", "--exporter",
                                 help="auto (torch.export, falling back to TorchScript), dynamo or torchscript."),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Export a run to ONNX (probabilities and activations, metadata included) and check that
    onnxruntime agrees with PyTorch on 256 test images; a failed check writes nothing."""
    if fmt.lower() not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if not quiet:
        err.print(f"exporting {run} to ONNX (opset {opset}) ...")
    result = export_onnx(run, output, data_dir=data_dir, opset=opset, activations=activations, exporter=exporter)
    if as_json:
        print_json(result.to_dict())
        return
    if not quiet:
        for note in result.notes:
            err.print(f"note: {note}", style="yellow")
    out.print(f"Exported {result.model} to {result.path} ({result.size_bytes / 1024:,.0f} KiB, opset "
              f"{result.opset}, outputs: {', '.join(result.outputs)})")
    out.print(result.parity_line())
