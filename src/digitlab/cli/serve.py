"""``digitlab serve``: the REST API and the drawing page for one model."""

from __future__ import annotations

from pathlib import Path

import typer

from digitlab.cli.app import QUIET, app, err, out
from digitlab.errors import ConfigError


@app.command()
def serve(
    model: Path = typer.Argument(..., metavar="RUN_OR_ONNX",
                                 help="A run folder (from 'digitlab train') or an exported .onnx file."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every network)."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to listen on (0: any free port)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes, each loading the model once."),
    max_upload_mb: float = typer.Option(4.0, "--max-upload-mb", help="Largest request body accepted, in MB."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request on stderr."),
    allow_host: list[str] = typer.Option(
        None, "--allow-host", metavar="NAME",
        help="Also answer requests for this host name (repeatable; loopback names and --host are always "
             "answered; '*': any name, e.g. behind a reverse proxy that checks it)."),
    header_timeout: float = typer.Option(5.0, "--header-timeout",
                                         help="Seconds a client has to send its request headers."),
    body_timeout: float = typer.Option(15.0, "--body-timeout", help="Seconds a client has to send a body."),
    quiet: bool = QUIET,
) -> None:
    """Serve a model: a page to draw digits on, and a REST API (docs at /docs). Ctrl+C stops it."""
    from digitlab.serve.server import serve as run_server

    if not max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    if not quiet:
        err.print(f"loading {model} ...")

    def announce(url: str) -> None:
        out.print(url)
        if not quiet:
            err.print(f"serving {model} at {url}  (API docs: {url}docs; press Ctrl+C to stop)")

    run_server(model, host=host, port=port, workers=workers, max_upload_bytes=int(max_upload_mb * 1_000_000),
               access_log=access_log, announce=announce, allow_hosts=allow_host or (),
               header_timeout=header_timeout, body_timeout=body_timeout)
