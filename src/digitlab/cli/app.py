"""The Typer application and what every command shares: error handling, console, output modes."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import typer
from rich.console import Console

app = typer.Typer(
    name="digitlab",
    help="Train, evaluate, explain and serve handwritten-digit recognisers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(help="Inspect, sample, extract and split datasets.", no_args_is_help=True)
plot_app = typer.Typer(help="Draw figures from a run.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(plot_app, name="plot")

# Results go to stdout, logs and progress to stderr. Strings are printed as they are (no Rich markup:
# a path like 'data/[bold]x' is shown as typed); styles come only from Text objects.
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, markup=False)

_CONTROL = dict.fromkeys([*range(0x00, 0x20), 0x7f, *range(0x80, 0xa0)])


def visible(text: object) -> str:
    """``text`` with control characters (escape sequences, newlines, NUL...) written as ``\\xNN``:
    a file name cannot move the cursor, recolour or rewrite the terminal."""
    s = str(text)
    if not any(ord(c) in _CONTROL for c in s):
        return s
    return "".join(f"\\x{ord(c):02x}" if ord(c) in _CONTROL else c for c in s)


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or tab/CR) gets a leading '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def print_json(data: Any) -> None:
    """Write one JSON document to stdout (for --json)."""
    sys.stdout.write(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or logs.")
JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
